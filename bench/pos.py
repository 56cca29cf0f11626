"""Till throughput: `POST /api/v1/purchases` under load, against the floor.

    .venv/bin/python -m bench.pos [--db sqlite|postgres|both] [--seconds 10]
                                  [--connections 16,4] [--rounds 3] [--members 2000]
                                  [--smoke]

For each database (SQLite; PostgreSQL on 127.0.0.1:5432 as user postgres) it makes a
fresh instance folder or database, runs the migrations, adds a store, a pos key and
MEMBERS members with points (bench/seed.py), starts the app under gunicorn with 2 workers
(the repository's gunicorn.conf.py) on a free port, and drives `POST /api/v1/purchases`
with wrk (bench/purchases.lua: a new receipt per request, one line, a random member, one
in five redeeming 50 points) over CONNECTIONS connections for SECONDS seconds, after a
short warm-up, and runs `flask loyalty verify` on the app's database. It does the
same against two baselines: bench/stack_app.py — the app's whole stack (auth, limits,
metrics, logging, flask-smorest and marshmallow, the session) around a body of one INSERT
and one UPDATE — and bench/bare_app.py — bare Flask with plain sqlite3 or psycopg doing
that INSERT and UPDATE, same gunicorn, same settings, same bodies. The stack baseline
writes to a copy of the seeded database (it changes balances behind the ledger's back),
so that the three can take turns: ROUNDS rounds of app, stack, bare for each load, and
the ratios are taken within each round and reported as their median and range (a
machine whose speed drifts over minutes moves all three of a round together).

It prints requests/s, p50, p90 and p99 of each run, the ratios (app/stack is the target,
at least TARGET_RATIO; app/bare is the floor we report; the stack baseline splits the
gap into the framework's share and the loyalty work's) and whether the target is met; it
reports, it asserts no timing. It also prints the share of the CPUs that went to
anything else during each load (another job on the machine makes the figures
meaningless) and warns above 5%.

Exit status: 0 when every request worked (2xx; a 409 "not enough points" is counted
apart and allowed), every purchase answered is in the database and the ledger
verifies; 1 otherwise; 2 when wrk or PostgreSQL is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.bare_app import init_db

REPO = Path(__file__).resolve().parent.parent
LUA = Path(__file__).resolve().parent / "purchases.lua"
PG_HOST = "postgres@127.0.0.1:5432"
PG_ADMIN = f"postgresql://{PG_HOST}/postgres"
POINTS = 100_000  # per member: redemptions (50 points) never run out
REDEEM_EVERY = 5
TARGET_RATIO = 0.7  # app/stack
BUSY_WARNING = 0.05  # share of the CPUs used by other work during a load: warn above this


@dataclass
class Load:
    """What wrk measured (bench/purchases.lua's BENCH line)."""

    values: dict[str, float]
    stderr: str = ""

    def __getattr__(self, name: str) -> float:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def socket_errors(self) -> int:
        return int(self.connect_err + self.read_err + self.write_err + self.timeouts)

    @property
    def failures(self) -> int:
        """Requests that did not work, apart from 409s."""
        return int(self.s4xx + self.s5xx + self.sother) + self.socket_errors


@dataclass
class Run:
    server: str  # "app", "stack" or "bare"
    kind: str  # the HTTP server: "gunicorn" or "granian"
    connections: int
    load: Load
    warmup: Load | None
    rows: int  # purchases in the database afterwards
    log_errors: list[str] = field(default_factory=list)
    round: int = 0

    @property
    def warmup_2xx(self) -> int:
        return int(self.warmup.s2xx) if self.warmup is not None else 0


@dataclass
class DbResult:
    db: str

    runs: list[Run] = field(default_factory=list)
    verify_rc: int | None = None
    verify_output: str = ""
    problems: list[str] = field(default_factory=list)

    def run(self, server: str, kind: str, connections: int, round: int = 0) -> Run | None:
        return next((r for r in self.runs if (r.server, r.kind, r.connections, r.round)
                     == (server, kind, connections, round)), None)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- processes -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{port}/healthz"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode} before answering")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def start_server(kind: str, wsgi: str, env: dict[str, str], port: int, tmp: Path, name: str,
                 workers: int) -> tuple[subprocess.Popen[bytes], Path]:
    """gunicorn with the repository's gunicorn.conf.py (sync workers), or Granian's WSGI
    workers (one blocking thread each: the same one request at a time per worker)."""
    metrics = Path(tempfile.mkdtemp(prefix=f"metrics-{name}-", dir=tmp))
    env = {**env, "BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": str(workers),
           "PROMETHEUS_MULTIPROC_DIR": str(metrics)}
    if kind == "gunicorn":
        command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", wsgi]
    else:
        command = [str(Path(sys.executable).parent / "granian"), "--interface", "wsgi",
                   "--workers", str(workers), "--blocking-threads", "1", "--host",
                   "127.0.0.1", "--port", str(port), "--log-level", "warning", wsgi]
    log_path = tmp / f"{kind}-{name}-{port}.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        wait_healthy(port, proc)
    except BaseException:
        stop(proc)
        log(log_path.read_text(errors="replace")[-3000:])
        raise
    return proc, log_path


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_wrk(port: int, seconds: int, args: argparse.Namespace, key: str, tag: str,
            server_pid: int, path: str, connections: int) -> Load:
    occurred_at = (datetime.now(UTC) - timedelta(minutes=1)).replace(microsecond=0)
    cmd = ["wrk", f"-t{min(args.threads, connections)}", f"-c{connections}", f"-d{seconds}s",
           "--timeout", "10s", "-s", str(LUA), f"http://127.0.0.1:{port}{path}",
           "--", str(args.members), key, occurred_at.isoformat(), tag, str(REDEEM_EVERY)]
    watch = CpuWatch(server_pid)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
    other = watch.other_share()
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    values = {k: float(v) for k, v in (kv.split("=") for kv in line.split()[1:])}
    values["other_cpu"] = other
    return Load(values, done.stderr.strip())


