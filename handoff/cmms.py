"""CMMS adapters: how a work order reaches a site's CMMS and how its outcome is read back.

Two adapters behind one interface (``CmmsAdapter``): ``GenericAdapter`` speaks the JSON-over-HTTPS
contract of docs/cmms-generic.md (Vigil POSTs the order, the CMMS answers its id and later POSTs the
outcome to Vigil), and ``OdooAdapter`` speaks the subset of Odoo's external JSON-RPC API documented in
docs/cmms-odoo.md (``maintenance.request`` create and read, ``maintenance.stage`` read), whose outcome
Vigil polls. Both are plain HTTP with httpx; errors come back as CmmsError with a message to show.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from django.conf import settings

from alerts.choices import Severity
from handoff.choices import CmmsKind, WorkOrderOutcome
from handoff.models import CmmsConnection
from plant.connections.secrets import SecretError, decrypt


class CmmsError(Exception):
    """The CMMS refused the call or could not be reached; the message says what it said."""


@dataclass(frozen=True)
class WorkOrderRequest:
    """What Vigil asks the CMMS to do, adapter-neutral."""

    uid: str
    number: int
    title: str
    description: str
    priority: int  # 0 low .. 3 critical (the alert's severity rank)
    site: str
    asset_tag: str
    asset_name: str
    alert_id: int
    alert_link: str
    outcome_url: str


def priority_words(priority: object) -> str:
    """A work order's ``priority`` as a person reads it: the label of the alert severity it ranks ("High"
    for 2); a value outside the contract's 0..3 named as such, never a number passed off as a priority;
    "not given" for none."""
    if priority is None:
        return "not given"
    severity = Severity.at_rank(priority)
    return severity.label if severity is not None else f"unknown ({str(priority)[:20]})"


@dataclass(frozen=True)
class Outcome:
    outcome: WorkOrderOutcome
    findings: str = ""


class CmmsAdapter(Protocol):
    def create(self, order: WorkOrderRequest) -> str:
        """Create the order in the CMMS; its id there."""

    def outcome(self, external_id: str) -> Outcome | None:
        """The order's outcome if the CMMS has one (polling), else None."""


def _credential(connection: CmmsConnection) -> str:
    if not connection.credential_encrypted:
        return ""
    try:
        return decrypt(connection.credential_encrypted, "CMMS credential")
    except SecretError as exc:
        raise CmmsError(str(exc)) from None


def _post(url: str, **kwargs: Any) -> httpx.Response:
    try:
        return httpx.post(url, timeout=settings.VIGIL_CMMS_TIMEOUT_S, follow_redirects=False, **kwargs)
    except httpx.HTTPError as exc:
        raise CmmsError(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__) from None


class GenericAdapter:
    """docs/cmms-generic.md: POST the order as JSON with ``Authorization: Bearer <credential>`` and
    ``Idempotency-Key: <uid>``; a 2xx answer ``{"id": "<CMMS id>"}``. Outcomes come by webhook."""

    def __init__(self, connection: CmmsConnection) -> None:
        self.connection = connection

    def create(self, order: WorkOrderRequest) -> str:
        credential = _credential(self.connection)
        headers = {"Idempotency-Key": order.uid, "User-Agent": "Vigil-WorkOrders/1"}
        if credential:
            headers["Authorization"] = f"Bearer {credential}"
        body = {
            "work_order": {
                "id": order.number,
                "uid": order.uid,
                "title": order.title,
                "description": order.description,
                "priority": order.priority,
                "site": order.site,
                "asset": {"tag": order.asset_tag, "name": order.asset_name},
                "alert": {"id": order.alert_id, "link": order.alert_link},
                "outcome_url": order.outcome_url,
            }
        }
        response = _post(self.connection.url, json=body, headers=headers)
        if not response.is_success:
            raise CmmsError(f"the CMMS answered HTTP {response.status_code}: {response.text[:200]}")
        try:
            external = response.json()["id"]
        except (ValueError, KeyError, TypeError):
            raise CmmsError('the CMMS answer has no "id": ' + response.text[:200]) from None
        if not isinstance(external, (str, int)) or isinstance(external, bool) or str(external) == "":
            raise CmmsError(f'the CMMS answered an unusable "id": {external!r}'[:200])
        return str(external)

    def outcome(self, external_id: str) -> Outcome | None:
        return None  # the generic CMMS calls Vigil's outcome webhook


