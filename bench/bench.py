#!/usr/bin/env python3
"""haul's benchmark harness: haul against aria2c, wget2, curl -Z and an
aiohttp script, on local servers, with every download verified.

Run it through `bench/run` (which installs the peers and builds haul first);
bench/README.md describes the workloads, the settings (environment
variables, listed in SETTINGS below) and how to read the tables.

Design:
- Servers: nginx (static files generated under bench/out/www) for the
  no-latency workloads, and haul-origin (the project's fault-injecting test
  origin) for latency, faults and the URL-count workloads. A fresh origin is
  started for every run, so each run sees the same fault pattern (faults are a
  pure function of the path and how often it was asked for) and the origin's
  counters (requests, time of the first request) belong to that run alone.
- Runs interleave the tools (run 1 of every tool, then run 2, ...; the
  starting tool rotates) and every metric is the median over runs, except
  verified/expected, which is the worst run.
- Each run is timed around the process (spawn to exit); CPU time is user +
  sys of the process tree (wait4), peak RSS is GNU time's %M (see timed()).
  The output directory is emptied and the disk synced between runs, outside
  the timing.
- Verification is outside the timing: nginx downloads are compared byte for
  byte with their source files, origin downloads with `haul-origin verify`.
- The python workload (opt-in, issue 16) runs haul's Python API
  (`haul-py`: bench/peers/haul_api.py in the venv bench/run builds the
  package into, bench/out/py-venv) against the aiohttp script and the haul
  command on the small-file workload, with CPU per file in the table.
- The politeness group (opt-in: throttled-4, throttled-16, knee, hosts) runs
  haul variants rather than peers: haul's adaptive defaults against fixed
  `--per-host N --fixed` windows, on origins that throttle (429 above K in
  flight) or slow down with load, and 20 hosts of which one is slow. What
  happened when comes from the origin's `--timeline` (counters sampled every
  10 ms), not from the client.
"""

import re

import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
OUT = BENCH / "out"
# Every tool downloads here; emptied between runs. BENCH_DL_DIR moves it (to
# a tmpfs, say, to take the file system out of the small-file figures); the
# bench only ever deletes its own subdirectory there.
DL = (Path(os.environ["BENCH_DL_DIR"]) / "haul-bench-dl" if os.environ.get("BENCH_DL_DIR")
      else OUT / "dl").resolve()
LISTS = OUT / "lists"
LOGS = OUT / "logs"
PIDS = OUT / "pids"  # bench/run's EXIT trap stops whatever is listed here
WWW = OUT / "www"
RESULTS = OUT / "results.md"

ALL_TOOLS = ["haul", "aria2c", "wget2", "curl", "aiohttp", "haul-py"]
# Tools that only the python workload runs (haul-py needs the venv that
# bench/run builds the package into: a release build of ~4 min).
PYTHON_ONLY_TOOLS = {"haul-py"}
# Names a tool keeps in its output directory on purpose, not left-overs.
JOB_STATE = {".haul"}  # haul's job state (DIR/.haul/state.db)
DEFAULT_WORKLOADS = ["latency", "small", "large", "faults-baseline", "faults", "perfile"]
HEAVY_WORKLOADS = ["million", "rerun"]
# Opt-in; BENCH_ONLY=politeness selects them all.
POLITENESS_WORKLOADS = ["throttled-4", "throttled-16", "knee", "hosts"]
# Opt-in: haul's Python API against the aiohttp script (issue 16).
PYTHON_WORKLOADS = ["python"]


def env_int(name, default):
    value = os.environ.get(name)
    return int(value) if value else default


def env_float(name, default):
    value = os.environ.get(name)
    return float(value) if value else default


# Every setting, with its default; bench/README.md documents them.
SETTINGS = {
    "BENCH_RUNS": env_int("BENCH_RUNS", 3),
    "BENCH_JOBS": env_int("BENCH_JOBS", 64),
    "BENCH_TIMEOUT": env_int("BENCH_TIMEOUT", 900),
    "BENCH_LATENCY_N": env_int("BENCH_LATENCY_N", 2000),
    "BENCH_LATENCY_SIZE": env_int("BENCH_LATENCY_SIZE", 10240),
    "BENCH_LATENCY_MS": env_int("BENCH_LATENCY_MS", 50),
    "BENCH_SMALL_N": env_int("BENCH_SMALL_N", 10000),
    "BENCH_SMALL_SIZE": env_int("BENCH_SMALL_SIZE", 10240),
    "BENCH_LARGE_N": env_int("BENCH_LARGE_N", 8),
    "BENCH_LARGE_MB": env_int("BENCH_LARGE_MB", 256),
    "BENCH_DD_MB": env_int("BENCH_DD_MB", 2048),
    "BENCH_FAULTS_N": env_int("BENCH_FAULTS_N", 2000),
    "BENCH_FAULTS_SIZE": env_int("BENCH_FAULTS_SIZE", 10240),
    "BENCH_FAULTS_MS": env_int("BENCH_FAULTS_MS", 20),
    "BENCH_FAULTS_ERROR_RATE": env_float("BENCH_FAULTS_ERROR_RATE", 0.10),
    "BENCH_FAULTS_RESET_RATE": env_float("BENCH_FAULTS_RESET_RATE", 0.05),
    "BENCH_PERFILE_N": env_int("BENCH_PERFILE_N", 50000),
    "BENCH_PERFILE_SIZE": env_int("BENCH_PERFILE_SIZE", 4096),
    "BENCH_PYTHON_N": env_int("BENCH_PYTHON_N", 10000),
    "BENCH_PYTHON_SIZE": env_int("BENCH_PYTHON_SIZE", 10240),
    "BENCH_MILLION_N": env_int("BENCH_MILLION_N", 1_000_000),
    "BENCH_MILLION_SIZE": env_int("BENCH_MILLION_SIZE", 64),
    "BENCH_MILLION_RUNS": env_int("BENCH_MILLION_RUNS", 1),
    "BENCH_RERUN_N": env_int("BENCH_RERUN_N", 100_000),
    "BENCH_RERUN_SIZE": env_int("BENCH_RERUN_SIZE", 1024),
    "BENCH_RERUN_RUNS": env_int("BENCH_RERUN_RUNS", env_int("BENCH_RUNS", 3)),
    # Politeness group. throttled-K gets BENCH_THROTTLED_N x K items, so its
    # best fixed window (K) takes N x latency (5 s) whatever K is.
    "BENCH_POLITENESS_SIZE": env_int("BENCH_POLITENESS_SIZE", 10240),
    "BENCH_POLITENESS_TIMEOUT": env_int("BENCH_POLITENESS_TIMEOUT", 15),
    "BENCH_THROTTLED_N": env_int("BENCH_THROTTLED_N", 250),
    "BENCH_THROTTLED_MS": env_int("BENCH_THROTTLED_MS", 20),
    "BENCH_THROTTLED_RETRY_AFTER": env_int("BENCH_THROTTLED_RETRY_AFTER", 1),
    "BENCH_THROTTLED_SWEEP": os.environ.get("BENCH_THROTTLED_SWEEP") or "0.5,1,2",
    "BENCH_THROTTLED_PEERS": os.environ.get("BENCH_THROTTLED_PEERS", "curl,wget2"),
    # The peers lose files to 429s the same way every time; once is enough.
    "BENCH_THROTTLED_PEER_RUNS": env_int("BENCH_THROTTLED_PEER_RUNS", 1),
    "BENCH_KNEE_N": env_int("BENCH_KNEE_N", 500),
    "BENCH_KNEE_MS": env_int("BENCH_KNEE_MS", 20),
    "BENCH_KNEE_PER_MS": env_int("BENCH_KNEE_PER_MS", 5),
    "BENCH_KNEE_SWEEP": os.environ.get("BENCH_KNEE_SWEEP") or "4,8,16,32,64",
    "BENCH_HOSTS": env_int("BENCH_HOSTS", 20),
    "BENCH_HOSTS_N": env_int("BENCH_HOSTS_N", 250),
    "BENCH_HOSTS_MS": env_int("BENCH_HOSTS_MS", 20),
    "BENCH_HOSTS_SLOW_N": env_int("BENCH_HOSTS_SLOW_N", 50),
    "BENCH_HOSTS_SLOW_MS": env_int("BENCH_HOSTS_SLOW_MS", 200),
    "BENCH_HOSTS_SLOW_K": env_int("BENCH_HOSTS_SLOW_K", 2),
}