def _cpu_total() -> tuple[int, int]:
    """(all CPU time, busy CPU time) since boot, in clock ticks (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:9]]
    return sum(fields), sum(fields) - fields[3] - fields[4]  # less idle and iowait


def _processes() -> dict[int, tuple[int, str, int]]:
    """{pid: (parent pid, command, CPU ticks used)} of every process (/proc/PID/stat)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1:raw.rindex(")")]
        rest = raw[raw.rindex(")") + 2:].split()
        found[int(entry.name)] = (int(rest[1]), comm, int(rest[11]) + int(rest[12]))
    return found


def _ours(procs: dict[int, tuple[int, str, int]], root: int) -> dict[int, int]:
    """CPU ticks of ``root`` and its descendants (gunicorn) and of PostgreSQL's processes."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        tree.add(pid)
        todo.extend(children.get(pid, []))
    return {pid: ticks for pid, (_, comm, ticks) in procs.items()
            if pid in tree or comm in ("postgres", "postmaster")}


class CpuWatch:
    """How much of the machine's CPU went to anything but this benchmark (gunicorn's
    processes, wrk, PostgreSQL) while it ran: another job on the machine (a test suite,
    say) makes the figures meaningless, so it is reported next to them. Linux only;
    elsewhere it reports 0."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        try:
            self.total0, self.busy0 = _cpu_total()
            self.ours0 = _ours(_processes(), server_pid)
        except OSError:
            self.total0 = None
        self.children0 = os.times()

    def other_share(self) -> float:
        if self.total0 is None:
            return 0.0
        total, busy = _cpu_total()
        ours1 = _ours(_processes(), self.server_pid)
        ticks = sum(t - self.ours0.get(pid, 0) for pid, t in ours1.items())
        now = os.times()  # wrk, once it has exited
        tick = os.sysconf("SC_CLK_TCK")
        ticks += round((now.children_user - self.children0.children_user
                        + now.children_system - self.children0.children_system) * tick)
        return max(0.0, (busy - self.busy0 - ticks) / max(total - self.total0, 1))


def error_lines(log_path: Path) -> list[str]:
    """Warnings and errors the server logged (LOG_LEVEL=WARNING: nothing per request)."""
    lines = log_path.read_text(errors="replace").splitlines()
    return [ln for ln in lines
            if re.search(r'"level": "(warning|error|critical)"|Traceback|\[ERROR\]|'
                         r'WORKER TIMEOUT|Exception', ln)]


def flask(env: dict[str, str], *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "flask", *argv], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    if check and done.returncode != 0:
        raise RuntimeError(f"flask {' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}")
    return done


# --- databases -------------------------------------------------------------------------


def pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql)


def copy_database(source: str, target: str) -> None:
    """A copy of the seeded app database, for the stack baseline (no server runs yet)."""
    if source.startswith("sqlite:///"):
        with closing(sqlite3.connect(source.removeprefix("sqlite:///"))) as conn, \
                closing(sqlite3.connect(target.removeprefix("sqlite:///"))) as copy:
            conn.backup(copy)
        return
    pg_admin(f"CREATE DATABASE {target.rsplit('/', 1)[1]} TEMPLATE "
             f"{source.rsplit('/', 1)[1]}")


