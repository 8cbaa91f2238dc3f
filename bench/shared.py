#!/usr/bin/env python3
"""Shared jobs (issue 17): one worker against four on one job in PostgreSQL.

    cargo build --release -p haul -p haul-origin && python3 bench/shared.py

Starts a throwaway PostgreSQL cluster (initdb + pg_ctl, as the postgres user
when run as root) and haul-origin with 50 ms of latency, both on 127.0.0.1;
submits N files (default 20,000 x 10 KiB) into a job, runs one worker, then
submits the same list as a second job and runs four workers at once; every
file is checked with `haul-origin verify`. Prints the submit rate, each run's
files/s and the ratio. Everything it starts it stops.

Settings: SHARED_N (20000), SHARED_MS (50), SHARED_JOBS (64, -j per worker),
SHARED_WORKERS (4).

With SUBMIT_N set (e.g. 1000000) it measures a large job instead: submits
SUBMIT_N items (64 B each from haul-origin, SUBMIT_MS of latency, 0) into a job and the same
list again, then runs SHARED_WORKERS workers on the job for CLAIM_SECONDS (120;
0: until the job is done), sampling each worker's RSS every RSS_EVERY seconds
(10). PostgreSQL's own time per statement comes from pg_stat_statements (when
the server has it: Debian's package does), reset before each step: per item
submitted, and per item claimed and finished by the workers.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HAUL = Path(os.environ.get("BENCH_HAUL", ROOT / "target/release/haul"))
ORIGIN = Path(os.environ.get("BENCH_ORIGIN", ROOT / "target/release/haul-origin"))
N = int(os.environ.get("SHARED_N", 20000))
MS = int(os.environ.get("SHARED_MS", 50))
JOBS = int(os.environ.get("SHARED_JOBS", 64))
WORKERS = int(os.environ.get("SHARED_WORKERS", 4))
SUBMIT_N = int(os.environ.get("SUBMIT_N", 0))
CLAIM_SECONDS = float(os.environ.get("CLAIM_SECONDS", 120))
RSS_EVERY = float(os.environ.get("RSS_EVERY", 10))
SUBMIT_MS = int(os.environ.get("SUBMIT_MS", 0))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_postgres(argv: list[str]) -> list[str]:
    return (["runuser", "-u", "postgres", "--"] + argv) if os.geteuid() == 0 else argv


class Postgres:
    def __init__(self) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not bins:
            sys.exit("shared.py: PostgreSQL's server is not installed (apt-get install postgresql)")
        self.bin = Path(bins[-1])
        self.dir = Path(tempfile.mkdtemp(prefix="haul-bench-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        self.port = free_port()
        data = self.dir / "data"
        subprocess.run(
            as_postgres([str(self.bin / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]),
            check=True, stdout=subprocess.DEVNULL,
        )
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=200"
        # PostgreSQL's time per statement, where the server has the module.
        self.stats = (self.bin.parent / "lib" / "pg_stat_statements.so").exists()
        if self.stats:
            opts += " -c shared_preload_libraries=pg_stat_statements"
        subprocess.run(
            as_postgres([str(self.bin / "pg_ctl"), "-D", str(data), "-o", opts,
                         "-l", str(self.dir / "log"), "-w", "start"]),
            check=True, stdout=subprocess.DEVNULL,
        )
        subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-q",
             "-c", "CREATE DATABASE haul"],
            check=True,
        )
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/haul"
        if self.stats:
            self.sql("CREATE EXTENSION pg_stat_statements")

    def sql(self, query: str) -> list[list[str]]:
        out = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", "haul",
             "-q", "-A", "-t", "-F", "\t", "-c", query],
            check=True, capture_output=True, text=True,
        ).stdout
        return [line.split("\t") for line in out.splitlines() if line]

    def cpu_seconds(self) -> dict[int, float]:
        """CPU time so far of each of the server's processes, by pid."""
        ppid = int((self.dir / "data" / "postmaster.pid").read_text().split()[0])
        tick = os.sysconf("SC_CLK_TCK")
        cpu = {}
        for stat in glob.glob("/proc/[0-9]*/stat"):
            try:
                with open(stat) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == ppid:
                cpu[int(stat.split("/")[2])] = (int(fields[11]) + int(fields[12])) / tick
        return cpu

    def reset_stats(self) -> None:
        if self.stats:
            self.sql("SELECT pg_stat_statements_reset()")

    def statements(self) -> list[tuple[int, float, int, str]]:
        """(calls, total ms, rows, query) since the last reset, most time first."""
        if not self.stats:
            return []
        rows = self.sql(
            "SELECT calls, total_exec_time, rows, regexp_replace(query, '\\s+', ' ', 'g') "
            "FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'haul') "
            "ORDER BY total_exec_time DESC"
        )
        return [(int(c), float(t), int(r), q) for c, t, r, q in rows]

    def stop(self) -> None:
        subprocess.run(
            as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "fast", "stop"]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        shutil.rmtree(self.dir, ignore_errors=True)


