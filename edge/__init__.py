"""The Vigil edge agent: alerts that keep working on a gateway PC when the network to the server drops.

Django-free: it uses only the detection core (windows, scoring pipeline, alert rules, ONNX runtime), the
protocol clients (``connectivity``) and the standard library plus a few small packages listed in
``edge/requirements.txt``. An import-linter contract keeps it so.

- ``edge.queue``: the durable local queue (SQLite in WAL mode) of readings and local alert events,
  forwarded in batches when the server answers; bounded on disk, dropping the oldest raw readings first,
  alert events never, and counting every drop for the server.
"""