def count_rows(target: str, table: str) -> int:
    if target.startswith("postgresql"):
        import psycopg

        with psycopg.connect(target.replace("+psycopg", "")) as conn:
            return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    with closing(sqlite3.connect(target.removeprefix("sqlite:///"))) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def drive(name: str, wsgi: str, env: dict[str, str], tmp: Path, key: str, db_target: str,
          args: argparse.Namespace, tag: str, kind: str, connections: int, round: int,
          path: str = "/api/v1/purchases") -> Run:
    before = count_rows(db_target, "purchases")
    port = free_port()
    tag = f"{tag}{kind[:2]}{connections}r{round}"
    log(f"  {name}: {kind} {wsgi} ({args.workers} workers) on :{port}")
    proc, log_path = start_server(kind, wsgi, env, port, tmp, name, args.workers)
    try:
        warm = None
        if args.warmup:
            log(f"  {name}: warm-up {args.warmup} s")
            warm = run_wrk(port, args.warmup, args, key, f"{tag}w", proc.pid, path,
                           connections)
        log(f"  {name}: load {args.seconds} s, {connections} connections")
        load = run_wrk(port, args.seconds, args, key, tag, proc.pid, path, connections)
    finally:
        stop(proc)
    if load.other_cpu > BUSY_WARNING:
        log(f"  {name}: {load.other_cpu:.0%} of the CPUs went to other work during the load: "
            "figures unreliable")
    return Run(name, kind, connections, load, warm,
               count_rows(db_target, "purchases") - before, error_lines(log_path), round)


