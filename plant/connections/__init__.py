"""Plant connections (MQTT, OPC UA, Modbus TCP): secrets, point-mapping CSV, the bridge and its status.

The protocol clients themselves live in `connectivity/` (no Django); this package is where they meet
the database: what a Connection row means to a client, and where the samples they produce are stored.
"""
