"""`manage.py simulate`: stream simulated pump data for a site through the HTTP ingestion API."""

from __future__ import annotations

import logging
import os
import signal
import time

from django.conf import settings
from django.core.management.base import CommandError, CommandParser

from detection.wording import duration_text
from plant import simulator_client
from plant.management.base import VigilCommand, check_numbers
from plant.params import is_digits
from plant.sites import UnknownSite, get_site
from plant.simulator import FaultSchedule, PlantSimulator
from plant.simulator_client import IngestError, ReadingsSender, SimulationRun
from plant.simulator_labels import LabelRecorder
from plant.simulator_devices import DeviceStartError, OtDevices
from plant.simulator_mqtt import MqttDevices, SplitSender


# A run without --duration goes on until stopped; a fault a day or more into it is far more likely a typo
# (3d for 3m) than a plan, and whoever means it can give the run a --duration that long.
OPEN_RUN_FAULT_HORIZON_S = 24 * 3600.0
DEFAULT_BATCH_S = 1.0


def check_fault_starts(
    schedule: FaultSchedule, backfill_s: float, duration: float | None, speed: float
) -> None:
    """A CommandError naming the first --faults fault that starts outside what the run simulates: from the
    start of the backfill (negative starts) to the end of the live part (--duration x --speed simulated
    seconds, or OPEN_RUN_FAULT_HORIZON_S without --duration). Such a fault would never happen, and nothing
    said so."""
    latest_s = OPEN_RUN_FAULT_HORIZON_S if duration is None else duration * speed
    for fault in schedule.starting_outside(-backfill_s, latest_s):
        at = f"{fault.spec} starts {_span(abs(fault.start_s))}"
        if fault.start_s < 0:
            history = (
                f"--backfill {backfill_s / 60:g} sends {_span(backfill_s)}" if backfill_s else "no --backfill"
            )
            raise CommandError(
                f"--faults: {at} before the live start, but {history} of history before it: it would never "
                "happen (a negative start must fall inside the --backfill)"
            )
        if duration is None:
            raise CommandError(
                f"--faults: {at} into the run; without --duration a fault must start less than "
                f"{_span(OPEN_RUN_FAULT_HORIZON_S)} into it (give --duration for a longer run)"
            )
        simulated = "no live part, only the --backfill" if latest_s == 0 else _span(latest_s)
        raise CommandError(
            f"--faults: {at} into the run, but --duration {duration:g} at --speed {speed:g} simulates "
            f"{simulated}: it would never happen"
        )


def check_span(backfill_min: float, speed: float, batch_s: float, duration: float | None) -> None:
    """A CommandError when --backfill, or --speed over one --batch-seconds (or the --duration), covers more
    time than the API accepts readings for (VIGIL_INGEST_MAX_AGE_DAYS): every reading would be refused, and
    far past it the arithmetic overflows. The demo checks its simulator's options with it before it starts."""
    max_span_s = settings.VIGIL_INGEST_MAX_AGE_DAYS * 86400.0
    if backfill_min * 60.0 > max_span_s:
        raise CommandError(
            f"--backfill must be at most {max_span_s / 60:.0f} minutes: the API refuses readings older "
            f"than {settings.VIGIL_INGEST_MAX_AGE_DAYS} days (VIGIL_INGEST_MAX_AGE_DAYS)"
        )
    if speed * max(batch_s, duration or 0.0) > max_span_s:
        raise CommandError(
            f"--speed {speed:g} simulates more than {settings.VIGIL_INGEST_MAX_AGE_DAYS} days per "
            "--batch-seconds (or --duration); the API refuses readings that old"
        )


def _span(seconds: float) -> str:
    """ "40 s", "3 days (259200 s)": rounded words with the exact seconds that the bounds compare."""
    if seconds >= 1e7:  # duration_text's days are exact digits: a typo of 1e20 s would print 15 of them
        return f"{seconds:.3g} s"
    return duration_text(seconds) + (f" ({seconds:g} s)" if seconds >= 60 else "")


