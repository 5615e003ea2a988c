"""manage.py train_model --asset-type SLUG --kind anomaly|failure_classifier|rul [--start --end --name
--roles a,b --detector D --open-rule R]"""

from __future__ import annotations

from django.core.management.base import CommandError, CommandParser
from django.db import transaction

from detection.baseline import MODES, PEER_MODES, PER_ASSET, ROBUST_MODES, is_robust
from detection.detectors import DETECTORS
from detection.thresholds import OPEN_RULES
from models_registry.management.commands._common import check_kind, get_asset_type, parse_moment
from models_registry.services import TrainingError, check_model_name, train_and_register, type_and_kind
from models_registry.tasks import train_model_task
from plant.management.base import VigilCommand
from plant.models import no_sensor_for


class Command(VigilCommand):
    help = "Train a model on the readings and labels of an asset type and register it as a candidate."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--asset-type", required=True, help="Asset type slug.")
        parser.add_argument("--kind", required=True, help="anomaly, failure_classifier or rul.")
        parser.add_argument("--start", help="ISO date/time of the first reading to use (default: all).")
        parser.add_argument("--end", help="ISO date/time of the last reading to use (default: all).")
        parser.add_argument("--name", help="Model name (default <asset type>-<kind>).")
        parser.add_argument(
            "--roles",
            help="Comma-separated sensor roles the model reads (default: the roles every active asset with "
            "its required roles has); assets without one of them are left out, and named.",
        )
        parser.add_argument("--enqueue", action="store_true", help="Run as a Celery task instead of here.")
        parser.add_argument(
            "--per-asset-baseline",
            action="store_true",
            help="Feed each asset's windows minus its baseline (models_registry.baseline); the same as "
            "--baseline per_asset.",
        )
        parser.add_argument(
            "--baseline",
            choices=MODES,
            help="Per-asset step: per_asset (minus its mean vector), per_asset_robust (standardised by its "
            "robust calibration, with per-asset thresholds) or per_asset_pooled (the same, the calibration's "
            "scale shrunk toward its type's fleet's by how little its calibration period can tell: "
            "detection.baseline.pool). Default: none.",
        )
        parser.add_argument(
            "--peers",
            choices=PEER_MODES,
            help="With --baseline per_asset_robust or per_asset_pooled: score each asset relative to the median change of the "
            "assets of its type on its site at the same time (common-mode rejection for assets sharing load "
            "or speed, e.g. bearings on one shaft). Default: none.",
        )
        parser.add_argument(
            "--detector",
            choices=DETECTORS,
            help="Anomaly detector (detection.detectors; default: the trainer's, PCA).",
        )
        parser.add_argument(
            "--open-rule",
            choices=OPEN_RULES,
            help="Anomaly open-threshold rule (detection.thresholds): quantile (default, the hold-out's "
            "99.5 %% score), tail (exponential tail, 1 window in 10,000) or episodes (one false alert per "
            "asset per 30 days, from the hold-out's declustered events and the asset type's window step).",
        )

    def handle(self, *args, **options) -> None:
        asset_type = get_asset_type(options["asset_type"])
        kind = check_kind(options["kind"])
        start = parse_moment(options["start"], "--start")
        end = parse_moment(options["end"], "--end")
        baseline = options["baseline"] or (PER_ASSET if options["per_asset_baseline"] else None)
        if options["per_asset_baseline"] and baseline != PER_ASSET:
            raise CommandError("--per-asset-baseline is --baseline per_asset; give only one of them")
        if options["peers"] and not is_robust(baseline):
            raise CommandError(f"--peers needs --baseline {' or '.join(ROBUST_MODES)}")
        chosen = {"detector": options["detector"], "open_rule": options["open_rule"]}
        params = {key: value for key, value in chosen.items() if value} or None
        for flag, key in (("--detector", "detector"), ("--open-rule", "open_rule")):
            if options[key] and kind != "anomaly":
                raise CommandError(f"{flag} applies to anomaly models only")
        if options["name"] is not None:  # an empty --name is refused, not the default name
            try:  # here too, so that --enqueue does not queue a run that cannot register its version
                check_model_name(options["name"])
            except TrainingError as exc:
                raise CommandError(str(exc)) from None
        roles = None
        if options["roles"] is not None:
            roles = [role.strip() for role in options["roles"].split(",") if role.strip()]
            if not roles:
                raise CommandError("--roles needs at least one role key, e.g. --roles vibration,current")
        if options["enqueue"] and (baseline or params or roles or options["peers"]):
            raise CommandError(
                "--baseline, --peers, --detector, --open-rule and --roles run here only; drop --enqueue"
            )
        if options["enqueue"]:
            kwargs = {
                "start": start.isoformat() if start else None,
                "end": end.isoformat() if end else None,
                "name": options["name"],
            }
            transaction.on_commit(lambda: train_model_task.delay(asset_type.pk, kind, **kwargs))
            self.stdout.write(f"queued training of {type_and_kind(asset_type, kind)}")
            return
        try:
            version = train_and_register(
                asset_type,
                kind,
                start=start,
                end=end,
                name=options["name"],
                baseline=baseline,
                params=params,
                roles=roles,
                peers=options["peers"],
            )
        except TrainingError as exc:
            raise CommandError(str(exc)) from None
        metrics = ", ".join(
            f"{key}={value:.3f}" for key, value in version.metrics.items() if isinstance(value, (int, float))
        )
        self.stdout.write(
            self.style.SUCCESS(
                f"registered {version} (candidate) for {type_and_kind(asset_type, kind)}; {metrics}"
            )
        )
        roles_read = ", ".join(version.provenance.get("roles", []))
        self.stdout.write(f"roles read: {roles_read}")
        for tag, missing in version.provenance.get("excluded_assets", {}).items():
            self.stdout.write(
                self.style.WARNING(f"left out: {no_sensor_for(tag, missing)}, which {version} reads")
            )
