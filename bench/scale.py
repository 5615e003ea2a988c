"""Scale-out benchmark (issue 17, item 6): several Celery worker processes sweeping one fleet, several web
processes taking ingest, against one PostgreSQL and one Redis — and which of them saturates first.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/vigil python bench/scale.py \
        [--fleet 100000] [--workers 1,2,4] [--chunk 500] [--web 1,2] [--posters 4] [--seconds 15]

Needs DATABASE_URL pointing at PostgreSQL; drops and re-creates `<name>_scale_bench` on that server and
starts its own redis-server on a free port.

(a) Sweep: `--fleet` pumps (4 sensors at 1 Hz, 70 s of fresh readings each, loaded once through
    ingest_readings), a champion and a shadow version. For each count in `--workers`, that many separate
    worker processes (`celery -A config worker -Q scoring --concurrency 1`, each could be its own
    machine) are started; every asset is marked due again, its Score rows of the two versions removed,
    and score_assets_task chunks of `--chunk` assets are enqueued; wall time from the first enqueue until
    no asset is due. CPU seconds of the workers, of PostgreSQL's backends for this database and of Redis
    are summed over the sweep (psutil), and the peak RSS of each worker's scoring process.
(b) Ingest: the Procfile's web command with WEB_CONCURRENCY = each of `--web` (uvicorn processes);
    `--posters` client processes POST prepared 10,000-reading batches (bench/ingest.py's batches, disjoint
    per poster) over keep-alive connections for `--seconds`; readings/s and the CPU of web, PostgreSQL,
    Redis and the clients themselves.

CPU shares are of the machine's cores (`nproc`): a kind near 100 % of a core per process, or the total
near nproc × 100 %, is what saturates. Prints markdown tables; writes bench/results/scale.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psutil  # noqa: E402

from bench.common import free_port, machine, pg_url, setup_django, write_results  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "scale.json"
WORK = Path(tempfile.mkdtemp(prefix="vigil-scale-bench-"))


def configure() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fleet", type=int, default=100_000)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--chunk", type=int, default=500)
    parser.add_argument("--web", default="1,2")
    parser.add_argument("--posters", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument(
        "--in-process",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="only sweep the fleet ROUNDS times in this process (no Celery, no Redis work) and print the CPU "
        "seconds of this process and of its PostgreSQL backend per 100k assets; run it from two checkouts "
        "in turn (with --reuse) for a before/after ratio under the same load",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep the bench database of an earlier run if it holds a fleet of this size (skips the setup)",
    )
    args = parser.parse_args()
    args.workers = [int(n) for n in args.workers.split(",")]
    args.web = [int(n) for n in args.web.split(",")]
    return args


# --- CPU accounting ----------------------------------------------------------------------------------------


class CpuMeter:
    """CPU seconds (user + system) used during [start, stop] by each kind of process, summed over its
    processes, sampled every 0.2 s (processes that appear later count from zero, those that end keep their
    last sample), and the peak RSS of each process."""

    def __init__(self, kinds: dict[str, Callable[[], list[psutil.Process]]]) -> None:
        self.kinds = kinds
        self.first: dict[tuple[str, int], float] = {}
        self.last: dict[tuple[str, int], float] = {}
        self.rss: dict[tuple[str, int], float] = {}
        self.started = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self, initial: bool) -> None:
        for kind, processes in self.kinds.items():
            for proc in processes():
                try:
                    with proc.oneshot():
                        times = proc.cpu_times()
                        cpu = times.user + times.system
                        rss = proc.memory_info().rss / 2**20
                        created = proc.create_time()
                except psutil.Error:
                    continue
                key = (kind, proc.pid)
                if key not in self.first:
                    self.first[key] = cpu if initial or created < self.started else 0.0
                self.last[key] = cpu
                self.rss[key] = max(self.rss.get(key, 0.0), rss)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self._sample(False)

    def start(self) -> CpuMeter:
        self.started = time.time()
        self._machine = psutil.cpu_times()
        self._sample(True)
        self._thread.start()
        return self

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        self._sample(False)
        totals: dict[str, float] = {kind: 0.0 for kind in self.kinds}
        for (kind, pid), last in self.last.items():
            totals[kind] += last - self.first[(kind, pid)]
        # The whole machine's busy CPU (it is shared): what the kinds above did not use is other work.
        now = psutil.cpu_times()
        busy = sum(
            getattr(now, f) - getattr(self._machine, f) for f in ("user", "nice", "system", "irq", "softirq")
        )
        totals["machine"] = busy
        totals["other"] = max(0.0, busy - sum(v for k, v in totals.items() if k != "machine"))
        return totals

    def peak_rss(self, kind: str) -> list[float]:
        return sorted(round(v, 1) for (k, _pid), v in self.rss.items() if k == kind)


def tree(pid: int) -> list[psutil.Process]:
    try:
        parent = psutil.Process(pid)
        return [parent, *parent.children(recursive=True)]
    except psutil.Error:
        return []


def postgres_backends(database: str) -> Callable[[], list[psutil.Process]]:
    """PostgreSQL's backend processes serving `database` (their title names it), not the other databases'."""
    pattern = re.compile(rf"^postgres: \S+ {re.escape(database)} ")

    def find() -> list[psutil.Process]:
        found = []
        for proc in psutil.process_iter(["name", "cmdline"]):
            cmdline = proc.info.get("cmdline") or []
            if proc.info.get("name") == "postgres" and cmdline and pattern.match(cmdline[0]):
                found.append(proc)
        return found

    return find


def shares(cpu: dict[str, float], wall: float) -> dict[str, float]:
    """CPU seconds per kind as a share of one core over the wall time (1.0 = one core busy throughout)."""
    return {kind: round(seconds / wall, 2) for kind, seconds in cpu.items()} if wall else {}


# --- processes ---------------------------------------------------------------------------------------------


def procfile(name: str) -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    raise SystemExit(f"bench: the Procfile has no {name}")


def start(argv: list[str], log: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        argv, cwd=ROOT, env=env or {**os.environ}, start_new_session=True,
        stdout=open(WORK / log, "a"), stderr=subprocess.STDOUT,  # noqa: SIM115
    )  # fmt: skip


def stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def start_worker(i: int) -> subprocess.Popen:
    """One worker process group as a machine of its own would run it (the scoring queue, one pool process)."""
    return start(
        [
            sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "scoring", "--pool", "prefork",
            "--concurrency", "1", "--without-gossip", "--without-mingle", "-l", "warning",
            "-n", f"scale-{i}-{time.time_ns()}@%h",
        ],
        f"worker-{i}.log",
        {**os.environ, "VIGIL_SCORING_ENQUEUE": "1"},
    )  # fmt: skip


# --- (a) sweep ---------------------------------------------------------------------------------------------


def sweep(fleet, versions, workers: int, chunk: int, redis_pid: int, database: str) -> dict:
    from django.db.models import F
    from django.utils import timezone

    from alerts.models import Score, ScoringDue
    from alerts.tasks import score_assets_task

    ids = [a.pk for a in fleet]
    Score.objects.filter(model_version__in=versions).delete()
    ScoringDue.objects.filter(asset_id__in=ids).update(due=True, seq=F("seq") + 1, marked_at=timezone.now())
    processes = [start_worker(i) for i in range(workers)]
    try:
        deadline = time.monotonic() + 120
        while sum(len(tree(p.pid)) for p in processes) < 2 * workers:  # each: main + its pool process
            if time.monotonic() > deadline:
                raise SystemExit("bench: the workers did not start; see " + str(WORK))
            time.sleep(0.2)
        time.sleep(3)  # imports done, pools forked
        meter = CpuMeter(
            {
                "workers": lambda: [proc for p in processes for proc in tree(p.pid)],
                "postgres": postgres_backends(database),
                "redis": lambda: tree(redis_pid),
                "bench": lambda: [psutil.Process()],
            }
        ).start()
        load = os.getloadavg()[0]
        began = time.perf_counter()
        for i in range(0, len(ids), chunk):
            score_assets_task.delay(ids[i : i + chunk])
        while ScoringDue.objects.filter(due=True).exists():
            if time.perf_counter() - began > 3600:
                raise SystemExit("bench: the sweep did not finish in an hour")
            time.sleep(0.1)
        wall = time.perf_counter() - began
        cpu = meter.stop()
    finally:
        for process in processes:
            stop(process)
    stored = Score.objects.filter(model_version__in=versions).count()
    return {
        "workers": workers,
        "assets": len(ids),
        "scores_stored": stored,
        "wall_s": round(wall, 2),
        "assets_per_s": round(len(ids) / wall, 1),
        "cpu_s": {kind: round(v, 1) for kind, v in cpu.items()},
        "cpu_cores": shares(cpu, wall),
        "peak_rss_mib": meter.peak_rss("workers"),
        "load_average_at_start": round(load, 2),
    }


def in_process_sweep(fleet, versions, chunk: int) -> dict:
    """The sweep of `sweep` run by score_assets in this process: CPU seconds of this process and of its
    PostgreSQL backend, per 100k assets (the profile's view, without Celery's share)."""
    from django.db import connection
    from django.db.models import F
    from django.utils import timezone

    from alerts.models import Score, ScoringDue
    from alerts.scoring import score_assets

    ids = [a.pk for a in fleet]
    Score.objects.filter(model_version__in=versions).delete()
    ScoringDue.objects.filter(asset_id__in=ids).update(due=True, seq=F("seq") + 1, marked_at=timezone.now())
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = psutil.Process(cursor.fetchone()[0])

    def cpu(proc: psutil.Process) -> float:
        times = proc.cpu_times()
        return times.user + times.system

    me, began_pg, began = psutil.Process(), cpu(backend), time.perf_counter()
    began_me = cpu(me)
    stored = 0
    for i in range(0, len(ids), chunk):
        stored += sum(score_assets(ids[i : i + chunk]).stored.values())
    scale = 100_000 / len(ids)
    return {
        "assets": len(ids),
        "scores_stored": stored,
        "wall_s": round(time.perf_counter() - began, 2),
        "cpu_s_per_100k": {
            "worker": round((cpu(me) - began_me) * scale, 1),
            "postgres": round((cpu(backend) - began_pg) * scale, 1),
        },
    }


# --- (b) ingest --------------------------------------------------------------------------------------------


def poster(
    url: str, token: str, sensors: dict[str, int], index: int, stride: int, seconds: float, out
) -> None:
    """One client process: prepared batches index, index + stride, ... POSTed for `seconds`."""
    from bench.ingest import BATCH, Batches

    batches = Batches(sensors)
    bodies = [batches.body(index + k * stride) for k in range(40)]
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    sent = 0
    with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
        began = time.perf_counter()
        while time.perf_counter() - began < seconds:
            if sent >= len(bodies):
                bodies.append(batches.body(index + len(bodies) * stride))
            response = client.post("/api/v1/readings", content=bodies[sent])
            if response.status_code != 200 or response.json().get("accepted") != BATCH:
                out.put(("error", f"HTTP {response.status_code}: {response.text[:300]}"))
                return
            sent += 1
        out.put(("ok", sent * BATCH, time.perf_counter() - began))


def ingest(web: int, posters: int, seconds: float, offset: int, redis_pid: int, database: str) -> dict:
    from plant.models import Gateway, Sensor, Site

    site = Site.objects.get(slug="ingest")
    _, token = Gateway.issue(site, f"scale-{time.time_ns()}")
    sensors = dict(Sensor.objects.filter(asset__site=site).values_list("key", "id"))
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "WEB_CONCURRENCY": str(web),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    server = start(["bash", "-c", f"exec {procfile('web')} --no-access-log"], f"web-{web}.log", env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("bench: the web server did not answer; see " + str(WORK / f"web-{web}.log"))
            time.sleep(0.2)
        ctx = multiprocessing.get_context("spawn")
        out = ctx.Queue()
        clients = [
            ctx.Process(target=poster, args=(url, token, sensors, offset + k, posters, seconds, out))
            for k in range(posters)
        ]
        for client in clients:
            client.start()
        time.sleep(1.0)  # the posters build their first bodies before the meter starts
        meter = CpuMeter(
            {
                "web": lambda: tree(server.pid),
                "postgres": postgres_backends(database),
                "redis": lambda: tree(redis_pid),
                "clients": lambda: [psutil.Process(c.pid) for c in clients if c.is_alive()],
            }
        ).start()
        began = time.perf_counter()
        answers = [out.get(timeout=seconds + 300) for _ in clients]
        wall = time.perf_counter() - began
        cpu = meter.stop()
        for client in clients:
            client.join()
    finally:
        stop(server)
    errors = [a[1] for a in answers if a[0] == "error"]
    if errors:
        raise SystemExit(f"bench: a poster failed: {errors[0]}")
    readings = sum(a[1] for a in answers)
    return {
        "web_processes": web,
        "posters": posters,
        "readings": readings,
        "wall_s": round(wall, 2),
        "readings_per_s": round(readings / max(a[2] for a in answers)),
        "cpu_s": {kind: round(v, 1) for kind, v in cpu.items()},
        "cpu_cores": shares(cpu, wall),
        "peak_rss_mib": meter.peak_rss("web"),
    }


def reused_fleet(n: int):
    """(assets, [champion, shadow]) of an earlier run's fleet of `n` assets in this database, or (None, None).
    The versions are registered anew: the earlier run's artifacts went with its temporary media folder."""
    from bench.fleet import vibration_version
    from models_registry.models import ModelVersion
    from plant.models import Asset

    fleet = list(Asset.objects.filter(site__slug="scale").select_related("site", "asset_type").order_by("pk"))
    if not fleet:
        return None, None
    if len(fleet) != n:
        raise SystemExit(f"bench: the reused database holds {len(fleet):,} assets, not {n:,} (drop --reuse)")
    pump = fleet[0].asset_type
    ModelVersion.objects.filter(asset_type=pump).delete()
    return fleet, [
        vibration_version(pump, "scale-vib", 1.0),
        vibration_version(pump, "scale-vib-2", 2.0, shadow=True),
    ]