def run_workers(pg: Postgres, job: str, n: int, out: Path) -> tuple[float, tuple[float, float]]:
    """Wall seconds, and the CPU seconds the workers and PostgreSQL used."""
    import resource
    env = dict(os.environ, HAUL_STATE=pg.url)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    pg_before = pg.cpu_seconds()
    start = time.monotonic()
    procs = [
        subprocess.Popen([str(HAUL), "worker", "--job", job, "-o", str(out), "-j", str(JOBS), "-q"], env=env)
        for _ in range(n)
    ]
    # The server's CPU, sampled while the workers run: their backends end
    # with them, and take their CPU time out of /proc.
    seen = dict(pg_before)
    while any(p.poll() is None for p in procs):
        seen.update(pg.cpu_seconds())
        time.sleep(0.2)
    codes = [p.wait() for p in procs]
    wall = time.monotonic() - start
    pg_cpu = sum(t - pg_before.get(pid, 0) for pid, t in seen.items())
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if any(codes):
        sys.exit(f"shared.py: a worker exited with {codes}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, (cpu, max(pg_cpu, 0))


def status(pg: Postgres, job: str) -> dict:
    out = subprocess.run([str(HAUL), "status", "--job", job, "--json"],
                         env=dict(os.environ, HAUL_STATE=pg.url), check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def print_statements(pg: Postgres, per: int, what: str) -> None:
    rows = pg.statements()
    if not rows or not per:
        return
    total = sum(t for _, t, _, _ in rows)
    print(f"\nPostgreSQL's time (pg_stat_statements), {total / 1000:.1f} s in all: "
          f"{total * 1000 / per:.1f} us per {what}")
    print("| calls | total s | us per " + what + " | rows | statement |")
    print("|---|---|---|---|---|")
    for calls, ms, nrows, query in rows[:8]:
        print(f"| {calls:,} | {ms / 1000:.2f} | {ms * 1000 / per:.1f} | {nrows:,} | `{query[:70]}` |")


def large(pg: Postgres, port: int, work: Path) -> None:
    """SUBMIT_N: submit, submit again, then workers' claims for a while."""
    env = dict(os.environ, HAUL_STATE=pg.url)
    urls = work / "urls.txt"
    with open(urls, "w") as f:
        for i in range(SUBMIT_N):
            f.write(f"http://127.0.0.1:{port}/f/{i}\n")
    for step in ("submit", "submit again"):
        pg.reset_stats()
        load = os.getloadavg()[0]
        t = time.monotonic()
        subprocess.run([str(HAUL), "submit", "--job", "large", "-i", str(urls), "-q"], env=env, check=True)
        wall = time.monotonic() - t
        print(f"{step}: {SUBMIT_N:,} items in {wall:.2f} s ({SUBMIT_N / wall:,.0f} items/s; "
              f"load average {load:.2f} before)")
        print_statements(pg, SUBMIT_N, "item")
        print()
    st = status(pg, "large")
    assert st["items"] == SUBMIT_N and st["pending"] == SUBMIT_N, st

    pg.reset_stats()
    out = work / "out"
    cpu_before = pg.cpu_seconds()
    start = time.monotonic()
    procs = [
        subprocess.Popen([str(HAUL), "worker", "--job", "large", "-o", str(out), "-j", str(JOBS), "-q"], env=env)
        for _ in range(WORKERS)
    ]
    samples = []
    cpus: dict[int, float] = dict(cpu_before)
    claimers: set[int] = set()
    next_rss = RSS_EVERY
    while True:
        time.sleep(1)
        elapsed = time.monotonic() - start
        if all(p.poll() is not None for p in procs):
            break
        # While the workers run: their backends end with them, and take
        # their CPU time out of /proc. The claiming backends are those
        # whose last statement was a claim: each worker's claiming
        # connection, which does little else (a machine whose cores are all
        # busy stretches a statement's wall time, not its CPU).
        cpus.update(pg.cpu_seconds())
        claimers.update(int(pid) for pid, query in pg.sql(
            "SELECT pid, regexp_replace(query, '\\s+', ' ', 'g') FROM pg_stat_activity "
            "WHERE datname = 'haul'") if "picked" in query)
        if elapsed >= next_rss:
            next_rss += RSS_EVERY
            samples.append((elapsed, [rss_kib(p.pid) // 1024 for p in procs]))
        if CLAIM_SECONDS and elapsed >= CLAIM_SECONDS:
            break
    cpu = sum(t - cpu_before.get(pid, 0) for pid, t in cpus.items())
    claim_cpu = sum(cpus.get(pid, 0) - cpu_before.get(pid, 0) for pid in claimers)
    done_then = status(pg, "large")
    done_then = done_then["ok"] + done_then["failed"]
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    wall = time.monotonic() - start
    st = status(pg, "large")
    done = st["ok"] + st["failed"]
    print(f"{WORKERS} workers -j {JOBS}: {done:,} items done in {wall:.1f} s "
          f"({done / wall:,.0f} files/s), {st['pending']:,} pending")
    print("\n| s | " + " | ".join(f"worker {i + 1} RSS MiB" for i in range(WORKERS)) + " |")
    print("|---" * (WORKERS + 1) + "|")
    for elapsed, rss in samples:
        print(f"| {elapsed:.0f} | " + " | ".join(str(r) for r in rss) + " |")
    print(f"\nPostgreSQL's CPU time (all its processes, /proc): {cpu:.1f} s for {done_then:,} items "
          f"done, {cpu * 1e6 / max(done_then, 1):.0f} us per item")
    rows = pg.statements()
    claims = [r for r in rows if "SKIP LOCKED" in r[3] and "picked" in r[3]]
    if claims:
        # Both claim statements: past the job's frontier, and from the start.
        calls = sum(r[0] for r in claims)
        ms = sum(r[1] for r in claims)
        claimed = sum(r[2] for r in claims)
        print(f"\nclaims: {calls:,} statements, {claimed:,} items claimed, "
              f"{ms * 1000 / max(claimed, 1):.1f} us of PostgreSQL's time per item claimed; "
              f"the {len(claimers)} claiming backends' CPU: {claim_cpu:.1f} s, "
              f"{claim_cpu * 1e6 / max(claimed, 1):.1f} us per item claimed")
    print_statements(pg, done, "item done")


def lists(work: Path, port: int, tag: str) -> tuple[Path, Path]:
    """N files' URLs on the origin at `port`, and the list `haul-origin
    verify` checks them by."""
    names = [f"{tag[0]}{i:06}.bin" for i in range(N)]
    paths = [f"/file/{tag}/{n}" for n in names]
    urls = work / f"{tag}.txt"
    urls.write_text("".join(f"http://127.0.0.1:{port}{p}\n" for p in paths))
    verify = work / f"{tag}-verify.txt"
    verify.write_text("".join(f"{p}\t{n}\n" for p, n in zip(paths, names)))
    return urls, verify


def killed(pg: Postgres, work: Path) -> None:
    """kill -9 one of WORKERS workers mid-job: the rest finish it, every
    file verified; files fetched twice against what the dead one held."""
    port = free_port()
    log = work / "kill-origin.log"
    with open(log, "w") as err:
        origin = subprocess.Popen(
            [str(ORIGIN), "--port", str(port), "--latency-ms", str(MS)],
            stdout=subprocess.PIPE, stderr=err, text=True,
        )
    try:
        assert origin.stdout is not None
        origin.stdout.readline()
        urls, verify = lists(work, port, "kill")
        env = dict(os.environ, HAUL_STATE=pg.url)
        subprocess.run([str(HAUL), "submit", "--job", "kill", "-i", str(urls), "-q"], env=env, check=True)
        out = work / "kill"
        start = time.monotonic()
        procs = [
            subprocess.Popen([str(HAUL), "worker", "--job", "kill", "-o", str(out), "-j", str(JOBS), "-q"],
                             env=env)
            for _ in range(WORKERS)
        ]
        # A third of the way through, as one worker alone would go.
        while status(pg, "kill")["ok"] < N // 3:
            time.sleep(0.05)
        doomed = procs[0]
        doomed.kill()
        doomed.wait()
        killed_at = time.monotonic() - start
        held = int(pg.sql(f"SELECT count(*) FROM items WHERE state = 'pending' "
                          f"AND lease_owner LIKE '%-{doomed.pid}-%'")[0][0])
        codes = [p.wait() for p in procs[1:]]
        wall = time.monotonic() - start
        if any(codes):
            sys.exit(f"shared.py: a worker exited with {codes}")
        done = subprocess.run([str(ORIGIN), "verify", str(out), str(verify)], capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"shared.py: kill: {done.stdout}{done.stderr}")
    finally:
        origin.terminate()
        origin.wait()
    requests = next(int(line.split()[1]) for line in log.read_text().splitlines()
                    if line.startswith("haul-origin:") and " requests," in line)
    print(f"\nkill -9 one of {WORKERS} workers at {killed_at:.1f} s (it held {held} items): "
          f"{wall:.1f} s in all (its leases ran out after 30 s); all {N} verified; "
          f"{requests - N} files fetched twice (at most {held})")


def main() -> None:
    for b in (HAUL, ORIGIN):
        if not b.exists():
            sys.exit(f"shared.py: {b} is missing: cargo build --release -p haul -p haul-origin")
    work = Path(tempfile.mkdtemp(prefix="haul-bench-shared-"))
    pg = Postgres()
    port = free_port()
    origin_args = (["--size", "64", "--latency-ms", str(SUBMIT_MS)] if SUBMIT_N
                   else ["--latency-ms", str(MS)])
    origin = subprocess.Popen(
        [str(ORIGIN), "--port", str(port)] + origin_args,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert origin.stdout is not None
        origin.stdout.readline()
        if SUBMIT_N:
            large(pg, port, work)
            return
        urls, verify = lists(work, port, "shared")
        env = dict(os.environ, HAUL_STATE=pg.url)
        results = {}
        for job, workers in (("one", 1), ("many", WORKERS)):
            t = time.monotonic()
            subprocess.run([str(HAUL), "submit", "--job", job, "-i", str(urls), "-q"], env=env, check=True)
            submit = time.monotonic() - t
            out = work / job
            wall, cpu = run_workers(pg, job, workers, out)
            done = subprocess.run([str(ORIGIN), "verify", str(out), str(verify)], capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"shared.py: {job}: {done.stdout}{done.stderr}")
            results[job] = (submit, wall, cpu)
            print(f"{job}: submit {N} in {submit:.2f} s ({N / submit:,.0f} items/s); "
                  f"{workers} worker(s) -j {JOBS}: {wall:.2f} s, {N / wall:,.0f} files/s; all verified")
        (_, one, cpu1), (_, many, cpu4) = results["one"], results["many"]
        bound = N * MS / 1000 / JOBS
        cores = os.cpu_count() or 1
        # The CPU columns tell a run bound by the machine (cores busy) from
        # one bound by latency: the origin's CPU is not counted.
        print(f"\n| workers | wall s | files/s | x one worker | bound N*L/(workers*j) s "
              f"| workers' CPU s | PostgreSQL's CPU s | cores busy (of {cores}) |")
        print("|---|---|---|---|---|---|---|---|")
        for n, wall, (w, p) in ((1, one, cpu1), (WORKERS, many, cpu4)):
            print(f"| {n} | {wall:.2f} | {N / wall:,.0f} | {one / wall:.2f} | {bound / n:.2f} "
                  f"| {w:.1f} | {p:.1f} | {(w + p) / wall:.2f} |")
        killed(pg, work)
    finally:
        origin.terminate()
        origin.wait()
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
