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
"""

from __future__ import annotations

import glob
import os
import shutil
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

    def stop(self) -> None:
        subprocess.run(
            as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "fast", "stop"]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        shutil.rmtree(self.dir, ignore_errors=True)


def run_workers(pg: Postgres, job: str, n: int, out: Path) -> float:
    env = dict(os.environ, HAUL_STATE=pg.url)
    start = time.monotonic()
    procs = [
        subprocess.Popen([str(HAUL), "worker", "--job", job, "-o", str(out), "-j", str(JOBS), "-q"], env=env)
        for _ in range(n)
    ]
    codes = [p.wait() for p in procs]
    wall = time.monotonic() - start
    if any(codes):
        sys.exit(f"shared.py: a worker exited with {codes}")
    return wall


def main() -> None:
    for b in (HAUL, ORIGIN):
        if not b.exists():
            sys.exit(f"shared.py: {b} is missing: cargo build --release -p haul -p haul-origin")
    work = Path(tempfile.mkdtemp(prefix="haul-bench-shared-"))
    pg = Postgres()
    port = free_port()
    origin = subprocess.Popen(
        [str(ORIGIN), "--port", str(port), "--latency-ms", str(MS)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert origin.stdout is not None
        origin.stdout.readline()
        names = [f"s{i:06}.bin" for i in range(N)]
        paths = [f"/file/shared/{n}" for n in names]
        urls = work / "urls.txt"
        urls.write_text("".join(f"http://127.0.0.1:{port}{p}\n" for p in paths))
        verify = work / "verify.txt"
        verify.write_text("".join(f"{p}\t{n}\n" for p, n in zip(paths, names)))
        env = dict(os.environ, HAUL_STATE=pg.url)
        results = {}
        for job, workers in (("one", 1), ("many", WORKERS)):
            t = time.monotonic()
            subprocess.run([str(HAUL), "submit", "--job", job, "-i", str(urls), "-q"], env=env, check=True)
            submit = time.monotonic() - t
            out = work / job
            wall = run_workers(pg, job, workers, out)
            done = subprocess.run([str(ORIGIN), "verify", str(out), str(verify)], capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"shared.py: {job}: {done.stdout}{done.stderr}")
            results[job] = (submit, wall)
            print(f"{job}: submit {N} in {submit:.2f} s ({N / submit:,.0f} items/s); "
                  f"{workers} worker(s) -j {JOBS}: {wall:.2f} s, {N / wall:,.0f} files/s; all verified")
        one, many = results["one"][1], results["many"][1]
        bound = N * MS / 1000 / JOBS
        print(f"\n| workers | wall s | files/s | x one worker | bound N*L/(workers*j) s |")
        print("|---|---|---|---|---|")
        print(f"| 1 | {one:.2f} | {N / one:,.0f} | 1.00 | {bound:.2f} |")
        print(f"| {WORKERS} | {many:.2f} | {N / many:,.0f} | {one / many:.2f} | {bound / WORKERS:.2f} |")
    finally:
        origin.terminate()
        origin.wait()
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