class OdooAdapter:
    """docs/cmms-odoo.md: Odoo's external API over JSON-RPC (``POST <url>/jsonrpc``): ``common.login``
    once per call, then ``object.execute_kw`` on ``maintenance.equipment`` (search), ``maintenance.request``
    (create, read) and ``maintenance.stage`` (read)."""

    _ids = itertools.count(1)

    def __init__(self, connection: CmmsConnection) -> None:
        self.connection = connection
        self.endpoint = connection.url.rstrip("/") + "/jsonrpc"

    def _call(self, service: str, method: str, *args: Any) -> Any:
        payload = {
            "jsonrpc": "2.0",
            "method": "call",
            "params": {"service": service, "method": method, "args": list(args)},
            "id": next(self._ids),
        }
        response = _post(self.endpoint, json=payload)
        if not response.is_success:
            raise CmmsError(f"Odoo answered HTTP {response.status_code}: {response.text[:200]}")
        try:
            answer = response.json()
        except ValueError:
            raise CmmsError("Odoo's answer is not JSON: " + response.text[:200]) from None
        if answer.get("error"):
            error = answer["error"]
            detail = (error.get("data") or {}).get("message") or error.get("message") or str(error)
            raise CmmsError(f"Odoo refused {method}: {detail}"[:500])
        return answer.get("result")

    def _login(self) -> tuple[int, str]:
        password = _credential(self.connection)
        uid = self._call(
            "common", "login", self.connection.odoo_database, self.connection.odoo_login, password
        )
        if not isinstance(uid, int) or isinstance(uid, bool):
            raise CmmsError(
                f"Odoo refused the login of {self.connection.odoo_login!r}: check login and API key"
            )
        return uid, password

    def _execute(self, auth: tuple[int, str], model: str, method: str, *args: Any, **kwargs: Any) -> Any:
        uid, password = auth
        call_args: list[Any] = [self.connection.odoo_database, uid, password, model, method, list(args)]
        if kwargs:
            call_args.append(kwargs)
        return self._call("object", "execute_kw", *call_args)

    def create(self, order: WorkOrderRequest) -> str:
        auth = self._login()
        equipment = self._execute(
            auth,
            "maintenance.equipment",
            "search",
            ["|", ["name", "=", order.asset_tag], ["name", "=", order.asset_name]],
            limit=1,
        )
        values: dict[str, Any] = {
            "name": order.title[:120],
            "description": order.description,
            "maintenance_type": "corrective",
            "priority": str(min(max(order.priority, 0), 3)),
        }
        if equipment:
            values["equipment_id"] = equipment[0]
        created = self._execute(auth, "maintenance.request", "create", values)
        if not isinstance(created, int) or isinstance(created, bool):
            raise CmmsError(f"Odoo answered an unusable id for the new request: {created!r}"[:200])
        return str(created)

    def outcome(self, external_id: str) -> Outcome | None:
        auth = self._login()
        rows = self._execute(
            auth, "maintenance.request", "read", [int(external_id)], fields=["stage_id", "archive"]
        )
        if not rows:
            return Outcome(WorkOrderOutcome.CANCELLED, f"request {external_id} no longer exists in Odoo")
        row = rows[0]
        if row.get("archive"):
            return Outcome(WorkOrderOutcome.CANCELLED, "archived in Odoo")
        stage = row.get("stage_id") or None  # [id, "name"] or False
        if not stage:
            return None
        stages = self._execute(auth, "maintenance.stage", "read", [stage[0]], fields=["name", "done"])
        if not stages or not stages[0].get("done"):
            return None
        name = str(stages[0].get("name") or "")
        if name.strip().casefold() in {s.casefold() for s in settings.VIGIL_ODOO_NO_FAULT_STAGES}:
            return Outcome(WorkOrderOutcome.NO_FAULT_FOUND, f"Odoo stage “{name}”")
        return Outcome(WorkOrderOutcome.DONE, f"Odoo stage “{name}”")


def adapter_for(connection: CmmsConnection) -> CmmsAdapter:
    """The adapter of the connection's kind."""
    if connection.kind == CmmsKind.ODOO:
        return OdooAdapter(connection)
    return GenericAdapter(connection)