def run_db(kind: str, args: argparse.Namespace) -> DbResult:
    result = DbResult(kind)
    tmp = Path(tempfile.mkdtemp(prefix=f"crm-bench-{kind}-"))
    dbs: list[str] = []
    try:
        if kind == "sqlite":
            app_url = f"sqlite:///{tmp / 'crm.db'}"
            stack_url = f"sqlite:///{tmp / 'stack.db'}"
            bare_target = str(tmp / "bare.db")
        else:
            name = f"crm_bench_{os.getpid()}"
            for db in (name, f"{name}_bare"):
                pg_admin(f"CREATE DATABASE {db}")
                dbs.append(db)
            app_url = f"postgresql+psycopg://{PG_HOST}/{name}"
            stack_url = f"postgresql+psycopg://{PG_HOST}/{name}_stack"
            bare_target = f"postgresql://{PG_HOST}/{name}_bare"
        env = {k: v for k, v in os.environ.items()
               if k not in ("PROMETHEUS_MULTIPROC_DIR", "BARE_DATABASE")}
        env.update({"FLASK_APP": "wsgi", "DATABASE_URL": app_url,
                    "INSTANCE_PATH": str(tmp / "instance"), "LOG_LEVEL": "WARNING",
                    "RATELIMIT_DEFAULT": "1000000 per minute", "PYTHONUNBUFFERED": "1"})

        started = time.monotonic()
        log(f"[{kind}] fresh database, migrations")
        flask(env, "db", "upgrade")
        log(f"[{kind}] {args.members} members with {POINTS} points each")
        done = subprocess.run(
            [sys.executable, "-m", "bench.seed", str(args.members), str(POINTS)],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"bench.seed failed:\n{done.stderr[-3000:]}")
        seeded = json.loads(done.stdout.strip().splitlines()[-1])
        if (seeded["first_id"], seeded["last_id"]) != (1, args.members):
            raise RuntimeError(f"members are not ids 1..{args.members}: {seeded}")
        init_db(bare_target, args.members, POINTS)
        copy_database(app_url, stack_url)
        if kind != "sqlite":
            dbs.append(f"{name}_stack")
        stack_env = {**env, "DATABASE_URL": stack_url}  # same instance folder: same keys
        log(f"[{kind}] set up in {time.monotonic() - started:.1f} s")

        tag = f"{kind[:2]}{os.getpid()}"
        plan = [(server, c) for server in args.servers for c in args.loads]
        for server, connections in plan:
            for round in range(args.rounds):
                result.runs.append(drive("app", "wsgi:app", env, tmp, seeded["pos_key"],
                                         app_url, args, f"a{tag}", server, connections,
                                         round))
                result.runs.append(drive("stack", "bench.stack_app:app", stack_env, tmp,
                                         seeded["pos_key"], stack_url, args, f"s{tag}",
                                         server, connections, round,
                                         "/api/v1/bench/purchases"))
                result.runs.append(drive("bare", "bench.bare_app:app",
                                         {**env, "BARE_DATABASE": bare_target}, tmp,
                                         seeded["pos_key"], bare_target, args, f"b{tag}",
                                         server, connections, round))
        log(f"[{kind}] flask loyalty verify")
        verified = flask(env, "loyalty", "verify", check=False)
        result.verify_rc = verified.returncode
        result.verify_output = (verified.stdout + verified.stderr).strip()
    except Exception as e:  # report what broke, carry on with the other database
        result.problems.append(f"{type(e).__name__}: {e}")
    finally:
        if args.keep:
            log(f"[{kind}] kept {tmp}" + (f" and databases {', '.join(dbs)}" if dbs else ""))
        else:
            shutil.rmtree(tmp, ignore_errors=True)
            for db in dbs:
                try:
                    pg_admin(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
                except Exception as e:
                    log(f"[{kind}] could not drop {db}: {e}")
    check(result)
    return result


def check(result: DbResult) -> None:
    """Everything that is not a figure: failed requests, lost or extra rows, the ledger."""
    for run in result.runs:
        load = run.load
        if load.s2xx == 0:
            result.problems.append(f"{run.server}: no request succeeded")
        for phase, x in (("warm-up", run.warmup), ("load", load)):
            if x is not None and x.failures:
                result.problems.append(
                    f"{run.server} {phase}: {x.failures} failed requests (4xx other than "
                    f"409: {x.s4xx:.0f}, 5xx: {x.s5xx:.0f}, other: {x.sother:.0f}, socket "
                    f"errors: {x.socket_errors})")
            if x is not None and run.server != "app" and x.s409:
                result.problems.append(f"{run.server} {phase}: {x.s409:.0f} 409 answers")
        # wrk stops counting at its deadline: requests in flight then (at most one per
        # connection, per wrk run) are written but not counted.
        answered = run.warmup_2xx + int(load.s2xx)
        in_flight = run.connections * (2 if run.warmup else 1)
        if not answered <= run.rows <= answered + in_flight:
            result.problems.append(f"{run.server}: {run.rows} purchases in the database but "
                                   f"{answered} answered 2xx (and at most {in_flight} in "
                                   "flight when wrk stopped)")
        if run.log_errors:
            result.problems.append(f"{run.server}: {len(run.log_errors)} warning/error lines "
                                   f"in the server log, e.g. {run.log_errors[0][:300]}")
    if any(r.server == "app" for r in result.runs) and result.verify_rc != 0:
        result.problems.append(f"flask loyalty verify exited {result.verify_rc}")


# --- report ----------------------------------------------------------------------------


def split_line(rounds: list[list[Run]]) -> str:
    """app/stack, app/bare and stack/bare (median of the rounds' own ratios, and their
    range), and the split of a sale's time, from the median throughputs."""
    def ratio(i: int, j: int) -> str:
        values = sorted(trio[i].load.rps / trio[j].load.rps for trio in rounds)
        text = f"{statistics.median(values):.2f}"
        return text + (f" [{values[0]:.2f}-{values[-1]:.2f}]" if len(values) > 1 else "")

    median_ratio = statistics.median(t[0].load.rps / t[1].load.rps for t in rounds)
    a, st, b = (1000 / statistics.median(t[i].load.rps for t in rounds) for i in range(3))
    p99 = statistics.median(t[0].load.p99_ms for t in rounds)
    return (f"app/stack {ratio(0, 1)} ({'met' if median_ratio >= TARGET_RATIO else 'NOT met'})"
            f", app/bare {ratio(0, 2)}, stack/bare {ratio(1, 2)}; {a:.2f} ms = bare {b:.2f} + "
            f"framework {st - b:.2f} + loyalty work {a - st:.2f}; app p99 {p99:.1f} ms")


def report(results: list[DbResult], args: argparse.Namespace) -> None:
    print()
    print(f"POST /api/v1/purchases: {args.workers} workers of {' and '.join(args.servers)}, "
          f"wrk at {' and '.join(map(str, args.loads))} connections, {args.seconds} s after "
          f"{args.warmup} s warm-up, {args.members} members, 1 in {REDEEM_EVERY} redeeming "
          f"50 points; {os.cpu_count()} CPUs (wrk and the database share them)")
    print()
    head = (f"{'db':<9}{'http':<9}{'conns':>5}{'round':>6} {'server':<7}{'req/s':>9}{'p50 ms':>9}"
            f"{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}{'requests':>10}{'non-2xx':>9}{'409':>6}"
            f"{'sock err':>9}{'other CPU':>10}")
    print(head)
    print("-" * len(head))
    for r in results:
        for run in sorted(r.runs, key=lambda x: (x.kind, -x.connections, x.round)):
            x = run.load
            print(f"{r.db:<9}{run.kind:<9}{run.connections:>5}{run.round + 1:>6} "
                  f"{run.server:<7}{x.rps:>9.1f}"
                  f"{x.p50_ms:>9.2f}{x.p90_ms:>9.2f}{x.p99_ms:>9.2f}{x.max_ms:>9.2f}"
                  f"{x.requests:>10.0f}{x.requests - x.s2xx:>9.0f}{x.s409:>6.0f}"
                  f"{x.socket_errors:>9}{x.other_cpu:>10.0%}")
    busy = [(r.db, run) for r in results for run in r.runs if run.load.other_cpu > BUSY_WARNING]
    for db, run in busy:
        print(f"WARNING: {db} {run.kind} {run.connections} {run.server}: "
              f"{run.load.other_cpu:.0%} of the CPUs went to other work on the machine during "
              "the load; these figures are not reliable")
    print()
    print(f"Targets: app/stack throughput >= {TARGET_RATIO} (what is ours to cut); app/bare "
          "is the floor we report")
    print(f"Where the time goes, 1000/(req/s) (the stack baseline: the app's framework around "
          f"a two-statement body); medians of {args.rounds} round(s), ratios taken within "
          "each round [lowest-highest]:")
    for r in results:
        for kind in args.servers:
            for connections in args.loads:
                trios = [[r.run(name, kind, connections, n) for name in ("app", "stack", "bare")]
                         for n in range(args.rounds)]
                rounds = [t for t in trios if all(x is not None and x.load.rps for x in t)]
                if rounds:
                    print(f"  {r.db:<9}{kind:<9}{connections:>3} conns: "
                          + split_line(rounds))
    print()
    for r in results:
        if r.verify_output:
            print(f"flask loyalty verify ({r.db}, exit {r.verify_rc}):")
            print("  " + "\n  ".join(r.verify_output.splitlines()[-10:]))
        for run in r.runs:
            print(f"{r.db} {run.kind} {run.connections} round {run.round + 1} {run.server}: "
                  f"{run.rows} purchases "
                  f"written; {run.warmup_2xx} + {run.load.s2xx:.0f} answered 2xx (warm-up + "
                  "load; requests in flight when wrk stops are not counted)")
            if run.load.stderr:
                print(f"{r.db} {run.server}: first failures seen by wrk:")
                print("  " + "\n  ".join(run.load.stderr.splitlines()[:6]))
    print()
    problems = [f"{r.db}: {p}" for r in results for p in r.problems]
    print("Problems:" if problems else "No failed requests; ledger verified.")
    for p in problems:
        print(f"  {p}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pos", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--seconds", type=int, default=None, help="load per server (10)")
    parser.add_argument("--connections", default="16,4",
                        help="wrk connections, one load per number (16,4: a busy and a "
                        "quiet store)")
    parser.add_argument("--server", choices=("gunicorn", "granian", "both"),
                        default="gunicorn", help="the HTTP server (gunicorn)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="turns of app, stack and bare for each load (3; 1 with --smoke)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    parser.add_argument("--workers", type=int, default=2,
                        help="gunicorn workers for both servers (2, the target's setting)")
    parser.add_argument("--members", type=int, default=None, help="(2000)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="seconds of load before measuring (2; none with --smoke)")
    parser.add_argument("--smoke", action="store_true",
                        help="a short run with few members, to check it all works (CI)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary folder and databases")
    args = parser.parse_args(argv)
    args.loads = [int(c) for c in args.connections.split(",") if c.strip()]
    args.servers = ["gunicorn", "granian"] if args.server == "both" else [args.server]
    smoke = {"seconds": 2, "members": 50, "warmup": 0, "rounds": 1}
    if args.smoke:
        args.loads = args.loads[:1]
    full = {"seconds": 10, "members": 2000, "warmup": 2, "rounds": 3}
    for name, value in (smoke if args.smoke else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)

    if shutil.which("wrk") is None:
        log("wrk is not installed: apt-get update && apt-get install -y wrk")
        return 2
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    if "postgres" in kinds:
        try:
            pg_admin("SELECT 1")
        except Exception as e:
            log(f"PostgreSQL does not answer at {PG_ADMIN} ({e}); start it, or --db sqlite")
            return 2

    results = [run_db(kind, args) for kind in kinds]
    report(results, args)
    return 1 if any(r.problems for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
