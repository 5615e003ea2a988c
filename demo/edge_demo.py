"""The demo's edge agent (issue 16): P-101's simulated Modbus device is read by an edge agent on this
machine instead of the bridge; the agent decides locally, writes the alarm to the device's coil, and
forwards to the server through a link the user can cut (demo.edge_link; `make edge-offline` /
`make edge-online`). ``prepare_edge_agent`` writes everything the agent needs into ``workdir``: its
bundle (the champion, exported for P-101), the points CSV (the same format as the console's export), the
server's public key (so rollouts from the Edge page reach it) and agent.toml; and issues its gateway token.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from models_registry.bundle import BundleExportError, build_bundle
from models_registry.services import current_champion
from models_registry.signing import public_key_pem
from models_registry.choices import ModelKind
from plant.models import Asset, Gateway, Site

from demo.seed import DEMO_EDGE, DEMO_EDGE_GATEWAY, DEMO_SITE, modbus_mapping
from plant.simulator_devices import MODBUS_ALARM_COIL, MODBUS_SEVERITY_REGISTER, MODBUS_UNIT

OFFLINE_FLAG = "edge-offline"


@dataclass(frozen=True)
class EdgeDemo:
    config: Path
    token: str
    tag: str


def prepare_edge_agent(workdir: Path, server_url: str, modbus_endpoint: str) -> EdgeDemo | str:
    """The agent's files in ``workdir`` and its token; or why the demo runs without an agent."""
    site = Site.objects.filter(slug=DEMO_SITE[0]).first()
    tag = DEMO_EDGE[0]
    asset = Asset.objects.filter(site=site, tag=tag).select_related("asset_type").first() if site else None
    if asset is None:
        return f"no asset {tag} on {DEMO_SITE[0]} (run seed_demo)"
    champion = current_champion(asset.asset_type, ModelKind.ANOMALY)
    if champion is None:
        return f"no anomaly champion for {asset.asset_type} (the demo trains one unless --no-model)"
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        (workdir / f"{tag}.zip").write_bytes(build_bundle(champion, asset))
    except BundleExportError as exc:
        return f"cannot export {champion} for {tag}: {exc}"
    rows = ["sensor,unit_id,function,address,data_type"]
    for sensor in asset.sensors.select_related("role").order_by("key"):
        address = modbus_mapping(sensor.role.key)
        rows.append(
            f"{sensor.key},{address['unit_id']},{address['function']},{address['address']},{address['data_type']}"
        )
    (workdir / "points.csv").write_text("\n".join(rows) + "\n")
    (workdir / "server.pem").write_text(public_key_pem())
    gateway = Gateway.objects.filter(site=site, name=DEMO_EDGE_GATEWAY).order_by("pk").first()
    if gateway is None:
        gateway, token = Gateway.issue(site, DEMO_EDGE_GATEWAY)
    else:
        token = gateway.rotate()
    config = workdir / "agent.toml"
    config.write_text(
        f"""# Written by `manage.py demo` (demo/edge_demo.py); see the README, "Running Vigil at the edge".
[server]
url = "{server_url}"
token_env = "VIGIL_GATEWAY_TOKEN"
public_key_file = "server.pem"

[agent]
data_dir = "data"
queue_max_mb = 64
heartbeat_s = 10
update_poll_s = 15

[[assets]]
tag = "{tag}"
bundle = "{tag}.zip"

[[sources]]
name = "{tag} PLC"
protocol = "modbus"
endpoint = "{modbus_endpoint}"
points = "points.csv"
interval_s = 1.0

[publish]
protocol = "modbus"
endpoint = "{modbus_endpoint}"
options = {{ write_targets = [ {{ asset_tag = "{tag}", unit_id = {MODBUS_UNIT}, alarm_coil = {MODBUS_ALARM_COIL}, severity_register = {MODBUS_SEVERITY_REGISTER} }} ] }}
"""
    )
    return EdgeDemo(config=config, token=token, tag=tag)
