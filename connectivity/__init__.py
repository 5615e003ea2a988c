"""Plant protocol clients (MQTT, OPC UA, Modbus TCP) without Django.

The server's bridge (`manage.py bridge`) and the edge agent both read the plant through these clients, so
they live below the apps, beside the detection core, and import neither Django nor any Vigil app (an
import-linter contract and tests/test_django_free_packages.py hold that). A client turns protocol
traffic into `Sample`s for the points it was given and hands them, in batches, to an awaited sink; what
the sink does with them (ingest on the server, the local queue at the edge) is the caller's business.
"""
