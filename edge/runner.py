"""Edge runner: score `sensor,ts,value` CSV with an exported bundle, on a gateway without Django.

    python -m edge.runner BUNDLE.zip [CSV | -]

Prints one JSON line per feature window: {"window_end": ISO time, "score": float or null, "alert": bool,
"coverage": float}. A window whose features are not all finite (too little data) gets score null and
keeps the alert state it had. Exit status: 0 ok, 2 input does not fit the bundle, 3 bundle missing or
tampered with. Imports only the standard library, numpy, onnxruntime and the detection package: the
scorer's own pipeline (detection.pipeline: regime step, windows, baseline, one batch) and runtime, so server
and edge turn readings into a model's score the same way. A model trained on per-asset baselined windows ships
the asset's baseline in spec.json (a mean vector, or for a robust version the asset's calibration: location,
scale, count) and the runner applies it before scoring, as the server's scorer does; the open/clear
thresholds in spec.json are those in force for the asset (override, else its own, else the version's).

The bundle format itself (``pack_bundle`` / ``load_bundle``) is ``detection.bundle``'s, shared with the
server's export.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from datetime import datetime, timezone
from typing import IO, Any

import numpy as np

from detection.bundle import Bundle, BundleError, load_bundle
from edge.model import EdgeModel
from detection.rules import alert_episodes

# Exit status of a bundle problem (missing, tampered with, not fitting its model); input problems exit 2.
BUNDLE_EXIT_CODE = 3


class EdgeError(Exception):
    """A problem the operator can fix; printed as one line, never a traceback."""

    exit_code = 2


# --- alert state ------------------------------------------------------------------------------------------


def alert_states(
    scores: list[float | None],
    open_threshold: float,
    clear_threshold: float,
    *,
    higher: bool = True,
    open_windows: int = 1,
    clear_windows: int = 1,
    window_overlap: int = 1,
) -> list[bool]:
    """Alert state per window by the server's own rules (``detection.rules``: open after ``open_windows``
    windows above the open threshold, close after ``clear_windows`` below the clear one; mirrored for
    lower-is-worse scores; ``window_overlap``: the clear hysteresis in readings, ``RuleParams``). A missing
    score (None) breaks both runs: no data neither opens nor clears."""
    values = np.array([np.nan if score is None else score for score in scores], dtype=np.float64)
    states = [False] * len(values)
    for episode in alert_episodes(
        values,
        open_threshold,
        clear_threshold,
        open_windows,
        clear_windows,
        higher=higher,
        window_overlap=window_overlap,
    ):
        # The state after each window: the window that closes the alert reports it closed.
        for index in range(episode.opened, len(values) if episode.closed is None else episode.closed):
            states[index] = True
    return states


# --- input ------------------------------------------------------------------------------------------------


def parse_ts(text: str, line: int) -> float:
    """Epoch seconds, or ISO 8601 with an offset (a naive time is ambiguous on a gateway: refused)."""
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(value):
            raise EdgeError(f"line {line}: timestamp {text!r} is not finite")
        return value
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise EdgeError(f"line {line}: timestamp {text!r} is neither epoch seconds nor ISO 8601") from None
    if moment.tzinfo is None:
        raise EdgeError(f"line {line}: timestamp {text!r} has no UTC offset")
    return moment.timestamp()


def read_csv(
    stream: IO[str], sensor_roles: dict[str, str]
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """`sensor,ts,value` rows (an optional header line) → {role: (ts_s, values, quality)} sorted by time."""
    columns: dict[str, tuple[list[float], list[float]]] = {}
    unknown: set[str] = set()
    rows = 0
    for line, record in enumerate(csv.reader(stream), start=1):
        if not record or all(not cell.strip() for cell in record):
            continue
        if line == 1 and [cell.strip().lower() for cell in record] == ["sensor", "ts", "value"]:
            continue
        if len(record) != 3:
            raise EdgeError(f"line {line}: expected 3 columns sensor,ts,value, got {len(record)}")
        sensor, ts_text, value_text = (cell.strip() for cell in record)
        role = sensor_roles.get(sensor)
        if role is None:
            unknown.add(sensor)
            continue
        ts = parse_ts(ts_text, line)
        try:
            value = float(value_text)
        except ValueError:
            raise EdgeError(f"line {line}: value {value_text!r} is not a number") from None
        rows += 1
        if not math.isfinite(value):
            continue  # a missing sample: the feature code treats it as a gap
        times, values = columns.setdefault(role, ([], []))
        times.append(ts)
        values.append(value)
    if unknown:
        listed = ", ".join(sorted(unknown)[:5]) + (" …" if len(unknown) > 5 else "")
        known = ", ".join(sorted(sensor_roles)[:10])
        raise EdgeError(f"unknown sensor(s) in the input: {listed} (the bundle knows: {known})")
    if not rows:
        raise EdgeError("the input has no readings")
    series = {}
    for role, (times, values) in columns.items():
        ts_array = np.asarray(times, dtype=np.float64)
        order = np.argsort(ts_array, kind="stable")
        series[role] = (
            ts_array[order],
            np.asarray(values, dtype=np.float64)[order],
            np.zeros(len(order), dtype=np.uint16),
        )
    return series


# --- scoring ----------------------------------------------------------------------------------------------


def score_series(bundle: Bundle, series: dict, session=None) -> list[dict[str, Any]]:
    """Windows over the series, scored in one batch, with the alert state after each window."""
    model = EdgeModel(bundle, session)
    scored = model.score(series)
    if len(scored.ends) == 0:
        raise EdgeError(f"the input spans less than one {bundle.spec['window_s']} s window")
    params = model.rule_params
    alerts = alert_states(
        scored.scores,
        params.open_threshold,
        params.clear_threshold,
        higher=params.higher,
        open_windows=params.open_windows,
        clear_windows=params.clear_windows,
        window_overlap=params.window_overlap,
    )
    return [
        {
            "window_end": datetime.fromtimestamp(float(end), tz=timezone.utc).isoformat(),
            "score": score,
            "alert": alert,
            "coverage": round(float(cov), 4),
        }
        for end, score, alert, cov in zip(scored.ends, scored.scores, alerts, scored.coverage, strict=True)
    ]


def main(argv: list[str] | None = None, stdin: IO[str] | None = None, stdout: IO[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge.runner", description=__doc__.splitlines()[0])
    parser.add_argument("bundle", help="bundle .zip written by manage.py export_bundle")
    parser.add_argument("csv", nargs="?", default="-", help="sensor,ts,value CSV file, or - for stdin")
    args = parser.parse_args(argv)
    stdout = stdout or sys.stdout
    try:
        bundle = load_bundle(args.bundle)
        if args.csv == "-":
            series = read_csv(stdin or sys.stdin, bundle.sensor_roles)
        else:
            try:
                with open(args.csv, newline="", encoding="utf-8") as handle:
                    series = read_csv(handle, bundle.sensor_roles)
            except OSError as exc:
                raise EdgeError(f"cannot read {args.csv!r}: {exc.strerror}") from None
            except UnicodeDecodeError:
                raise EdgeError(f"{args.csv!r} is not UTF-8 text") from None
        rows = score_series(bundle, series)
    except EdgeError as exc:
        print(f"edge: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BundleError as exc:
        print(f"edge: error: {exc}", file=sys.stderr)
        return BUNDLE_EXIT_CODE
    out = io.StringIO()
    for row in rows:
        out.write(json.dumps(row) + "\n")
    stdout.write(out.getvalue())
    stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