def ingest_site() -> None:
    from bench.fleet import BASE
    from plant.models import Asset, AssetType, Sensor, SensorRole, Site

    if Site.objects.filter(slug="ingest").exists():  # a reused database (--reuse)
        return
    site = Site.objects.create(slug="ingest", name="ingest")
    pump = AssetType.objects.create(slug="ingest-pump", name="ingest pump")
    roles = [SensorRole.objects.create(asset_type=pump, key=key, label=key) for key in sorted(BASE)]
    assets = Asset.objects.bulk_create(
        [Asset(site=site, asset_type=pump, name=f"i-{i:03d}", tag=f"i-{i:03d}") for i in range(250)]
    )
    Sensor.objects.bulk_create(
        Sensor(asset=a, key=f"ingest.{a.tag}.{r.key}", role=r, valid_min=-1e6, valid_max=1e6)
        for a in assets
        for r in roles
    )


# --- main --------------------------------------------------------------------------------------------------


def main() -> int:
    args = configure()
    from config.scratch_db import prepare_postgres

    url = prepare_postgres(pg_url("bench/scale.py"), "_scale_bench", keep=args.reuse)
    database = url.rsplit("/", 1)[1].split("?")[0]
    redis_port = free_port()
    setup_django(
        url,
        WORK / "var",
        REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
        MEDIA_ROOT=str(WORK / "media"),
        LOG_LEVEL="WARNING",
    )
    from django.core.management import call_command

    from bench.fleet import load_fresh_readings, make_fleet, vibration_version
    from config.embedded_redis import start_embedded_redis

    call_command("migrate", verbosity=0)
    redis = start_embedded_redis(os.environ["REDIS_URL"], WORK / "redis")
    redis_pid = redis.process.pid
    result: dict = {"date": dt.date.today().isoformat(), "machine": machine(), "args": vars(args)}
    try:
        began = time.perf_counter()
        fleet, versions = reused_fleet(args.fleet) if args.reuse else (None, None)
        if fleet is None:
            _site, pump, fleet = make_fleet(args.fleet, "scale")
            versions = [
                vibration_version(pump, "scale-vib", 1.0),
                vibration_version(pump, "scale-vib-2", 2.0, shadow=True),
            ]
            load_fresh_readings(fleet, float(int(time.time()) // 10 * 10))
            result["setup_s"] = round(time.perf_counter() - began, 1)
            print(
                f"bench: {args.fleet:,} assets with 70 s of readings each in {result['setup_s']} s",
                flush=True,
            )
        else:
            result["setup_s"] = None
            print(f"bench: reused the {args.fleet:,} assets of an earlier run", flush=True)
        if args.in_process:
            for _ in range(args.in_process):
                print(f"bench: in-process sweep {in_process_sweep(fleet, versions, args.chunk)}", flush=True)
            return 0
        result["sweeps"] = []
        for workers in args.workers:
            run = sweep(fleet, versions, workers, args.chunk, redis_pid, database)
            print(f"bench: sweep {run}", flush=True)
            result["sweeps"].append(run)
        result["ingest"] = []
        if not args.skip_ingest:
            ingest_site()
            for k, web in enumerate(args.web):
                run = ingest(web, args.posters, args.seconds, 1000 * k * args.posters, redis_pid, database)
                print(f"bench: ingest {run}", flush=True)
                result["ingest"].append(run)
    finally:
        redis.stop()
    if args.skip_ingest and RESULTS.exists():
        # The ingest figures of the last run that measured them stay, with their date.
        earlier = json.loads(RESULTS.read_text())
        if earlier.get("ingest"):
            result["ingest"] = earlier["ingest"]
            result["ingest_date"] = earlier.get("ingest_date", earlier.get("date"))
    write_results(RESULTS, result)
    print(table(result))
    return 0


def table(result: dict) -> str:
    lines = [
        "| workers | assets × 2 versions | wall | assets/s | CPU (cores): workers / PostgreSQL / Redis / other work on the machine | peak RSS per worker |",
        "|---:|---:|---:|---:|---|---|",
    ]
    for run in result["sweeps"]:
        c = run["cpu_cores"]
        lines.append(
            f"| {run['workers']} | {run['assets']:,} | {run['wall_s']:.1f} s | {run['assets_per_s']:,.0f} | "
            f"{c['workers']:.2f} / {c['postgres']:.2f} / {c['redis']:.2f} / {c['other']:.2f} | "
            f"{', '.join(f'{v:.0f}' for v in run['peak_rss_mib'])} MiB |"
        )
    if result["ingest"]:
        lines += [
            "",
            "| web processes | posters | readings/s | CPU (cores): web / PostgreSQL / Redis / clients / other work |",
            "|---:|---:|---:|---|",
        ]
        for run in result["ingest"]:
            c = run["cpu_cores"]
            lines.append(
                f"| {run['web_processes']} | {run['posters']} | {run['readings_per_s']:,} | "
                f"{c['web']:.2f} / {c['postgres']:.2f} / {c['redis']:.2f} / {c['clients']:.2f} / {c['other']:.2f} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
