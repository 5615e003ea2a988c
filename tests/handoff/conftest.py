"""Hand-off test helpers: local HTTP servers (a webhook receiver that verifies signatures, a generic CMMS
and the documented subset of Odoo's JSON-RPC API), and the alerts fixtures."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from handoff.dispatch import handoff_assets
from tests.alerts.conftest import alerts_settings, champion, trained  # noqa: F401 (fixtures)


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class LocalServer:
    """A threading HTTP server on 127.0.0.1: ``answer(received) -> (status, json body)`` decides each
    answer; every request is kept in ``received``."""

    answer: Callable[[Received], tuple[int, Any]]
    delay_s: float = 0.0
    received: list[Received] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> LocalServer:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length") or 0)
                got = Received(
                    "POST", self.path, {k: v for k, v in self.headers.items()}, self.rfile.read(length)
                )
                outer.received.append(got)
                if outer.delay_s:
                    time.sleep(outer.delay_s)
                status, body = outer.answer(got)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[..., LocalServer]]:
    servers: list[LocalServer] = []

    def start(answer: Callable[[Received], tuple[int, Any]], **kwargs: Any) -> LocalServer:
        server = LocalServer(answer, **kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


class FakeOdoo:
    """The subset of Odoo's external JSON-RPC API that docs/cmms-odoo.md documents: ``common.login``, and
    ``object.execute_kw`` on maintenance.equipment (search), maintenance.request (create, read, with the
    fields Vigil sends and reads) and maintenance.stage (read). Errors as Odoo answers them."""

    def __init__(self, db: str = "plant", login: str = "vigil", password: str = "odoo-key") -> None:
        self.db, self.login, self.password, self.uid = db, login, password, 7
        self.equipment = {3: {"id": 3, "name": "P-101"}}
        self.stages = {
            1: {"id": 1, "name": "New Request", "done": False},
            3: {"id": 3, "name": "Repaired", "done": True},
            4: {"id": 4, "name": "No Fault Found", "done": True},
        }
        self.requests: dict[int, dict[str, Any]] = {}
        self.calls: list[tuple[str, str, list]] = []

    def _error(self, message: str) -> dict:
        return {
            "code": 200,
            "message": "Odoo Server Error",
            "data": {"name": "odoo.exceptions", "message": message},
        }

    def answer(self, received: Received) -> tuple[int, Any]:
        if received.path != "/jsonrpc":
            return 404, {"error": "not found"}
        call = received.json()
        params = call["params"]
        service, method, args = params["service"], params["method"], params["args"]
        self.calls.append((service, method, args))
        reply = {"jsonrpc": "2.0", "id": call["id"]}
        if service == "common" and method == "login":
            ok = args == [self.db, self.login, self.password]
            return 200, reply | {"result": self.uid if ok else False}
        if service != "object" or method != "execute_kw":
            return 200, reply | {"error": self._error(f"unknown {service}.{method}")}
        db, uid, password, model, model_method, positional, *rest = args
        kwargs = rest[0] if rest else {}
        if (db, uid, password) != (self.db, self.uid, self.password):
            return 200, reply | {"error": self._error("Access Denied")}
        if model == "maintenance.equipment" and model_method == "search":
            (domain,) = positional
            names = {term[2] for term in domain if isinstance(term, list)}
            found = [e["id"] for e in self.equipment.values() if e["name"] in names]
            return 200, reply | {"result": found[: kwargs.get("limit", len(found))]}
        if model == "maintenance.request" and model_method == "create":
            (values,) = positional
            missing = {"name"} - set(values)
            if missing or values.get("maintenance_type") not in ("corrective", "preventive"):
                return 200, reply | {"error": self._error("invalid values")}
            pk = len(self.requests) + 1
            self.requests[pk] = {"id": pk, "stage_id": [1, "New Request"], "archive": False, **values}
            return 200, reply | {"result": pk}
        if model in ("maintenance.request", "maintenance.stage") and model_method == "read":
            (ids,) = positional
            table = self.requests if model == "maintenance.request" else self.stages
            fields = kwargs.get("fields") or []
            missing = [i for i in ids if i not in table]
            if missing:
                return 200, reply | {
                    "error": self._error(f"Record does not exist or has been deleted: {missing}")
                }
            return 200, reply | {"result": [{"id": i, **{f: table[i].get(f) for f in fields}} for i in ids]}
        return 200, reply | {"error": self._error(f"unsupported {model}.{model_method}")}

    def set_stage(self, pk: int, stage: int) -> None:
        self.requests[pk]["stage_id"] = [stage, self.stages[stage]["name"]]


@pytest.fixture(autouse=True)
def fresh_handoff_assets():
    """The per-process cache of hand-off assets outlives a test's rolled-back rows: start and end empty."""
    handoff_assets.forget()
    yield
    handoff_assets.forget()


@pytest.fixture
def queued(monkeypatch) -> dict[str, list[int]]:
    """The tasks' delay (and the work orders' apply_async) replaced by a record of the ids queued and of the
    work orders' countdowns (run them with .apply in the test)."""
    from handoff import tasks

    calls: dict[str, list] = {"deliver": [], "send": [], "send_after": []}

    def send_later(args, countdown=None):
        calls["send"].append(args[0])
        calls["send_after"].append(countdown)

    monkeypatch.setattr(tasks.deliver_webhook_task, "delay", lambda pk: calls["deliver"].append(pk))
    monkeypatch.setattr(tasks.send_work_order_task, "delay", lambda pk: send_later([pk]))
    monkeypatch.setattr(tasks.send_work_order_task, "apply_async", send_later)
    return calls