class Command(VigilCommand):
    help = (
        "Stream realistic multi-sensor pump data for a site to POST /api/v1/readings, with a schedule of "
        "injected faults (recorded as simulator labels). Ctrl-C stops it with a summary."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="base URL of the Vigil server")
        parser.add_argument("--token", default=None, help="gateway token (default: $GATEWAY_TOKEN)")
        parser.add_argument("--site", default="demo-plant", help="slug of the site to simulate")
        parser.add_argument(
            "--assets", type=int, default=None, help="simulate the first N assets (default all)"
        )
        parser.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second")
        parser.add_argument(
            "--duration", type=float, default=None, help="stop after S real seconds (0: backfill only)"
        )
        parser.add_argument(
            "--backfill", type=float, default=0.0, help="first send this many minutes of history"
        )
        parser.add_argument(
            "--batch-seconds", type=float, default=DEFAULT_BATCH_S, help="real seconds between live requests"
        )
        parser.add_argument(
            "--seed", type=int, default=0, help="random seed; the same seed gives the same data"
        )
        parser.add_argument(
            "--faults",
            default="default",
            help="'default' (one fault per asset, staggered over ~7 min, repeating hourly), 'none', or "
            "comma-separated kind@tag[.role]:start:duration[:severity], e.g. spikes@p-101.vibration:2m:5m; "
            "start and duration in s (default), m or h; start counts from the live start and must fall inside "
            "the run: negative inside --backfill, below --duration x --speed (24 h without --duration)",
        )
        parser.add_argument(
            "--max-retries", type=int, default=8, help="retries per request when the server is unreachable"
        )
        parser.add_argument(
            "--no-labels", action="store_true", help="do not record injected faults as labels"
        )
        parser.add_argument(
            "--mqtt", help="MQTT broker (mqtt://host:port) for the --mqtt-json/--mqtt-sparkplug assets"
        )
        parser.add_argument(
            "--mqtt-json", default="", help="comma-separated tags published as JSON over MQTT"
        )
        parser.add_argument(
            "--mqtt-sparkplug", default="", help="comma-separated tags published as Sparkplug B over MQTT"
        )
        parser.add_argument(
            "--opcua-device",
            default="",
            help="comma-separated tag:port: serve these pumps live as OPC UA servers on 127.0.0.1:port",
        )
        parser.add_argument(
            "--modbus-device",
            default="",
            help="comma-separated tag:port: serve these pumps live as Modbus TCP servers on 127.0.0.1:port",
        )

    def handle(self, *args, **options) -> None:
        if options["token"] is not None and not options["token"].strip():
            # Read as left out, an empty value (an unset variable) posted with $GATEWAY_TOKEN's gateway.
            raise CommandError(
                "--token is empty: give a gateway token, or leave it out to use $GATEWAY_TOKEN"
            )
        token = options["token"] or os.environ.get("GATEWAY_TOKEN", "")
        if not token.strip():
            raise CommandError(
                "no gateway token: pass --token or set GATEWAY_TOKEN "
                "(`manage.py seed_demo` or `manage.py create_gateway <site> <name>` prints one)"
            )
        speed, batch_s, backfill_min = options["speed"], options["batch_seconds"], options["backfill"]
        duration, limit = options["duration"], options["assets"]
        check_numbers(
            ("--speed", speed, True),
            ("--batch-seconds", batch_s, True),
            ("--backfill", backfill_min, False),
            ("--duration", duration, False),
            ("--assets", limit, True),
            ("--max-retries", options["max_retries"], False),
        )
        check_span(backfill_min, speed, batch_s, duration)
        try:
            simulator_client.check_url(options["url"])
        except ValueError as exc:
            raise CommandError(f"--url: {exc}") from None

        try:
            site = get_site(options["site"])
        except UnknownSite as exc:
            raise CommandError(str(exc)) from None
        assets, skipped = simulator_client.sim_assets(site, limit)
        if skipped:
            self.stderr.write(f"skipping assets without simulated sensor roles: {', '.join(skipped)}")
        if not assets:
            raise CommandError(
                f"site {site.slug!r} has no assets with sensors to simulate; run `manage.py seed_demo`"
            )

        now = time.time()
        # Faster than real time, a bounded run is shifted into the past so that it ends now: the API refuses
        # timestamps too far in the future.
        live_start = now - duration * (speed - 1) if speed > 1 and duration else now
        if speed > 1 and duration is None:
            self.stderr.write(
                "note: with --speed > 1 and no --duration, timestamps run ahead of the wall clock"
            )
        try:
            schedule = FaultSchedule.parse(options["faults"], [a.tag for a in assets])
            simulator = PlantSimulator(assets, seed=options["seed"], faults=schedule, origin=live_start)
        except ValueError as exc:
            raise CommandError(f"--faults: {exc}") from None
        check_fault_starts(schedule, backfill_min * 60.0, duration, speed)

        # httpx logs every request at INFO: one line per second would drown the fault announcements.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        client = simulator_client.http_client(options["url"], token.strip())
        sender = ReadingsSender(client, max_retries=options["max_retries"], warn=self.stderr.write)
        devices = self._mqtt_devices(options, site, assets)
        ot = self._ot_devices(options, assets)
        groups = [group for group in (devices, ot) if group is not None]
        if groups:
            sender = SplitSender(sender, *groups)
        labels = None if options["no_labels"] else LabelRecorder(site)
        run = SimulationRun(simulator, sender, labels, log=self.stdout.write)
        tags = ", ".join(a.tag for a in assets)
        stopped = "finished"
        previous_sigterm = simulator_client.stop_on_sigterm()
        try:
            with client:
                if backfill_min > 0:
                    # After a restart only the time since the last stored reading is sent again.
                    after = simulator_client.last_stored(assets)
                    resumed = (
                        f"; {len(after)} sensors resume after their last stored reading" if after else ""
                    )
                    self.stdout.write(
                        f"backfilling {backfill_min:g} min for {len(assets)} assets ({tags}) of {site.slug}"
                        + resumed
                    )
                    run.backfill(live_start - backfill_min * 60.0, live_start, after)
                if ot is not None:
                    ot.live = True  # a device has no history: its backfill went through the API
                if duration != 0:
                    self.stdout.write(
                        f"streaming {len(assets)} assets ({tags}) to {sender.url} at {speed:g}x, "
                        f"{len(schedule)} scheduled faults" + ("" if duration else "; Ctrl-C to stop")
                    )
                    run.live(live_start, speed, batch_s, duration)
        except KeyboardInterrupt:
            stopped = "stopped"
        except IngestError as exc:
            self._finish(run)
            raise CommandError(str(exc)) from None
        except DeviceStartError as exc:
            self._finish(run)
            raise CommandError(f"--opcua-device / --modbus-device: {exc}") from None
        finally:
            if previous_sigterm is not None:
                signal.signal(signal.SIGTERM, previous_sigterm)
            for group in groups:
                group.close()
        self._finish(run)
        totals = sender.totals
        self.stdout.write(
            f"simulate {stopped}: sent {totals.sent} readings in {totals.requests} requests"
            f" for {len(assets)} assets of {site.slug} (accepted {totals.accepted},"
            f" duplicates {totals.duplicates}, rejected {totals.rejected}); simulated {self._span(run):.0f} s"
        )

    def _mqtt_devices(self, options: dict, site, assets) -> MqttDevices | None:
        """The MQTT devices asked for (--mqtt with --mqtt-json / --mqtt-sparkplug tags), or None."""
        json_tags = {t.strip() for t in options["mqtt_json"].split(",") if t.strip()}
        sparkplug_tags = {t.strip() for t in options["mqtt_sparkplug"].split(",") if t.strip()}
        if not (json_tags or sparkplug_tags):
            return None
        if not options["mqtt"]:
            raise CommandError("--mqtt-json / --mqtt-sparkplug need --mqtt mqtt://host:port")
        known = {asset.tag for asset in assets}
        if unknown := (json_tags | sparkplug_tags) - known:
            raise CommandError(
                f"--mqtt-json / --mqtt-sparkplug: no simulated asset {', '.join(sorted(unknown))}"
            )
        sensors = {key: (asset.tag, role) for asset in assets for role, key in asset.sensors.items()}
        try:
            return MqttDevices(options["mqtt"], site.slug, sensors, json_tags, sparkplug_tags)
        except ValueError as exc:
            raise CommandError(f"--mqtt: {exc}") from None
        except OSError as exc:
            raise CommandError(f"--mqtt: cannot reach the broker at {options['mqtt']}: {exc}") from None

    def _ot_devices(self, options: dict, assets) -> OtDevices | None:
        """The OPC UA / Modbus devices asked for (--opcua-device / --modbus-device tag:port), or None."""
        known = {asset.tag for asset in assets}
        served: dict[str, dict[str, int]] = {}
        ports: dict[int, str] = {}  # each device listens on a port of its own
        for flag in ("opcua_device", "modbus_device"):
            served[flag] = {}
            option = f"--{flag.replace('_', '-')}"
            for item in (part.strip() for part in options[flag].split(",") if part.strip()):
                tag, _, port = item.rpartition(":")
                if tag not in known or not is_digits(port) or not 0 < int(port) < 65536:
                    raise CommandError(
                        f"{option} {item!r}: expected tag:port with a simulated tag "
                        f"({', '.join(sorted(known))}) and a port 1-65535"
                    )
                if tag in served[flag]:
                    raise CommandError(f"{option}: {tag} is given twice; serve each pump once")
                if int(port) in ports:
                    raise CommandError(
                        f"{option} {item!r}: port {int(port)} is already {ports[int(port)]}'s; give each "
                        "device a port of its own"
                    )
                served[flag][tag] = int(port)
                ports[int(port)] = f"{option} {tag}"
        if not (served["opcua_device"] or served["modbus_device"]):
            return None
        sensors = {key: (asset.tag, role) for asset in assets for role, key in asset.sensors.items()}
        try:
            return OtDevices(sensors, served["opcua_device"], served["modbus_device"])
        except OSError as exc:
            raise CommandError(f"--opcua-device / --modbus-device: cannot listen: {exc}") from None

    def _finish(self, run: SimulationRun) -> None:
        try:
            run.finish()
        except KeyboardInterrupt:
            pass  # a second Ctrl-C while closing labels: leave them as they are

    @staticmethod
    def _span(run: SimulationRun) -> float:
        if run.sim_start is None or run.sim_cursor is None:
            return 0.0
        return run.sim_cursor - run.sim_start