HAUL = Path(os.environ.get("BENCH_HAUL") or ROOT / "target" / "release" / "haul")
ORIGIN = Path(os.environ.get("BENCH_ORIGIN") or ROOT / "target" / "release" / "haul-origin")
PYTHON = sys.executable
# haul-py's interpreter: a venv of the same Python as PYTHON (bench/run makes
# it with this python3), with the haul package built in release mode.
PY_VENV = OUT / "py-venv"
VENV_PYTHON = PY_VENV / "bin" / "python"


def log(message):
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes


def record_pid(name, pid):
    PIDS.mkdir(parents=True, exist_ok=True)
    (PIDS / f"{name}.pid").write_text(f"{pid}\n")


def forget_pid(name):
    try:
        (PIDS / f"{name}.pid").unlink()
    except FileNotFoundError:
        pass


def stop_process(proc, name, grace=10.0):
    """SIGTERM, then SIGKILL after `grace` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    forget_pid(name)


def free_port(also_127_0_0_2=False):
    """A port free on 127.0.0.1 (and 127.0.0.2, where the origin also listens)."""
    for _ in range(50):
        first = socket.socket()
        first.bind(("127.0.0.1", 0))
        port = first.getsockname()[1]
        try:
            if also_127_0_0_2:
                second = socket.socket()
                try:
                    second.bind(("127.0.0.2", port))
                except OSError:
                    continue
                finally:
                    second.close()
            return port
        finally:
            first.close()
    raise RuntimeError("no free port on 127.0.0.1")


def wait_for_port(port, proc, what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} while starting")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout} s")


class Nginx:
    """nginx as a plain foreground process with its own config under bench/out/nginx."""

    def __init__(self):
        self.dir = OUT / "nginx"
        self.port = free_port()
        self.proc = None

    def config(self):
        tmp = self.dir / "tmp"
        temp_paths = "\n".join(
            f"    {kind}_temp_path {tmp / kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        workers = os.environ.get("BENCH_NGINX_WORKERS", "auto")
        return f"""# Generated by bench/bench.py for one benchmark run.
