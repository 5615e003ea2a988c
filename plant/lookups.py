"""``field__any=ids``: the integer field is one of ``ids``, as one parameter.

``field__in=ids`` sends one SQL parameter per id, each prepared by Django and quoted by psycopg (client-side
binding) one at a time, and parsed again by psycopg in a statement too long for its cache: for the fleet
sweep's chunks of hundreds of assets that cost more than the queries themselves. On PostgreSQL this lookup
is ``= ANY('{1,2,3}'::int8[])``, one text parameter; elsewhere the same ``IN (...)`` as ``__in``. Registered
on every field and every foreign key (which only look up their own) when plant.apps is imported, for
integer columns: ids and foreign keys (``asset_id__any``).
"""

from __future__ import annotations

from django.core.exceptions import EmptyResultSet
from django.db.models import Field, ForeignObject, Lookup


class AnyOf(Lookup):
    """The field's value is one of the given integers (see module)."""

    lookup_name = "any"
    prepare_rhs = False

    def get_prep_lookup(self) -> list[int]:
        return sorted({int(value) for value in self.rhs})

    def as_sql(self, compiler, connection):  # type: ignore[override]
        lhs, params = self.process_lhs(compiler, connection)
        ids = self.rhs
        if not ids:
            raise EmptyResultSet  # as __in=[]: nothing matches
        if connection.vendor == "postgresql":
            return f"{lhs} = ANY(%s::int8[])", (*params, "{" + ",".join(map(str, ids)) + "}")
        return f"{lhs} IN ({', '.join(['%s'] * len(ids))})", (*params, *ids)


Field.register_lookup(AnyOf)
ForeignObject.register_lookup(AnyOf)
