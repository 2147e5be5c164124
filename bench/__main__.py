"""`make bench`: sync ingestion, measured against the sandbox on PostgreSQL (DESIGN.md §10).

    python -m bench [--sections ingest,dispatcher,recovery,interactive,scaling]
                    [--orders N] [--inventory N] [--baseline N] [--rss 100000,1000000]

Environment: BENCH_SECTIONS, BENCH_ORDERS, BENCH_INVENTORY, BENCH_BASELINE, BENCH_RSS the
same knobs. Uses DATABASE_URL (PostgreSQL) and REDIS_URL when both are set, else starts
throwaway servers with scripts/services.sh. Creates and drops its own database
(test_<name>_bench). The sections other than ingest are issue 12's: bench/fleet.py.

The ingest section prints, for each resource, in records/s:
  fetch-only     the sandbox's serving rate as the client sees it (HTTP + JSON, no DB)
  production     connections.sync.run.sync_resource: the real path, sandbox -> PostgreSQL
  baseline       the naive path: update_or_create per record (on a subset, --baseline)
  recorded       pages fetched once to disk, then only the upsert timed (and a COPY-based
                 merge on the same pages, to show whether it would pay)
and the peak RSS of a whole orders sync in a fresh process at each --rss size.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "bench-key"
# ingest: the tables below; the others are issue 12's, in bench/fleet.py.
ALL_SECTIONS = ("ingest", "dispatcher", "recovery", "interactive", "scaling")


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--orders", type=int, default=_env_int("BENCH_ORDERS", 200_000))
    parser.add_argument("--inventory", type=int, default=_env_int("BENCH_INVENTORY", 200_000))
    parser.add_argument(
        "--baseline",
        type=int,
        default=_env_int("BENCH_BASELINE", 10_000),
        help="records the naive update_or_create path syncs (a subset)",
    )
    parser.add_argument(
        "--rss",
        default=os.environ.get("BENCH_RSS", "100000,1000000"),
        help="comma list of orders counts to measure peak RSS at; '' skips",
    )
    parser.add_argument(
        "--sections",
        default=os.environ.get("BENCH_SECTIONS", ",".join(ALL_SECTIONS)),
        help=f"comma list of {', '.join(ALL_SECTIONS)} (default all)",
    )
    parser.add_argument("--child", choices=["rss"], help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--records", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# --- Processes ---------------------------------------------------------------------------


def _reexec_with_throwaway_postgres() -> None:
    script = (
        f"source {ROOT}/scripts/services.sh && services_start && trap services_stop EXIT && "
        f'"{sys.executable}" -m bench "$@"'
    )
    print("==> DATABASE_URL or REDIS_URL is not set: starting throwaway servers", flush=True)
    result = subprocess.run(["bash", "-c", script, "bench", *sys.argv[1:]], cwd=ROOT)
    sys.exit(result.returncode)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sandbox(log) -> tuple[subprocess.Popen, str]:
    import requests

    port = _free_port()
    env = {**os.environ, "TRACKSTAR_API_KEY": API_KEY, "PYTHONPATH": str(ROOT)}
    env.pop("TRACKSTAR_SANDBOX_WEBHOOK_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if requests.get(base_url + "/_sandbox/health", timeout=1).ok:
                break
        except requests.ConnectionError:
            time.sleep(0.05)
    else:
        process.kill()
        raise SystemExit("the sandbox did not start")
    # Trackstar's own ceiling is 10 GET/s per token; the bench measures our side.
    requests.post(base_url + "/_sandbox/config", json={"get_rate": 1_000_000}, timeout=10)
    return process, base_url


def sandbox_connection(base_url: str, **counts: int) -> dict:
    import requests

    headers = {"x-trackstar-api-key": API_KEY}
    # Trackstar's initial sync is done at once: the bench measures our reads, not its wait.
    requests.post(base_url + "/_sandbox/config", json={"historical_sync_delay": 0}, timeout=10)
    link_token = requests.post(
        base_url + "/link/token", json={}, headers=headers, timeout=10
    ).json()["link_token"]
    auth_code = requests.post(
        base_url + "/_sandbox/link/authorize",
        json={"link_token": link_token, "integration_name": "sandbox", "credentials": {}},
        timeout=10,
    ).json()["auth_code"]
    made = requests.post(
        base_url + "/link/exchange", json={"auth_code": auth_code}, headers=headers, timeout=10
    ).json()
    requests.post(
        base_url + "/_sandbox/dataset",
        json={"connection_id": made["connection_id"], "counts": counts},
        timeout=60,
    )
    return made


# --- Django -------------------------------------------------------------------------------


def setup_django(base_url: str) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
    os.environ["TRACKSTAR_BASE_URL"] = base_url
    os.environ["TRACKSTAR_API_KEY"] = API_KEY
    # Our limiter would hold us at Trackstar's 10 pages/s; lift it as the sandbox's.
    os.environ["TRACKSTAR_GET_RATE"] = "1000000"
    os.environ["TRACKSTAR_GET_BURST"] = "1000000"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def make_connection(made: dict):
    from connections.models import Connection, ResourceSync
    from connections.sync.schedule import sync_resources_for
    from customers.models import Customer

    customer, _ = Customer.objects.get_or_create(
        slug="bench", defaults={"name": "Bench", "contact_email": "bench@example.com"}
    )
    connection = Connection.objects.create(
        customer=customer,
        trackstar_connection_id=made["connection_id"],
        integration_name=made["integration_name"],
        access_token=made["access_token"],
        available_actions=made["available_actions"],
        status=Connection.Status.ACTIVE,
        source=Connection.Source.STAFF,
    )
    # As after connection.historical-sync-completed: the resources may be read.
    ResourceSync.objects.bulk_create(
        [
            ResourceSync(connection=connection, resource=resource, history_ready=True)
            for resource in sync_resources_for(connection)
        ]
    )
    return connection


# --- Measurements -------------------------------------------------------------------------


def measure_fetch_only(connection, resource_name: str) -> tuple[int, float]:
    from connections.clients import trackstar_client

    started = time.perf_counter()
    count = 0
    for page in trackstar_client().iter_pages(resource_name, access_token=connection.access_token):
        count += len(page.records)
    return count, time.perf_counter() - started


def measure_production(connection, resource_name: str) -> tuple[int, float]:
    from connections.sync.run import sync_resource

    cpu = CpuMeter()
    started = time.perf_counter()
    outcome = sync_resource(connection_id=connection.pk, resource=resource_name, kind="initial")
    elapsed = time.perf_counter() - started
    assert outcome.status == "succeeded", outcome
    cpu.stop(outcome.run.records)
    return outcome.run.records, elapsed


class CpuMeter:
    """CPU per record of this process (both threads) and of its PostgreSQL backend (read
    from /proc when the server runs on this machine): where the time goes."""

    last: dict[str, float | None] = {}

    def __init__(self) -> None:
        from django.db import connection as db_connection

        db_connection.ensure_connection()
        with db_connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            self.pg_pid = cursor.fetchone()[0]
        self.process = time.process_time()
        self.pg = self._pg_cpu()

    def _pg_cpu(self) -> float | None:
        try:
            fields = Path(f"/proc/{self.pg_pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self, records: int) -> None:
        pg_now = self._pg_cpu()
        CpuMeter.last = {
            "worker_us": (time.process_time() - self.process) / records * 1e6,
            "pg_us": (pg_now - self.pg) / records * 1e6
            if pg_now is not None and self.pg is not None
            else None,
        }


def measure_baseline(connection, resource_name: str, limit: int) -> tuple[int, float]:
    """What a first implementation does: fetch pages, update_or_create every record."""
    from connections.clients import trackstar_client
    from connections.models import RECORD_MODELS
    from connections.models.records import parse_datetime

    model = RECORD_MODELS[resource_name]
    started = time.perf_counter()
    count = 0
    for page in trackstar_client().iter_pages(resource_name, access_token=connection.access_token):
        for record in page.records:
            model.objects.update_or_create(
                connection=connection,
                trackstar_id=record["id"],
                defaults={
                    "customer_id": connection.customer_id,
                    "created_date": parse_datetime(record.get("created_date")),
                    "updated_date": parse_datetime(record.get("updated_date")),
                    "synced_at": time_now(),
                    "data": record,
                    **model.columns_from(record),
                },
            )
            count += 1
            if count >= limit:
                return count, time.perf_counter() - started
    return count, time.perf_counter() - started


def time_now():
    from django.utils import timezone

    return timezone.now()


def record_pages(connection, resource_name: str, path: Path) -> int:
    import orjson

    from connections.clients import trackstar_client

    pages = 0
    with path.open("wb") as f:
        for page in trackstar_client().iter_pages(
            resource_name, access_token=connection.access_token
        ):
            f.write(orjson.dumps(page.records) + b"\n")
            pages += 1
    return pages


def measure_recorded(
    connection, resource_name: str, path: Path, *, copy: bool
) -> tuple[int, float]:
    """Upsert recorded pages one at a time; only the database write is timed."""
    import orjson
    from django.db import transaction

    from connections.models import RECORD_MODELS
    from connections.sync.upsert import records_upsert_batch

    model = RECORD_MODELS[resource_name]
    count = 0
    elapsed = 0.0
    with path.open("rb") as f:
        for line in f:
            records = orjson.loads(line)
            started = time.perf_counter()
            with transaction.atomic():
                if copy:
                    copy_merge(connection, model, records)
                else:
                    records_upsert_batch(connection, model, records, None, False)
            elapsed += time.perf_counter() - started
            count += len(records)
    return count, elapsed


def copy_merge(connection, model, records: list[dict]) -> None:
    """The COPY alternative: COPY the page into a temporary table, then one INSERT ...
    SELECT ... ON CONFLICT from it. Kept here, not in the app, because it did not pay."""
    import orjson
    from django.db import connection as db_connection
    from django.utils import timezone

    from connections.models.records import parse_datetime

    names = [
        "connection_id",
        "customer_id",
        "trackstar_id",
        "created_date",
        "updated_date",
        "synced_at",
        "data",
        *model.columns_from({}),
    ]
    columns = ", ".join(f'"{model._meta.get_field(n).column}"' for n in names)
    table = model._meta.db_table
    stage = f"bench_stage_{table}"
    updates = ", ".join(f'"{n}" = EXCLUDED."{n}"' for n in names[3:])
    now = timezone.now()
    db_connection.ensure_connection()
    raw = db_connection.connection
    with raw.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS "
            f"AS SELECT {columns} FROM {table} WITH NO DATA"
        )
        with cursor.copy(f"COPY {stage} ({columns}) FROM STDIN") as copy:
            for record in records:
                copy.write_row(
                    [
                        connection.pk,
                        connection.customer_id,
                        record["id"],
                        parse_datetime(record.get("created_date")),
                        parse_datetime(record.get("updated_date")),
                        now,
                        orjson.dumps(record).decode(),
                        *model.columns_from(record).values(),
                    ]
                )
        cursor.execute(
            f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {stage} "
            f"ON CONFLICT (connection_id, trackstar_id) DO UPDATE SET {updates}"
        )


def run_rss_child(args: argparse.Namespace) -> None:
    """In a fresh process: sync N orders, report the peak RSS."""
    setup_django(args.base_url)
    made = sandbox_connection(args.base_url, orders=args.records)
    connection = make_connection(made)
    count, elapsed = measure_production(connection, "orders")
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"records": count, "seconds": elapsed, "peak_rss_kb": peak_kb}))


def rss_of_sync(base_url: str, records: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--child",
            "rss",
            "--base-url",
            base_url,
            "--records",
            str(records),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"RSS run failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# --- Report --------------------------------------------------------------------------------


def machine() -> dict:
    meminfo = Path("/proc/meminfo").read_text().split("\n")[0].split()
    return {
        "nproc": os.cpu_count(),
        "ram_gb": round(int(meminfo[1]) / 1024 / 1024, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def rate(count: int, seconds: float) -> int:
    return round(count / seconds) if seconds else 0


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    if args.child == "rss":
        run_rss_child(args)
        return
    if not os.environ.get("DATABASE_URL", "").startswith(
        ("postgres://", "postgresql://")
    ) or not os.environ.get("REDIS_URL"):
        _reexec_with_throwaway_postgres()  # and Redis, which the workers' sections need
    # A database of our own, dropped at the end; child processes use it as it is.
    os.environ["DATABASE_URL"] = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/dockside_bench"
    log = tempfile.TemporaryFile()
    sandbox, base_url = start_sandbox(log)
    try:
        setup_django(base_url)
        from django.db import connection as db_connection
        from django.test.utils import setup_databases, teardown_databases

        old_config = setup_databases(verbosity=0, interactive=False)
        os.environ["DATABASE_URL"] = (
            os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/" + db_connection.settings_dict["NAME"]
        )
        try:
            report(args, base_url)
        finally:
            db_connection.close()
            teardown_databases(old_config, verbosity=0)
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=10)


def report(args: argparse.Namespace, base_url: str) -> None:
    from django.db import connection as db_connection

    from bench.fleet import SECTIONS

    with db_connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg_version = cursor.fetchone()[0]
    info = machine()
    print(f"==> load average {os.getloadavg()[0]:.2f} before the run", flush=True)
    print(
        f"==> {info['nproc']} CPUs, {info['ram_gb']} GB RAM, Python {info['python']}, "
        f"PostgreSQL {pg_version}, {info['platform']}",
        flush=True,
    )
    chosen = [name.strip() for name in args.sections.split(",") if name.strip()]
    unknown = set(chosen) - set(ALL_SECTIONS)
    if unknown:
        raise SystemExit(f"Unknown sections {sorted(unknown)}; choose from {ALL_SECTIONS}")
    for name in chosen:
        if name == "ingest":
            report_ingest(args, base_url)
        else:
            SECTIONS[name](base_url)
            print(f"\nLoad average {os.getloadavg()[0]:.2f} after {name}.\n", flush=True)


def report_ingest(args: argparse.Namespace, base_url: str) -> None:
    sizes = {"orders": args.orders, "inventory": args.inventory}
    rows = []
    for resource_name, total in sizes.items():
        if not total:
            continue
        counts = {resource_name: total}
        made = sandbox_connection(base_url, **counts)
        production_conn = make_connection(made)
        print(f"==> {resource_name}: {total} records", flush=True)
        fetched, fetch_s = measure_fetch_only(production_conn, resource_name)
        print(f"    fetch-only      {rate(fetched, fetch_s):>8} rec/s", flush=True)
        synced, sync_s = measure_production(production_conn, resource_name)
        assert synced == total, (synced, total)
        cpu = CpuMeter.last
        pg_us = f"{cpu['pg_us']:.0f}" if cpu["pg_us"] is not None else "?"
        print(
            f"    production      {rate(synced, sync_s):>8} rec/s  ({sync_s:.1f} s; CPU per "
            f"record: worker {cpu['worker_us']:.0f} us, PostgreSQL {pg_us} us)",
            flush=True,
        )
        baseline_conn = make_connection({**made, "connection_id": made["connection_id"] + "-b"})
        base_n, base_s = measure_baseline(baseline_conn, resource_name, args.baseline)
        print(f"    baseline        {rate(base_n, base_s):>8} rec/s  (first {base_n})", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "pages.jsonl"
            record_pages(production_conn, resource_name, path)
            recorded_conn = make_connection({**made, "connection_id": made["connection_id"] + "-r"})
            rec_n, rec_s = measure_recorded(recorded_conn, resource_name, path, copy=False)
            print(f"    recorded upsert {rate(rec_n, rec_s):>8} rec/s", flush=True)
            copy_conn = make_connection({**made, "connection_id": made["connection_id"] + "-c"})
            copy_n, copy_s = measure_recorded(copy_conn, resource_name, path, copy=True)
            print(f"    recorded COPY   {rate(copy_n, copy_s):>8} rec/s", flush=True)
        rows.append(
            (
                resource_name,
                total,
                rate(fetched, fetch_s),
                rate(synced, sync_s),
                rate(base_n, base_s),
                base_n,
                rate(rec_n, rec_s),
                rate(copy_n, copy_s),
            )
        )

    print(
        "\n| resource | records | fetch-only | production | baseline (subset) | ratio | "
        "recorded upsert | recorded COPY merge |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, total, fetch, prod, base, base_n, rec, copy in rows:
        ratio = prod / base if base else float("inf")
        print(
            f"| {name} | {total:,} | {fetch:,} | {prod:,} | {base:,} ({base_n:,}) | "
            f"{ratio:.0f}x | {rec:,} | {copy:,} |"
        )

    sizes_rss = [int(s) for s in args.rss.split(",") if s.strip()]
    print(
        f"\nLoad average {os.getloadavg()[0]:.2f} after the runs (other work on this machine "
        "slows every number above)."
    )
    if sizes_rss:
        print("\n| orders synced | seconds | records/s | peak RSS |")
        print("|---:|---:|---:|---:|")
        peaks = []
        for size in sizes_rss:
            result = rss_of_sync(base_url, size)
            peaks.append(result["peak_rss_kb"])
            print(
                f"| {result['records']:,} | {result['seconds']:.1f} | "
                f"{rate(result['records'], result['seconds']):,} | "
                f"{result['peak_rss_kb'] / 1024:.0f} MB |",
                flush=True,
            )
        if len(peaks) > 1:
            print(f"\nPeak RSS ratio, largest / smallest: {peaks[-1] / peaks[0]:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