daemon off;
master_process on;
worker_processes {workers};
pid {self.dir / "nginx.pid"};
error_log {self.dir / "error.log"} warn;
events {{
    worker_connections 8192;
    multi_accept on;
}}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    types {{ }}
    default_type application/octet-stream;
{temp_paths}
    server {{
        listen 127.0.0.1:{self.port} backlog=4096;
        root {WWW};
        location / {{ }}
    }}
}}
"""

    def start(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "error.log").unlink(missing_ok=True)  # this run's errors only
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.dir / "tmp" / kind).mkdir(parents=True, exist_ok=True)
        conf = self.dir / "nginx.conf"
        conf.write_text(self.config())
        errors = open(self.dir / "stderr.log", "w")
        self.proc = subprocess.Popen(
            ["nginx", "-p", str(self.dir), "-c", str(conf), "-e", str(self.dir / "error.log")],
            stdout=errors,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        record_pid("nginx", self.proc.pid)
        wait_for_port(self.port, self.proc, "nginx")
        log(f"nginx listening on 127.0.0.1:{self.port} (config {conf})")

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self):
        if self.proc:
            # SIGTERM is nginx's fast shutdown; it takes the workers with it.
            stop_process(self.proc, "nginx")
            self.proc = None


@dataclass
class OriginRun:
    """What one origin instance saw, from its closing line on stderr."""

    requests: int = 0
    faults: int = 0
    first_request: float = None  # Unix time, from --print-first-request
    max_in_flight: int = 0
    statuses: dict = field(default_factory=dict)  # status code -> responses
    # --timeline samples: (Unix time, requests, in flight, {status: count}).
    timeline: list = field(default_factory=list)


class Origin:
    """One haul-origin process on a fixed port, started fresh for each run."""

    def __init__(self, port, args, log_name, pid_name="haul-origin", timeline=False):
        self.port = port
        self.args = args
        self.log_path = LOGS / f"origin-{log_name}.log"
        self.timeline_path = LOGS / f"origin-{log_name}.timeline" if timeline else None
        self.pid_name = pid_name
        self.proc = None

    def start(self):
        LOGS.mkdir(parents=True, exist_ok=True)
        self.stderr = open(self.log_path, "w")
        timeline = ["--timeline", str(self.timeline_path)] if self.timeline_path else []
        self.proc = subprocess.Popen(
            [str(ORIGIN), "--port", str(self.port), "--print-first-request", *timeline,
             *self.args],
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            start_new_session=True,
            text=True,
        )
        record_pid(self.pid_name, self.proc.pid)
        line = self.proc.stdout.readline()
        if not line.startswith("listening "):
            self.stop()
            raise RuntimeError(f"haul-origin did not start: see {self.log_path}")
        wait_for_port(self.port, self.proc, "haul-origin")

    def stop(self):
        stop_process(self.proc, self.pid_name)
        self.proc.stdout.close()
        self.stderr.close()
        seen = OriginRun()
        for line in self.log_path.read_text().splitlines():
            if line.startswith("haul-origin: first request at "):
                seen.first_request = float(line.rsplit(" ", 1)[1])
            elif " requests, max " in line:
                words = line.split()
                seen.requests = int(words[1])
                seen.faults = int(words[words.index("faults") - 1])
                seen.max_in_flight = int(words[words.index("max") + 1])
                seen.statuses = {int(c): int(n)
                                 for c, n in re.findall(r"\((\d+), (\d+)\)", line)}
        if self.timeline_path and self.timeline_path.exists():
            seen.timeline = parse_timeline(self.timeline_path)
        return seen


def parse_timeline(path):
    """`haul-origin --timeline` lines: UNIX_TIME REQUESTS IN_FLIGHT CODE:COUNT..."""
    samples = []
    for line in path.read_text().splitlines():
        words = line.split()
        if len(words) < 3:
            continue
        statuses = {int(c): int(n) for c, n in (w.split(":") for w in words[3:])}
        samples.append((float(words[0]), int(words[1]), int(words[2]), statuses))
    return samples


# ----------------------------------------------------------------- workloads


@dataclass
class Workload:
    name: str
    title: str
    server: str  # "nginx" or "origin"
    n: int
    size: int
    tools: list
    origin_args: list = field(default_factory=list)
    runs: int = 0
    group: str = ""  # "politeness": run by run_polite_once() / run_hosts_once()
    k: int = 0  # requests in flight the (slow) origin allows
    extra: dict = field(default_factory=dict)  # hosts: ports, lists of the subset
    # Filled by prepare():
    names: list = field(default_factory=list)
    urls_file: Path = None
    curl_file: Path = None
    verify_file: Path = None  # origin: haul-origin verify list
    source_dir: Path = None  # nginx: where the files being served live


def workloads(selected, tools):
    s = SETTINGS
    runs = s["BENCH_RUNS"]
    python_tools = [t for t in ("haul", "haul-py", "aiohttp") if t in tools]
    tools = [t for t in tools if t not in PYTHON_ONLY_TOOLS]
    faults_origin = ["--latency-ms", str(s["BENCH_FAULTS_MS"])]
    defs = {
        "latency": Workload(
            "latency",
            f"{s['BENCH_LATENCY_N']} x {s['BENCH_LATENCY_SIZE']} B from haul-origin, "
            f"{s['BENCH_LATENCY_MS']} ms latency per response",
            "origin", s["BENCH_LATENCY_N"], s["BENCH_LATENCY_SIZE"], tools,
            ["--latency-ms", str(s["BENCH_LATENCY_MS"])], runs,
        ),
        "small": Workload(
            "small", f"{s['BENCH_SMALL_N']} x {s['BENCH_SMALL_SIZE']} B from nginx, no latency",
            "nginx", s["BENCH_SMALL_N"], s["BENCH_SMALL_SIZE"], tools, runs=runs,
        ),
        "large": Workload(
            "large", f"{s['BENCH_LARGE_N']} x {s['BENCH_LARGE_MB']} MiB from nginx, all at once",
            "nginx", s["BENCH_LARGE_N"], s["BENCH_LARGE_MB"] << 20, tools, runs=runs,
        ),
        "faults-baseline": Workload(
            "faults-baseline",
            f"{s['BENCH_FAULTS_N']} x {s['BENCH_FAULTS_SIZE']} B from haul-origin, "
            f"{s['BENCH_FAULTS_MS']} ms latency, no faults",
            "origin", s["BENCH_FAULTS_N"], s["BENCH_FAULTS_SIZE"], tools, faults_origin, runs,
        ),
        "faults": Workload(
            "faults",
            f"{s['BENCH_FAULTS_N']} x {s['BENCH_FAULTS_SIZE']} B from haul-origin, "
            f"{s['BENCH_FAULTS_MS']} ms latency, "
            f"{s['BENCH_FAULTS_ERROR_RATE']:.0%} HTTP 500 + {s['BENCH_FAULTS_RESET_RATE']:.0%} "
            "mid-body resets (at most 3 faults per file)",
            "origin", s["BENCH_FAULTS_N"], s["BENCH_FAULTS_SIZE"], tools,
            faults_origin + [
                "--error-rate", str(s["BENCH_FAULTS_ERROR_RATE"]),
                "--reset-rate", str(s["BENCH_FAULTS_RESET_RATE"]),
            ],
            runs,
        ),
        "perfile": Workload(
            "perfile", f"{s['BENCH_PERFILE_N']} x {s['BENCH_PERFILE_SIZE']} B from nginx, no latency",
            "nginx", s["BENCH_PERFILE_N"], s["BENCH_PERFILE_SIZE"], tools, runs=runs,
        ),
        "million": Workload(
            "million",
            f"{s['BENCH_MILLION_N']:,}-line list, {s['BENCH_MILLION_SIZE']} B each "
            "from haul-origin, no latency",
            "origin", s["BENCH_MILLION_N"], s["BENCH_MILLION_SIZE"],
            [t for t in tools if t in ("haul", "curl")], [], s["BENCH_MILLION_RUNS"],
        ),
        "rerun": Workload(
            "rerun",
            f"re-run of a finished {s['BENCH_RERUN_N']:,}-item job "
            f"({s['BENCH_RERUN_SIZE']} B each from haul-origin), same command, same output dir",
            "origin", s["BENCH_RERUN_N"], s["BENCH_RERUN_SIZE"],
            [t for t in tools if t == "haul"], [], s["BENCH_RERUN_RUNS"],
        ),
        "python": Workload(
            "python",
            f"{s['BENCH_PYTHON_N']} x {s['BENCH_PYTHON_SIZE']} B from nginx, no latency: "
            "haul's Python API against the aiohttp script",
            "nginx", s["BENCH_PYTHON_N"], s["BENCH_PYTHON_SIZE"], python_tools, runs=runs,
        ),
    }
    size = s["BENCH_POLITENESS_SIZE"]
    peers = [t for t in s["BENCH_THROTTLED_PEERS"].split(",") if t.strip() and t in tools]
    for k in (4, 16):
        n = s["BENCH_THROTTLED_N"] * k
        sweep = sorted({max(1, round(float(f) * k))
                        for f in s["BENCH_THROTTLED_SWEEP"].split(",") if f.strip()})
        defs[f"throttled-{k}"] = Workload(
            f"throttled-{k}",
            f"{n} x {size} B from haul-origin, {s['BENCH_THROTTLED_MS']} ms latency, "
            f"429 (Retry-After: {s['BENCH_THROTTLED_RETRY_AFTER']}) above {k} in flight",
            "origin", n, size, ["haul", *[f"haul-fixed-{m}" for m in sweep], *peers],
            ["--latency-ms", str(s["BENCH_THROTTLED_MS"]), "--max-in-flight", str(k),
             "--throttle-retry-after", str(s["BENCH_THROTTLED_RETRY_AFTER"])],
            runs, group="politeness", k=k,
        )
    knee_sweep = sorted({int(m) for m in s["BENCH_KNEE_SWEEP"].split(",") if m.strip()})
    defs["knee"] = Workload(
        "knee",
        f"{s['BENCH_KNEE_N']} x {size} B from haul-origin, latency "
        f"{s['BENCH_KNEE_MS']} ms + {s['BENCH_KNEE_PER_MS']} ms per other request in flight",
        "origin", s["BENCH_KNEE_N"], size, ["haul", *[f"haul-fixed-{m}" for m in knee_sweep]],
        ["--latency-ms", str(s["BENCH_KNEE_MS"]),
         "--latency-per-in-flight-ms", str(s["BENCH_KNEE_PER_MS"])],
        runs, group="politeness",
    )
    healthy = s["BENCH_HOSTS"] - 1
    defs["hosts"] = Workload(
        "hosts",
        f"{s['BENCH_HOSTS']} hosts: {healthy} x {s['BENCH_HOSTS_N']} items at "
        f"{s['BENCH_HOSTS_MS']} ms, 1 x {s['BENCH_HOSTS_SLOW_N']} items at "
        f"{s['BENCH_HOSTS_SLOW_MS']} ms with 429 above {s['BENCH_HOSTS_SLOW_K']} in flight; "
        f"{size} B each, spread evenly over the list",
        "origin", healthy * s["BENCH_HOSTS_N"] + s["BENCH_HOSTS_SLOW_N"], size,
        ["haul", "haul-no-slow"], [], runs, group="politeness", k=s["BENCH_HOSTS_SLOW_K"],
    )
    unknown = [w for w in selected if w not in defs]
    if unknown:
        raise SystemExit(f"bench: unknown workload(s) {', '.join(unknown)}; known: {', '.join(defs)}")
    return [defs[w] for w in defs if w in selected]


def selected_workloads():
    only = os.environ.get("BENCH_ONLY", "").strip()
    if only in ("", "default"):
        chosen = list(DEFAULT_WORKLOADS)
        if os.environ.get("BENCH_MILLION") == "1":
            chosen += HEAVY_WORKLOADS
    elif only == "all":
        chosen = DEFAULT_WORKLOADS + HEAVY_WORKLOADS + POLITENESS_WORKLOADS + PYTHON_WORKLOADS
    else:
        chosen = []
        for w in (w.strip() for w in only.split(",")):
            chosen += POLITENESS_WORKLOADS if w == "politeness" else [w] if w else []
    # "faults" is reported against "faults-baseline", so one brings the other.
    if "faults" in chosen and "faults-baseline" not in chosen:
        chosen.append("faults-baseline")
    return chosen


def selected_tools():
    only = os.environ.get("BENCH_TOOLS", "").strip()
    if not only:
        return list(ALL_TOOLS)
    tools = [t.strip() for t in only.split(",") if t.strip()]
    unknown = [t for t in tools if t not in ALL_TOOLS]
    if unknown:
        raise SystemExit(f"bench: unknown tool(s) {', '.join(unknown)}; known: {', '.join(ALL_TOOLS)}")
    if "haul" not in tools:
        tools.insert(0, "haul")  # every ratio is to haul
    return tools


def file_name(w, i):
    width = max(6, len(str(w.n - 1)))
    return f"{w.name[0]}{i:0{width}d}.bin"


def generate_static(w):
    """Files for nginx under bench/out/www/<workload>, kept between runs of
    the benchmark (a marker records the count and size they were made for)."""
    w.source_dir = WWW / w.name
    marker = w.source_dir / ".complete"
    wanted = f"{w.n} {w.size}\n"
    if marker.exists() and marker.read_text() == wanted:
        return
    log(f"[{w.name}] generating {w.n} files of {w.size} B for nginx in {w.source_dir}")
    retire(w.source_dir)
    w.source_dir.mkdir(parents=True)
    for name in w.names:
        with open(w.source_dir / name, "wb") as f:
            left = w.size
            while left:
                piece = min(left, 8 << 20)
                f.write(os.urandom(piece))
                left -= piece
    os.sync()
    marker.write_text(wanted)


def prepare(w, nginx, origin_port):
    """Write the URL list, the curl config and the verification list."""
    LISTS.mkdir(parents=True, exist_ok=True)
    w.names = [file_name(w, i) for i in range(w.n)]
    if w.server == "nginx":
        generate_static(w)
        urls = [nginx.url(f"/{w.name}/{name}") for name in w.names]
    else:
        paths = [f"/file/{w.name}/{name}" for name in w.names]
        urls = [f"http://127.0.0.1:{origin_port}{p}" for p in paths]
        w.verify_file = LISTS / f"{w.name}.verify"
        w.verify_file.write_text("".join(f"{p}\t{n}\n" for p, n in zip(paths, w.names)))
    w.urls_file = LISTS / f"{w.name}.txt"
    w.urls_file.write_text("".join(u + "\n" for u in urls))
    w.curl_file = LISTS / f"{w.name}.curl"
    w.curl_file.write_text(
        "".join(f'url = "{u}"\noutput = "{DL / n}"\n' for u, n in zip(urls, w.names))
    )


# --------------------------------------------------------------------- tools


def command(tool, w):
    """The command line of one tool on one workload: each as a user would run
    it at its best, with BENCH_JOBS transfers in flight to the one host."""
    jobs = str(SETTINGS["BENCH_JOBS"])
    if tool == "haul":
        # haul's defaults: each host's window adapts up to -j.
        return [str(HAUL), "-i", str(w.urls_file), "-o", str(DL), "-j", jobs, "-q"]
    if tool.startswith("haul-fixed-"):
        # Politeness group: a fixed window, as a user who guessed N would run it.
        return [str(HAUL), "-i", str(w.urls_file), "-o", str(DL), "-j", jobs,
                "--per-host", tool.rsplit("-", 1)[1], "--fixed", "-q"]
    if tool == "aria2c":
        return ["aria2c", "-i", str(w.urls_file), "-d", str(DL), "-j", jobs,
                "--max-connection-per-server=1", "--split=1",
                "--file-allocation=none", "--auto-save-interval=0", "--allow-overwrite=true",
                "--auto-file-renaming=false", "--max-tries=6", "--retry-wait=0",
                "--console-log-level=warn", "--summary-interval=0",
                "--download-result=hide", "--enable-color=false"]
    if tool == "wget2":
        return ["wget2", "-i", str(w.urls_file), "-P", str(DL), f"--max-threads={jobs}",
                "-q", "--tries=6", "--no-robots", "--no-http2"]
    if tool == "curl":
        # -K: one url/output pair per item, so argv stays small.
        return ["curl", "-Z", "--parallel-max", jobs, "--parallel-immediate",
                "--retry", "5", "--retry-all-errors", "--fail", "-s", "-S",
                "-K", str(w.curl_file)]
    if tool == "aiohttp":
        return [PYTHON, str(BENCH / "peers" / "aiohttp_fetch.py"), "-i", str(w.urls_file),
                "-o", str(DL), "-c", jobs, "--retries", "5"]
    if tool == "haul-py":
        # What a Python user writes: haul.download(list, out, jobs=N, retries=5).
        return [str(VENV_PYTHON), str(BENCH / "peers" / "haul_api.py"), "-i", str(w.urls_file),
                "-o", str(DL), "-j", jobs, "--retries", "5"]
    raise ValueError(tool)


@dataclass
class Run:
    tool: str
    exit: int
    wall: float
    cpu: float
    rss_mib: float
    verified: int
    expected: int
    verified_bytes: int
    extra: list = field(default_factory=list)  # unexpected names left in the output dir
    requests: int = None
    faults: int = None
    first_request: float = None  # seconds from spawn to the origin's first request
    first_wall: float = None  # rerun: wall time of the first (downloading) run
    server_errors: int = 0  # nginx error-log lines during the run
    note: str = ""
    killed: bool = False  # politeness: stopped at BENCH_POLITENESS_TIMEOUT
    fig: dict = field(default_factory=dict)  # politeness: figures from the origin


# Finished download directories wait here (next to DL, so moving one is a
# rename) and are deleted when the bench ends.
TRASH = DL.parent / f"{DL.name}-trash"
# A directory with fewer entries than this is deleted at once.
TRASH_MIN_ENTRIES = 1000


def retire(path):
    """Empty `path` away: delete it if it holds few entries, else move it to
    TRASH. On ext4 without a journal (this machine's root file system), the
    inode allocator skips every inode freed in the last 60 s (300 s while its
    inode table block is dirty), one by one: deleting 10,000 files between
    runs made each file the next tool created cost hundreds of microseconds
    of system time. Deleting at the end keeps that out of the figures."""
    if not path.exists():
        return
    entries = 0
    with os.scandir(path) as it:
        for _ in it:
            entries += 1
            if entries >= TRASH_MIN_ENTRIES:
                break
    if entries < TRASH_MIN_ENTRIES:
        shutil.rmtree(path, ignore_errors=True)
    else:
        TRASH.mkdir(parents=True, exist_ok=True)
        try:
            path.rename(TRASH / f"{path.name}-{time.time_ns()}")
        except OSError:  # another file system (BENCH_DL_DIR): delete after all
            shutil.rmtree(path, ignore_errors=True)


# When the last mass deletion ended, and how long ext4 may skip its inodes.
DELETED_AT = DL.parent / "deleted-at"
RECENTLY_DELETED_S = 360


def empty_trash():
    if TRASH.exists():
        log(f"bench: deleting the downloads kept in {TRASH}")
        shutil.rmtree(TRASH, ignore_errors=True)
        DELETED_AT.write_text(f"{time.time()}\n")


def settle_after_deletes():
    """Waits out the inode allocator's memory of the last invocation's
    deletions (see `retire`): otherwise the first tool to create files pays
    for them, and which tool that is depends on the order of the runs."""
    try:
        deleted = float(DELETED_AT.read_text())
    except (OSError, ValueError):
        return
    wait = deleted + RECENTLY_DELETED_S - time.time()
    if wait > 0 and not os.environ.get("BENCH_NO_SETTLE"):
        log(f"bench: waiting {wait:.0f} s: files deleted at the end of the last run "
            "would slow file creation until then (BENCH_NO_SETTLE=1 skips this)")
        time.sleep(wait)


def clear_dir(path):
    retire(path)
    path.mkdir(parents=True)


def timed(argv, log_path, cwd, timeout=None):
    """Run argv; return (exit status, wall s, CPU s, peak RSS MiB, start Unix time).

    The tool is started through GNU time, whose %M is the peak RSS of the
    tool (the largest of it and any child it waited for). A child of this (large) Python process would not do:
    Linux carries the RSS high-water mark of the forked image across exec(),
    so every tool would report at least the harness's own RSS. CPU time comes
    from wait4() on GNU time, which includes the tool it waited for (time's
    own share is about a millisecond).
    """
    rss_file = log_path.with_suffix(".rss")
    with open(log_path, "w") as out:
        started_at = time.time()
        t0 = time.monotonic()
        proc = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", str(rss_file), *argv],
                                stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                                start_new_session=True)
        record_pid("tool", proc.pid)
        killer = threading.Timer(timeout or SETTINGS["BENCH_TIMEOUT"], os.killpg,
                                 (proc.pid, signal.SIGKILL))
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            # Interrupted (Ctrl-C reaches only this process: the tool has its
            # own session): take the tool down with us.
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        finally:
            killer.cancel()
            forget_pid("tool")
        wall = time.monotonic() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    try:
        # GNU time writes "Command exited with non-zero status N" first when
        # the tool fails; the figure is on the last line.
        rss_kib = int(rss_file.read_text().split()[-1])
    except (OSError, ValueError, IndexError):
        rss_kib = 0
    return proc.returncode, wall, cpu, rss_kib / 1024, started_at


def same_bytes(a, b, size):
    with open(a, "rb") as fa, open(b, "rb") as fb:
        if size <= 4 << 20:
            return fa.read() == fb.read()
        while True:
            x = fa.read(4 << 20)
            if x != fb.read(4 << 20):
                return False
            if not x:
                return True


def verify(w, tag, names=None, verify_file=None):
    """(verified, verified bytes, names of extra files in the output directory).
    `names` and `verify_file` override the workload's (a run of a subset)."""
    names = w.names if names is None else names
    verify_file = verify_file or w.verify_file
    present = set(os.listdir(DL))
    extra = sorted(present - set(names) - JOB_STATE)
    if w.server == "origin":
        out = subprocess.run(
            [str(ORIGIN), "verify", "--size", str(w.size), str(DL), str(verify_file)],
            capture_output=True, text=True,
        )
        words = out.stdout.split()
        if not words or words[0] != "verified":
            raise RuntimeError(f"haul-origin verify failed: {out.stdout}{out.stderr}")
        ok = int(words[1].split("/")[0])
        if out.stderr:
            (LOGS / f"{tag}.verify").write_text(out.stderr)
        return ok, ok * w.size, extra
    ok = 0
    for name in w.names:
        if name not in present:
            continue
        path = DL / name
        if path.stat().st_size == w.size and same_bytes(path, w.source_dir / name, w.size):
            ok += 1
    return ok, ok * w.size, extra


NGINX_ERRORS = OUT / "nginx" / "error.log"


def nginx_log_size():
    try:
        return NGINX_ERRORS.stat().st_size
    except FileNotFoundError:
        return 0


def nginx_errors_since(offset):
    """Lines nginx logged at error level or worse since `offset`: a server
    failing (say, out of file descriptors) must not pass for a slow client."""
    try:
        with open(NGINX_ERRORS, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except FileNotFoundError:
        return 0
    return sum(1 for line in text.splitlines()
               if any(level in line for level in ("[error]", "[crit]", "[alert]", "[emerg]")))


def run_once(w, tool, run_index, origin_port):
    """One timed run of one tool on one workload, verified afterwards."""
    clear_dir(DL)
    tag = f"{w.name}-{tool}-{run_index + 1}"
    log_offset = nginx_log_size()
    origin = None
    if w.server == "origin":
        origin = Origin(origin_port, ["--size", str(w.size), *w.origin_args], tag)
        origin.start()
    try:
        status, wall, cpu, rss, started_at = timed(command(tool, w), LOGS / f"{tag}.log", OUT)
    finally:
        seen = origin.stop() if origin else None
    ok, ok_bytes, extra = verify(w, tag)
    run = Run(tool, status, wall, cpu, rss, ok, w.n, ok_bytes, extra)
    if w.server == "nginx":
        run.server_errors = nginx_errors_since(log_offset)
        if run.server_errors:
            run.note = f"nginx logged {run.server_errors} errors (see {NGINX_ERRORS})"
    if seen:
        run.requests, run.faults = seen.requests, seen.faults
        if seen.first_request is not None:
            run.first_request = seen.first_request - started_at
    clear_dir(DL)
    os.sync()
    return run


def run_rerun(w, run_index, origin_port):
    """haul twice with the same command and output directory; the second run
    is the one measured, against a fresh origin that counts its requests."""
    clear_dir(DL)
    tag = f"{w.name}-haul-{run_index + 1}"
    argv = command("haul", w)
    origin = Origin(origin_port, ["--size", str(w.size)], f"{tag}-first")
    origin.start()
    try:
        first = timed(argv, LOGS / f"{tag}-first.log", OUT)
    finally:
        origin.stop()
    os.sync()
    origin = Origin(origin_port, ["--size", str(w.size)], tag)
    origin.start()
    try:
        status, wall, cpu, rss, started_at = timed(argv, LOGS / f"{tag}.log", OUT)
    finally:
        seen = origin.stop()
    ok, ok_bytes, extra = verify(w, tag)
    run = Run("haul", status, wall, cpu, rss, ok, w.n, ok_bytes, extra,
              requests=seen.requests, faults=seen.faults,
              note=f"first run {first[1]:.2f} s, exit {first[0]}")
    run.first_wall = first[1]
    clear_dir(DL)
    os.sync()
    return run


def describe(w, r):
    parts = [f"{r.wall:.2f} s wall", f"{r.cpu:.2f} s CPU", f"{r.rss_mib:.0f} MiB",
             f"{r.verified}/{r.expected} verified", f"exit {r.exit}"]
    if r.requests is not None:
        parts.append(f"{r.requests} requests")
    if r.first_request is not None:
        parts.append(f"first request {r.first_request:.3f} s")
    if r.extra:
        parts.append(f"{len(r.extra)} extra files ({', '.join(r.extra[:3])}...)")
    if r.note:
        parts.append(r.note)
    for key, value in r.fig.items():
        if value is not None and key != "done_at":
            parts.append(f"{key} {value:.3f}" if isinstance(value, float) else f"{key} {value}")
    return ", ".join(parts)


# ---------------------------------------------------------------- politeness


def timeline_figures(samples, first_request):
    """What one origin's --timeline says about a run.

    - done_at: Unix time of the first sample of the final quiet stretch (no
      new request, nothing in flight): when the origin's last response had
      gone out, to within the 10 ms tick;
    - mean_in_flight: requests in flight, averaged over time from the first
      sample to done_at;
    - mean_ms: the mean time a request spent at the origin over that span,
      by Little's law (mean in flight / arrival rate);
    - late_requests, late_429: requests and 429s after the first 2 s (from
      the first request, as the origin saw it).
    """
    fig = {"done_at": None, "mean_in_flight": None, "mean_ms": None,
           "late_requests": 0, "late_429": 0}
    if not samples:
        return fig
    final = samples[-1]
    i = len(samples) - 1
    while i > 0 and samples[i - 1][1] == final[1] and samples[i - 1][2] == 0:
        i -= 1
    done_at = samples[i][0]
    start = samples[0][0]
    area = sum(a[2] * (b[0] - a[0]) for a, b in zip(samples, samples[1:]) if b[0] <= done_at)
    span = done_at - start
    fig["done_at"] = done_at
    if span > 0:
        fig["mean_in_flight"] = area / span
        if final[1]:
            fig["mean_ms"] = 1000 * area / final[1]
    after = (first_request or start) + 2.0
    late = next((x for x in samples if x[0] >= after), None)
    if late:
        fig["late_requests"] = final[1] - late[1]
        fig["late_429"] = final[3].get(429, 0) - late[3].get(429, 0)
    return fig


def run_polite_once(w, tool, run_index, origin_port):
    """throttled-K and knee: one timed run against a fresh origin that keeps a
    timeline. A fixed setting or a peer still going after
    BENCH_POLITENESS_TIMEOUT is killed; haul on its defaults, the subject,
    gets BENCH_TIMEOUT, so that its wall is measured however long it is."""
    clear_dir(DL)
    tag = f"{w.name}-{tool}-{run_index + 1}"
    timeout = SETTINGS["BENCH_TIMEOUT" if tool == "haul" else "BENCH_POLITENESS_TIMEOUT"]
    origin = Origin(origin_port, ["--size", str(w.size), *w.origin_args], tag, timeline=True)
    origin.start()
    try:
        status, wall, cpu, rss, started_at = timed(command(tool, w), LOGS / f"{tag}.log", OUT,
                                                   timeout)
    finally:
        seen = origin.stop()
    ok, ok_bytes, extra = verify(w, tag)
    run = Run(tool, status, wall, cpu, rss, ok, w.n, ok_bytes, extra,
              requests=seen.requests, faults=seen.faults)
    run.killed = status == -signal.SIGKILL and wall >= timeout - 0.5
    run.fig = timeline_figures(seen.timeline, seen.first_request)
    run.fig.update(max_in_flight=seen.max_in_flight, s429=seen.statuses.get(429, 0))
    if run.killed:
        run.note = f"killed after {timeout} s"
    clear_dir(DL)
    os.sync()
    return run


def hosts_ports(count):
    """`count` distinct ports, each free on 127.0.0.1 and 127.0.0.2."""
    ports = []
    while len(ports) < count:
        port = free_port(also_127_0_0_2=True)
        if port not in ports:
            ports.append(port)
    return ports


def prepare_hosts(w):
    """hosts: one origin per host (host 0 is the slow one), a distinct port
    each (haul's per-host key is host:port). Items are spread evenly over the
    list, host 0's first item first; a second list leaves host 0 out."""
    s = SETTINGS
    hosts = s["BENCH_HOSTS"]
    ports = hosts_ports(hosts)
    items = []
    for h in range(hosts):
        count = s["BENCH_HOSTS_SLOW_N"] if h == 0 else s["BENCH_HOSTS_N"]
        for i in range(count):
            name = f"h{h:02d}-{i:05d}.bin"
            items.append((i / count, h, name, f"/file/hosts/{name}"))
    items.sort()
    LISTS.mkdir(parents=True, exist_ok=True)

    def write(stem, subset):
        urls, verify_file = LISTS / f"{stem}.txt", LISTS / f"{stem}.verify"
        urls.write_text("".join(f"http://127.0.0.1:{ports[h]}{path}\n"
                                for _, h, _, path in subset))
        verify_file.write_text("".join(f"{path}\t{name}\n" for _, _, name, path in subset))
        return urls, verify_file, [name for _, _, name, _ in subset]

    w.urls_file, w.verify_file, w.names = write("hosts", items)
    healthy = [x for x in items if x[1] != 0]
    urls, verify_file, names = write("hosts-no-slow", healthy)
    w.extra = {"ports": ports, "urls_no_slow": urls, "verify_no_slow": verify_file,
               "names_no_slow": names}


def run_hosts_once(w, variant, run_index):
    """hosts: haul on its defaults over every item (`haul`) or over the
    healthy hosts' items only (`haul-no-slow`); all the origins run either way."""
    s = SETTINGS
    clear_dir(DL)
    tag = f"hosts-{variant}-{run_index + 1}"
    no_slow = variant == "haul-no-slow"
    origins = []
    try:
        for h, port in enumerate(w.extra["ports"]):
            if h == 0:
                args = ["--latency-ms", str(s["BENCH_HOSTS_SLOW_MS"]),
                        "--max-in-flight", str(s["BENCH_HOSTS_SLOW_K"]),
                        "--throttle-retry-after", str(s["BENCH_THROTTLED_RETRY_AFTER"])]
            else:
                args = ["--latency-ms", str(s["BENCH_HOSTS_MS"])]
            origin = Origin(port, ["--size", str(w.size), *args], f"{tag}-h{h:02d}",
                            pid_name=f"haul-origin-h{h:02d}", timeline=True)
            origin.start()
            origins.append(origin)
        urls = w.extra["urls_no_slow"] if no_slow else w.urls_file
        argv = [str(HAUL), "-i", str(urls), "-o", str(DL), "-j", str(s["BENCH_JOBS"]), "-q"]
        status, wall, cpu, rss, started_at = timed(argv, LOGS / f"{tag}.log", OUT)
    finally:
        seen = [origin.stop() for origin in origins]
    if no_slow:
        names = w.extra["names_no_slow"]
        ok, ok_bytes, extra = verify(w, tag, names, w.extra["verify_no_slow"])
    else:
        names = w.names
        ok, ok_bytes, extra = verify(w, tag)
    run = Run(variant, status, wall, cpu, rss, ok, len(names), ok_bytes, extra,
              requests=sum(x.requests for x in seen))
    figs = [timeline_figures(x.timeline, x.first_request) for x in seen]
    healthy_done = [f["done_at"] for f in figs[1:] if f["done_at"]]
    slow = seen[0]
    run.fig = {
        "healthy_done": max(healthy_done) - started_at if healthy_done else None,
        "healthy_max_in_flight": max(x.max_in_flight for x in seen[1:]),
        "slow_requests": slow.requests,
        "slow_429": slow.statuses.get(429, 0),
        "slow_max_in_flight": slow.max_in_flight,
        "slow_done": figs[0]["done_at"] - started_at if figs[0]["done_at"] else None,
    }
    clear_dir(DL)
    os.sync()
    return run


def setting_name(tool):
    if tool == "haul":
        return f"haul (adaptive, -j {SETTINGS['BENCH_JOBS']})"
    if tool.startswith("haul-fixed-"):
        return f"haul --per-host {tool.rsplit('-', 1)[1]} --fixed"
    if tool == "haul-no-slow":
        return "haul, without the slow host's items"
    if tool == "curl":
        return f"curl -Z (--retry 5, {SETTINGS['BENCH_JOBS']} in flight)"
    if tool == "wget2":
        return f"wget2 (--tries=6, {SETTINGS['BENCH_JOBS']} threads)"
    return tool


def best_fixed(summaries):
    """The fixed setting with the lowest median wall among those with every
    file verified in every run and no run killed: the best --per-host chosen
    with hindsight."""
    fine = [s for s in summaries if s.tool.startswith("haul-fixed-")
            and not any(r.killed for r in s.runs)
            and all(r.verified == r.expected for r in s.runs)]
    return min(fine, key=lambda s: s.med("wall"), default=None)


def politeness_table(w, summaries, context):
    if w.name == "hosts":
        return hosts_table(w, summaries)
    best = best_fixed(summaries)
    best_wall = best.med("wall") if best else None
    context["best_fixed"] = best
    timeout = SETTINGS["BENCH_POLITENESS_TIMEOUT"]
    if w.name == "knee":
        headers = ["setting", "wall s", "wall / best fixed", "files/s", "max in flight",
                   "mean in flight", "mean ms at origin", "verified", "requests", "CPU s",
                   "exit"]
    else:
        headers = ["setting", "wall s", "wall / best fixed", "verified", "requests", "429s",
                   "429s after 2 s (worst run)", "max in flight", "mean in flight", "CPU s",
                   "exit"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for s in summaries:
        killed = any(r.killed for r in s.runs)
        wall = s.med("wall")
        worst = s.worst
        fig = lambda key: median(r.fig.get(key) for r in s.runs)  # noqa: E731
        wall_text = f"> {timeout} (killed)" if killed else fmt(wall)
        ratio = fmt(wall / best_wall) if best_wall and not killed else "-"
        verified = f"{worst.verified}/{worst.expected}"
        max_in_flight = str(max(r.fig.get("max_in_flight", 0) for r in s.runs))
        if w.name == "knee":
            row = [setting_name(s.tool), wall_text, ratio,
                   fmt(s.files_per_s, 0) if not killed else "-", max_in_flight,
                   fmt(fig("mean_in_flight"), 1), fmt(fig("mean_ms"), 0), verified,
                   fmt(s.med("requests"), 0), fmt(s.med("cpu")), s.exits]
        else:
            shares = [(r.fig["late_429"], r.fig["late_requests"]) for r in s.runs
                      if r.fig.get("late_requests")]
            if shares:
                n429, nreq = max(shares, key=lambda x: x[0] / x[1])
                late = f"{100 * n429 / nreq:.1f}% ({n429}/{nreq})"
            else:
                late = "- (done within 2 s)"
            row = [setting_name(s.tool), wall_text, ratio, verified, fmt(s.med("requests"), 0),
                   fmt(fig("s429"), 0), late, max_in_flight, fmt(fig("mean_in_flight"), 1),
                   fmt(s.med("cpu")), s.exits]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def hosts_table(w, summaries):
    base = next((s for s in summaries if s.tool == "haul-no-slow"), None)
    base_done = median(r.fig.get("healthy_done") for r in base.runs) if base else None
    headers = ["run", "wall s", "healthy hosts done s", "healthy done / no-slow run's",
               "verified", "requests", "slow host: requests, 429s, max in flight",
               "slow host done s", "max in flight on a healthy host", "exit"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for s in summaries:
        worst = s.worst
        fig = lambda key: median(r.fig.get(key) for r in s.runs)  # noqa: E731
        done = fig("healthy_done")
        slow = (f"{fmt(fig('slow_requests'), 0)}, {fmt(fig('slow_429'), 0)}, "
                f"{max(r.fig['slow_max_in_flight'] for r in s.runs)}"
                if s.tool == "haul" else "-")
        row = [setting_name(s.tool), fmt(s.med("wall")), fmt(done),
               fmt(done / base_done) if done and base_done else "-",
               f"{worst.verified}/{worst.expected}", fmt(s.med("requests"), 0), slow,
               fmt(fig("slow_done")) if s.tool == "haul" else "-",
               str(max(r.fig["healthy_max_in_flight"] for r in s.runs)), s.exits]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def politeness_notes(w, summaries, context):
    s = SETTINGS
    busy = max(context["busy"], context.get("busy_after", 0.0))
    notes = [f"CPU used by other processes just before the workload: {context['busy']:.2f} "
             f"cores, just after: {context.get('busy_after', 0.0):.2f}"
             + (" (something else was busy: noisy figures)." if busy > BUSY_WARNING
                else ".")]
    if w.name == "hosts":
        notes.append(
            "healthy hosts done: from spawning haul to the last response of the last healthy "
            "host (origin timelines, 10 ms ticks); the no-slow run measures the same thing "
            "with host 0's items left out of the list (its origin still runs), so haul's "
            "start-up and exit and the tick cancel out in the ratio.")
        return notes
    best = context.get("best_fixed")
    notes.append(f"Best fixed setting (lowest median wall, every file verified): "
                 f"{setting_name(best.tool) if best else 'none'}.")
    notes.append(f"Fixed settings and peers still going after {s['BENCH_POLITENESS_TIMEOUT']} s "
                 "are killed (BENCH_POLITENESS_TIMEOUT) and not run again; haul on its "
                 "defaults is never cut short.")
    peers = [x.tool for x in summaries if not x.tool.startswith("haul")]
    if peers:
        notes.append(f"{', '.join(peers)}: {s['BENCH_THROTTLED_PEER_RUNS']} run(s) each "
                     "(BENCH_THROTTLED_PEER_RUNS).")
    if w.name == "knee":
        notes.append("mean ms at origin: mean in flight / request rate over the busy span "
                     "(Little's law): the latency the origin imposed at that load.")
    return notes


# ------------------------------------------------------------------- reports


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


@dataclass
class Summary:
    tool: str
    runs: list

    def med(self, attr):
        return median(getattr(r, attr) for r in self.runs)

    @property
    def worst(self):
        return min(self.runs, key=lambda r: r.verified)

    @property
    def files_per_s(self):
        return median(r.verified / r.wall for r in self.runs)

    @property
    def mb_per_s(self):
        return median(r.verified_bytes / r.wall / 1e6 for r in self.runs)

    @property
    def cpu_per_file_us(self):
        """CPU time (user + sys) per verified file, µs; median over runs."""
        return median(1e6 * r.cpu / r.verified if r.verified else None for r in self.runs)

    @property
    def exits(self):
        return ",".join(str(r.exit) for r in self.runs)


def fmt(value, digits=2):
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def table(w, summaries, context):
    """The Markdown table of one workload, with the columns it calls for."""
    haul = next((s for s in summaries if s.tool == "haul"), None)
    haul_wall = haul.med("wall") if haul else None
    headers = ["tool", "wall s", "CPU s", "peak RSS MiB", "files/s", "MB/s",
               "verified/expected", "wall / haul's", "exit"]
    extra_headers = []
    if w.name == "latency":
        extra_headers = ["wall / bound"]
    elif w.name == "large":
        extra_headers = ["% of machine limit"]
    elif w.name == "faults":
        extra_headers = ["verified %", "wall / no-fault wall", "requests"]
    elif w.name == "million":
        extra_headers = ["first request s"]
    elif w.name == "rerun":
        extra_headers = ["first run wall s", "requests in re-run"]
    elif w.name == "python":
        extra_headers = ["CPU µs/file", "files/s / aiohttp's", "CPU per file / aiohttp's"]
    elif w.server == "origin":
        extra_headers = ["requests"]
    lines = ["| " + " | ".join(headers + extra_headers) + " |",
             "|" + "---|" * (len(headers) + len(extra_headers))]
    for s in summaries:
        wall = s.med("wall")
        worst = s.worst
        rates = [fmt(s.files_per_s, 0), fmt(s.mb_per_s, 1)] if w.name != "rerun" else ["-", "-"]
        row = [s.tool, fmt(wall), fmt(s.med("cpu")), fmt(s.med("rss_mib"), 1), *rates,
               f"{worst.verified}/{worst.expected}",
               fmt(wall / haul_wall) if haul_wall else "-", s.exits]
        if w.name == "latency":
            row.append(fmt(wall / context["bound"]))
        elif w.name == "large":
            limit = context.get("limit")
            row.append(f"{100 * s.mb_per_s / limit:.0f}%" if limit else "-")
        elif w.name == "faults":
            base = context.get("baseline", {}).get(s.tool)
            row += [f"{100 * worst.verified / worst.expected:.1f}%",
                    fmt(wall / base) if base else "-", fmt(s.med("requests"), 0)]
        elif w.name == "million":
            row.append(fmt(s.med("first_request"), 3))
        elif w.name == "rerun":
            row += [fmt(s.med("first_wall")),
                    fmt(s.med("requests"), 0)]
        elif w.name == "python":
            aio = next((x for x in summaries if x.tool == "aiohttp"), None)
            row += [fmt(s.cpu_per_file_us, 0),
                    fmt(s.files_per_s / aio.files_per_s) if aio else "-",
                    fmt(s.cpu_per_file_us / aio.cpu_per_file_us) if aio else "-"]
        elif w.server == "origin":
            row.append(fmt(s.med("requests"), 0))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def notes_for(w, summaries, context):
    busy = max(context["busy"], context.get("busy_after", 0.0))
    notes = [f"CPU used by other processes just before the workload: {context['busy']:.2f} "
             f"cores, just after: {context.get('busy_after', 0.0):.2f}"
             + (" (something else was busy: noisy figures)." if busy > BUSY_WARNING
                else ".")]
    if w.name == "rerun":
        notes.append("wall s, CPU s and peak RSS are the second run's; files/s and MB/s are "
                     "not shown, since the second run has nothing left to download.")
    if w.name == "latency":
        notes.append(f"Lower bound N*L/C = {w.n} x {context['latency_s']} s / "
                     f"{SETTINGS['BENCH_JOBS']} = {context['bound']:.2f} s.")
    if w.name == "large" and context.get("loopback"):
        notes.append(
            f"Machine limits: loopback {context['loopback']:.0f} MB/s (curl -o /dev/null, "
            f"one {w.size >> 20} MiB file, best of 3); disk {context['disk']:.0f} MB/s "
            f"(dd {SETTINGS['BENCH_DD_MB']} MiB, conv=fsync, into {DL}). The tools do not "
            "fsync, so their writes can land in the page cache only.")
    for s in summaries:
        worst = max(s.runs, key=lambda r: len(r.extra))
        if worst.extra:
            notes.append(f"{s.tool}: up to {len(worst.extra)} unexpected file(s) left in the "
                         f"output directory, e.g. {', '.join(worst.extra[:3])}.")
        server_errors = sum(r.server_errors for r in s.runs)
        if server_errors:
            notes.append(f"{s.tool}: nginx logged {server_errors} errors during its runs "
                         f"(see {NGINX_ERRORS}): these figures measure a failing server.")
        if w.name == "python" and s.tool == "haul-py":
            aio = next((x for x in summaries if x.tool == "aiohttp"), None)
            if aio:
                speed = s.files_per_s / aio.files_per_s
                cpu = s.cpu_per_file_us / aio.cpu_per_file_us
                met = "met" if speed >= 3 and cpu < 1 else "**not met**"
                notes.append(f"haul-py against aiohttp: {speed:.2f} x the files/s, "
                             f"{cpu:.2f} x the CPU per file (issue 16's target, at least 3 x "
                             f"the files/s with less CPU: {met}).")
        firsts = [r.first_request for r in s.runs if r.first_request is not None]
        if firsts and w.name not in ("million",):
            notes.append(f"{s.tool}: first request {median(firsts):.3f} s after spawn.")
    return notes


def filesystem(path):
    """The type of the file system holding `path`, from /proc/mounts."""
    path = str(path)
    best, kind = "", "unknown"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                fields = line.split()
                mount = fields[1]
                if (path == mount or path.startswith(mount.rstrip("/") + "/")) and len(mount) > len(best):
                    best, kind = mount, fields[2]
    except OSError:
        pass
    return kind


def machine():
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(open("/proc/meminfo").readline().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{os.cpu_count()} x {cpu}{mem}, Linux {platform.release()}"


def versions():
    def first_line(argv):
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            text = (out.stdout or out.stderr).strip().splitlines()
            return text[0] if text else "?"
        except (OSError, subprocess.TimeoutExpired):
            return "not found"

    if os.environ.get("BENCH_HAUL"):
        rev = f"BENCH_HAUL={HAUL}"
    else:
        rev = "built from " + first_line(["git", "-C", str(ROOT), "describe", "--always", "--dirty"])
    import importlib.metadata
    try:
        aiohttp_version = importlib.metadata.version("aiohttp")
    except importlib.metadata.PackageNotFoundError:
        aiohttp_version = "not installed"
    found = {
        "haul": f"{first_line([str(HAUL), '--version'])} ({rev})",
        "aria2c": first_line(["aria2c", "--version"]),
        "wget2": first_line(["wget2", "--version"]),
        "curl": first_line(["curl", "--version"]),
        "aiohttp": f"aiohttp {aiohttp_version}, Python {platform.python_version()}",
        "nginx": first_line(["nginx", "-v"]),
    }
    if VENV_PYTHON.exists():
        package = first_line([str(VENV_PYTHON), "-c",
                              "import importlib.metadata as m, platform; "
                              "print(m.version('haul-dl'), platform.python_version())"]).split()
        stamp = PY_VENV / ".stamp"
        built = stamp.read_text().split("\n", 1)[0][:12] if stamp.exists() else "?"
        found["haul-py"] = (f"haul-dl {package[0]}, Python {package[-1]} "
                            f"(release build in {PY_VENV}, from {built} and the diff in {stamp})")
    return found


# -------------------------------------------------------------- measurements

# Cores kept busy by others, above which a workload's figures are flagged.
BUSY_WARNING = 0.2


def background_cpu(seconds=1.0):
    """Cores busy over `seconds` while the bench itself is idle (servers idle
    too): what other processes on the machine are taking."""

    def sample():
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields[:8]) - idle, sum(fields[:8])

    busy0, total0 = sample()
    time.sleep(seconds)
    busy1, total1 = sample()
    if total1 == total0:
        return 0.0
    return (busy1 - busy0) / (total1 - total0) * (os.cpu_count() or 1)


def measure_limits(w, nginx):
    """Loopback (curl to /dev/null) and disk (dd with fsync) rates, MB/s."""
    url = nginx.url(f"/{w.name}/{w.names[0]}")
    speeds = []
    for _ in range(3):
        out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{speed_download}", url],
                             capture_output=True, text=True, check=True)
        speeds.append(float(out.stdout) / 1e6)
    loopback = max(speeds)
    target = DL / "ddtest"  # the file system the tools write to
    count = SETTINGS["BENCH_DD_MB"]
    t0 = time.monotonic()
    subprocess.run(["dd", "if=/dev/zero", f"of={target}", "bs=1M", f"count={count}",
                    "conv=fsync"], capture_output=True, check=True)
    disk = count * (1 << 20) / (time.monotonic() - t0) / 1e6
    target.unlink()
    os.sync()
    return loopback, disk


# ---------------------------------------------------------------------- main


def needs_venv(tools, chosen):
    """Whether haul-py runs in this invocation (bench/run asks, through
    --needs-venv, before building the package into bench/out/py-venv)."""
    return any("haul-py" in w.tools for w in workloads(chosen, tools))


def main():
    tools = selected_tools()
    chosen = selected_workloads()
    for need in [HAUL, ORIGIN] + ([VENV_PYTHON] if needs_venv(tools, chosen) else []):
        if not need.exists():
            raise SystemExit(f"bench: {need} is missing; run bench/run (it builds it)")
    for sub in (DL, LISTS, LOGS):
        sub.mkdir(parents=True, exist_ok=True)

    header = [
        "# haul benchmark results",
        "",
        f"- When: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"- Machine: {machine()}",
        *[f"- {k}: {v}" for k, v in versions().items()],
        f"- Runs per tool: {SETTINGS['BENCH_RUNS']} (interleaved; medians, except "
        "verified/expected: the worst run); "
        f"{SETTINGS['BENCH_JOBS']} transfers in flight for every tool",
        f"- Priority: nice {os.nice(0)} (BENCH_NICE), inherited by servers and tools",
        f"- Download directory: {DL} ({filesystem(DL)})",
        "- MB = 10^6 bytes; RSS in MiB; \"wall / haul's\" above 1 means slower than haul.",
        "",
    ]
    sections = []

    def write_results():
        RESULTS.write_text("\n".join(header + sections) + "\n")

    log(f"bench: workloads {', '.join(chosen)}; tools {', '.join(tools)}")
    settle_after_deletes()
    needs_nginx = any(w in chosen for w in ("small", "large", "perfile", "python"))
    nginx = Nginx() if needs_nginx else None
    origin_port = free_port(also_127_0_0_2=True)
    context = {"baseline": {}}
    try:
        if nginx:
            nginx.start()
        for w in workloads(chosen, tools):
            if w.name == "hosts":
                prepare_hosts(w)
            else:
                prepare(w, nginx, origin_port)
            context["busy"] = background_cpu()
            if context["busy"] > BUSY_WARNING:
                log(f"[{w.name}] warning: {context['busy']:.2f} cores busy while the bench was "
                    "idle; something else is using the CPU and the figures will be noisy")
            if w.name == "latency":
                context["latency_s"] = SETTINGS["BENCH_LATENCY_MS"] / 1000
                context["bound"] = w.n * context["latency_s"] / SETTINGS["BENCH_JOBS"]
                log(f"[latency] lower bound N*L/C = {context['bound']:.2f} s")
            if w.name == "large":
                loopback, disk = measure_limits(w, nginx)
                context.update(loopback=loopback, disk=disk, limit=min(loopback, disk))
                log(f"[large] loopback {loopback:.0f} MB/s, disk {disk:.0f} MB/s")
            results = {t: [] for t in w.tools}
            for run_index in range(w.runs):
                k = run_index % len(w.tools)
                for tool in w.tools[k:] + w.tools[:k]:
                    if any(r.killed for r in results[tool]):
                        continue  # killed by the timeout once: it would be again
                    if (w.group == "politeness" and not tool.startswith("haul")
                            and len(results[tool]) >= SETTINGS["BENCH_THROTTLED_PEER_RUNS"]):
                        continue
                    if w.name == "rerun":
                        r = run_rerun(w, run_index, origin_port)
                    elif w.name == "hosts":
                        r = run_hosts_once(w, tool, run_index)
                    elif w.group == "politeness":
                        r = run_polite_once(w, tool, run_index, origin_port)
                    else:
                        r = run_once(w, tool, run_index, origin_port)
                    results[tool].append(r)
                    log(f"[{w.name}] run {run_index + 1}/{w.runs} {tool}: {describe(w, r)}")
            summaries = [Summary(t, results[t]) for t in w.tools]
            context["busy_after"] = background_cpu()
            if w.name == "faults-baseline":
                context["baseline"] = {s.tool: s.med("wall") for s in summaries}
            if w.group == "politeness":
                text = politeness_table(w, summaries, context)
                notes = politeness_notes(w, summaries, context)
            else:
                text = table(w, summaries, context)
                notes = notes_for(w, summaries, context)
            section = [f"## {w.name}: {w.title}", "", text, ""]
            section += [f"- {n}" for n in notes] + ([""] if notes else [])
            sections.extend(section)
            print("\n".join(section), flush=True)
            write_results()
    finally:
        if nginx:
            nginx.stop()
        empty_trash()
    write_results()
    log(f"bench: results in {RESULTS}; logs in {LOGS}")


def interrupted(signum, frame):
    # Once is enough: ignore further signals while cleaning up.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt


if __name__ == "__main__":
    if sys.argv[1:] == ["--needs-venv"]:
        # For bench/run: exit 0 when haul-py is among the tools to run.
        sys.exit(0 if needs_venv(selected_tools(), selected_workloads()) else 1)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupted)
    try:
        main()
    except KeyboardInterrupt:
        log("bench: interrupted")
        sys.exit(130)
