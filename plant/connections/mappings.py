"""Point mappings as CSV: export a connection's mappings, import hundreds of them with an error per row.

One column ``sensor`` (the Vigil sensor key) and one column per address field of the protocol
(connectivity.<protocol>.parse_point names them). Like the readings API, the valid rows are stored and
every refused row is reported with its line number and reason; nothing valid is lost for a bad neighbour.
Importing a row for a sensor that already has a mapping on the connection replaces its address. An
exported OPC UA or Sparkplug B row without ``sampling_interval_ms`` gets its sensor's sample period there
(what the bridge holds it at), so the edge agent, whose points file this is, holds at the same rate; the
value is then the mapping's own when the file is imported again.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from django.db import transaction

from connectivity.hold import with_sample_period
from connectivity.mapping_csv import read_mapping_csv
from plant.models import Connection, PointMapping, Sensor, address_text

# Columns in this order first; any other address field follows, sorted.
COLUMN_ORDER = (
    "format", "topic", "value_path", "ts_path", "ts_unit", "items_path", "group", "node", "device", "metric",
)  # fmt: skip


@dataclass
class ImportResult:
    created: int = 0
    updated: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)


def export_csv(connection: Connection) -> str:
    """The connection's mappings as CSV text (the import's format)."""
    mappings = list(connection.mappings.select_related("sensor").order_by("sensor__key"))
    # Held points carry the interval the bridge holds them at (the sensor's sample period when the mapping
    # gives none): the edge agent runs this file and knows no sensor periods.
    addresses = [
        with_sample_period(connection.protocol, address_text(m.address or {}), m.sensor.sample_period_s)
        for m in mappings
    ]
    names = {name for address in addresses for name in address}
    columns = [c for c in COLUMN_ORDER if c in names] + sorted(names - set(COLUMN_ORDER))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["sensor", *columns])
    for mapping, address in zip(mappings, addresses, strict=True):
        writer.writerow([mapping.sensor.key, *(address.get(c, "") for c in columns)])
    return out.getvalue()


def import_csv(connection: Connection, data: bytes) -> ImportResult:
    """Create or update the mappings of the valid rows of `data`; report the others by line number."""
    checked = read_mapping_csv(connection.protocol, data)
    result = ImportResult(errors=list(checked.errors))
    rows = {key: (number, address) for key, (number, address, _point) in checked.rows.items()}
    sensors = {s.key: s for s in Sensor.objects.filter(asset__site_id=connection.site_id, key__in=list(rows))}
    existing = {m.sensor_id: m for m in connection.mappings.filter(sensor__in=list(sensors.values()))}
    to_create: list[PointMapping] = []
    to_update: list[PointMapping] = []
    for key, (number, address) in rows.items():
        sensor = sensors.get(key)
        if sensor is None:
            # Answered alike for another site's sensor: the file cannot probe which keys exist elsewhere.
            result.errors.append((number, f"unknown sensor: {key[:100]!r}"))
        elif sensor.pk in existing:
            existing[sensor.pk].address = address
            to_update.append(existing[sensor.pk])
        else:
            to_create.append(PointMapping(connection=connection, sensor=sensor, address=address))
    with transaction.atomic():
        PointMapping.objects.bulk_create(to_create, batch_size=1000)
        PointMapping.objects.bulk_update(to_update, ["address"], batch_size=1000)
    result.created, result.updated = len(to_create), len(to_update)
    result.errors.sort()
    return result
