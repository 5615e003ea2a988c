"""`manage.py replay skab/valve1/3`: stream a recorded dataset run through the HTTP ingestion API, live."""

from __future__ import annotations

import logging
import os
import signal
import time
from datetime import datetime
from datetime import timezone as dt_timezone

from django.conf import settings
from django.core.management.base import CommandError, CommandParser

from plant import simulator_client
from plant.datasets import dataset_errors
from plant.datasets.common import ensure_site
from plant.datasets.registry import site_of
from plant.datasets.replay import (
    ReplayRun,
    ensure_replay_asset,
    latest_reading,
    read_run,
    record_labels,
    shift_for,
)
from plant.management.base import VigilCommand, check_numbers
from plant.models import Gateway
from plant.simulator_client import IngestError, ReadingsSender

REPLAY_GATEWAY = "dataset-replay"


class Command(VigilCommand):
    help = (
        "Replay a recorded run (e.g. skab/valve1/3) through POST /api/v1/readings at --speed x real time, "
        "timestamps shifted so the run ends now, into a live asset on the gateway's site (created if needed)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "run", help="<dataset>/<run>, e.g. skab/valve1/3, ims/test2/1, cmapss/FD001/test/5"
        )
        parser.add_argument("--speed", type=float, default=1.0, help="recorded seconds per real second")
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="base URL of the Vigil server")
        parser.add_argument(
            "--token",
            default=None,
            help="gateway token (default $GATEWAY_TOKEN; without one a gateway of the dataset's site is issued; "
            "an empty --token is refused)",
        )
        parser.add_argument("--limit-rows", type=int, default=None, help="replay only the first N rows")
        parser.add_argument("--batch-seconds", type=float, default=1.0, help="real seconds between requests")
        parser.add_argument(
            "--max-retries", type=int, default=8, help="retries when the server is unreachable"
        )

    def handle(self, *args: object, **options: object) -> None:
        if options["token"] is not None and not options["token"].strip():
            # Read as "no token", an empty value (an unset variable in a script) rotated the replay gateway's
            # token under whoever else replays with it.
            raise CommandError(
                "--token is empty: give a gateway token, or leave the option out to use the replay gateway "
                "of the dataset's site"
            )
        speed, batch_s = float(options["speed"]), float(options["batch_seconds"])
        check_numbers(
            ("--speed", speed, True),
            ("--batch-seconds", batch_s, True),
            ("--max-retries", options["max_retries"], False),
        )
        try:
            simulator_client.check_url(str(options["url"]))
        except ValueError as exc:
            raise CommandError(f"--url: {exc}") from None
        with dataset_errors():
            dataset, unit = read_run(str(options["run"]), limit_rows=options["limit_rows"])
        if len(unit.ts) == 0:
            raise CommandError(f"{options['run']} has no rows to replay")
        recorded_s, max_span_s = float(unit.ts[-1] - unit.ts[0]), settings.VIGIL_INGEST_MAX_AGE_DAYS * 86400.0
        if recorded_s / speed > max_span_s:
            # simulate's bound (check_span): --speed 1e-300 slept before its first request, for ever.
            raise CommandError(
                f"--speed {speed:g} replays {options['run']}'s {recorded_s:.0f} recorded seconds over more than "
                f"{settings.VIGIL_INGEST_MAX_AGE_DAYS} days (VIGIL_INGEST_MAX_AGE_DAYS); give a higher --speed"
            )

        token = (options["token"] or os.environ.get("GATEWAY_TOKEN", "")).strip()
        if token:
            gateway = Gateway.authenticate(token)
            if gateway is None:
                raise CommandError("the gateway token is unknown or revoked; pass a valid --token")
            site = gateway.site
        else:
            # One replay gateway per site, its token rotated per run: re-runs do not pile up gateways.
            site = ensure_site(*site_of(dataset))
            gateway = Gateway.objects.filter(site=site, name=REPLAY_GATEWAY).order_by("pk").first()
            token = gateway.rotate() if gateway else Gateway.issue(site, REPLAY_GATEWAY)[1]
            self.stderr.write(f"no --token: using gateway {REPLAY_GATEWAY!r} of site {site.slug!r}")
        asset, keys = ensure_replay_asset(site, dataset, unit)

        duration = float(unit.ts[-1] - unit.ts[0])
        after = latest_reading(asset)
        now = time.time()
        planned, shift = shift_for(unit, speed, now), shift_for(unit, speed, now, after)
        logging.getLogger("httpx").setLevel(logging.WARNING)
        client = simulator_client.http_client(str(options["url"]), token)
        sender = ReadingsSender(client, max_retries=int(options["max_retries"]), warn=self.stderr.write)
        run = ReplayRun(unit, keys, sender, speed, shift, batch_seconds=batch_s)
        self.stdout.write(
            f"replaying {dataset} {unit.ref} ({len(unit.ts)} rows, {duration:.0f} s recorded) into asset"
            f" {asset.tag!r} of {site.slug} at {speed:g}x: ~{duration / speed:.0f} s, timestamps shifted by"
            f" {shift:+.0f} s so the run ends now"
        )
        if shift > planned and after is not None:
            self.stdout.write(
                f"  the asset has data up to {datetime.fromtimestamp(after, dt_timezone.utc):%H:%M:%S} UTC:"
                " the run starts after it, catches up, then goes on in real time"
            )
        for label in unit.labels:
            if label.kind == "fault":
                self.stdout.write(
                    f"  recorded fault {label.fault_type or label.reason} at +{label.start - unit.ts[0]:.0f} s"
                    f" (real +{(label.start - unit.ts[0]) / speed:.0f} s)"
                )
        stopped = "finished"
        previous = simulator_client.stop_on_sigterm()
        try:
            with client:
                run.run()
        except KeyboardInterrupt:
            stopped = "stopped"
        except IngestError as exc:
            record_labels(asset, unit, shift, run.replayed_until)
            raise CommandError(str(exc)) from None
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        labels = record_labels(asset, unit, shift, run.replayed_until)
        totals = sender.totals
        self.stdout.write(
            f"replay {stopped}: sent {totals.sent} readings ({run.cursor} of {len(unit.ts)} rows) in"
            f" {totals.requests} requests (accepted {totals.accepted}, duplicates {totals.duplicates},"
            f" rejected {totals.rejected}); {labels} dataset labels recorded on {asset.tag}"
        )
