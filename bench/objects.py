#!/usr/bin/env python3
"""Object-store output (issue 18): the same jobs to local disk and to a local
S3-compatible server, in one run.

    cargo build --release -p haul -p haul-origin && python3 bench/objects.py

Starts haul-origin and an S3 server on 127.0.0.1: s3s-fs (a Rust S3 server
over a directory; OBJECTS_S3S=/path/to/s3s-fs, built with `cargo install
s3s-fs@0.14.1 --features binary`) when given, else moto's server (the one the
tests use; OBJECTS_MOTO, default moto_server on PATH), which is Python and
slower than haul, so its figures measure moto. Two workloads, each to disk
and to the bucket:

- small: OBJECTS_N (10,000) x 10 KiB, -j 64;
- large: 4 x 256 MiB (OBJECTS_LARGE_MB), with haul's peak RSS.

Every object is read back and compared byte for byte with what the origin
serves (from s3s-fs's directory, or by GET from moto); files on disk are
checked with `haul-origin verify`. Prints one Markdown table. Everything it
starts it stops.
"""

from __future__ import annotations

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
N = int(os.environ.get("OBJECTS_N", 10000))
LARGE_MB = int(os.environ.get("OBJECTS_LARGE_MB", 256))
S3S = os.environ.get("OBJECTS_S3S")
MOTO = os.environ.get("OBJECTS_MOTO", "moto_server")
KEY, SECRET = "bench-key", "bench-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"objects.py: {proc.args[0]} did not start")
            time.sleep(0.05)


def http(port: int, method: str, target: str) -> tuple[int, bytes]:
    """One HTTP/1.0 request with a made-up signature (moto takes any)."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(
            f"{method} {target} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n"
            f"Authorization: AWS4-HMAC-SHA256 Credential={KEY}/20260101/us-east-1/s3/aws4_request, "
            "SignedHeaders=host, Signature=00\r\n\r\n".encode()
        )
        data = b""
        while chunk := s.recv(1 << 20):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


class S3Server:
    def __init__(self, scratch: Path) -> None:
        self.port = free_port()
        self.data = scratch / "s3-data"
        self.data.mkdir()
        if S3S:
            self.kind = "s3s-fs"
            argv = [S3S, "--host", "127.0.0.1", "--port", str(self.port),
                    "--access-key", KEY, "--secret-key", SECRET, str(self.data)]
        else:
            self.kind = "moto"
            argv = [MOTO, "-H", "127.0.0.1", "-p", str(self.port)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, self.proc)

    def bucket(self, name: str) -> None:
        if self.kind == "s3s-fs":
            (self.data / name).mkdir()
        else:
            status, body = http(self.port, "PUT", f"/{name}")
            assert status == 200, body

    def read(self, bucket: str, key: str) -> bytes | None:
        if self.kind == "s3s-fs":
            p = self.data / bucket / key
            return p.read_bytes() if p.is_file() else None
        status, body = http(self.port, "GET", f"/{bucket}/{key}")
        return body if status == 200 else None

    def env(self) -> dict[str, str]:
        return {**os.environ, "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET,
                "AWS_REGION": "us-east-1", "AWS_ENDPOINT": f"http://127.0.0.1:{self.port}",
                "AWS_ALLOW_HTTP": "true"}

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def expected(origin_port: int, path: str) -> bytes:
    """What a fresh origin serves for `path` (the verify route's source)."""
    status, body = 0, b""
    with socket.create_connection(("127.0.0.1", origin_port)) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(1 << 20):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    assert status == 200, head
    return body


def run_haul(args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one haul run."""
    t = time.monotonic()
    proc = subprocess.Popen([str(HAUL), "-q", *args], env=env, cwd=cwd)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - t
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"objects.py: haul {' '.join(args)} exited {status}")
    return wall, usage.ru_maxrss


def main() -> None:
    if not HAUL.exists() or not ORIGIN.exists():
        sys.exit("objects.py: cargo build --release -p haul -p haul-origin first")
    scratch = Path(tempfile.mkdtemp(prefix="haul-bench-objects-"))
    origin_port = free_port()
    origin = subprocess.Popen([str(ORIGIN), "--port", str(origin_port)], stdout=subprocess.DEVNULL)
    s3 = None
    rows = []
    try:
        wait_port(origin_port, origin)
        s3 = S3Server(scratch)
        s3.bucket("bench")
        work = {
            "small": [f"/file/s{i}.bin" for i in range(N)],
            "large": [f"/file/l{i}.bin?size={LARGE_MB << 20}" for i in range(4)],
        }
        for name, paths in work.items():
            urls = scratch / f"{name}.txt"
            urls.write_text("".join(f"http://127.0.0.1:{origin_port}{p}\n" for p in paths))
            total = sum(int(p.split("size=")[1]) if "size=" in p else 10240 for p in paths)
            disk = scratch / f"disk-{name}"
            d_wall, d_rss = run_haul(["-i", str(urls), "-o", str(disk), "-j", "64"],
                                     dict(os.environ), scratch)
            listing = scratch / f"{name}.verify"
            listing.write_text("".join(f"{p}\t{p.split('/')[-1].split('?')[0]}\n" for p in paths))
            subprocess.run([str(ORIGIN), "verify", str(disk), str(listing)], check=True,
                           stdout=subprocess.DEVNULL)
            shutil.rmtree(disk)
            s_wall, s_rss = run_haul(["-i", str(urls), "-o", f"s3://bench/{name}/", "-j", "64"],
                                     s3.env(), scratch)
            bad = 0
            for p in paths:
                key = f"{name}/{p.split('/')[-1].split('?')[0]}"
                if s3.read("bench", key) != expected(origin_port, p):
                    bad += 1
            verified = f"{len(paths) - bad}/{len(paths)}"
            if bad:
                print(f"objects.py: {bad} objects differ or are missing", file=sys.stderr)
            for target, wall, rss in (("disk", d_wall, d_rss), (f"S3 ({s3.kind})", s_wall, s_rss)):
                rows.append((name, target, wall, len(paths) / wall, total / wall / 1e6, rss / 1024,
                             verified if target != "disk" else f"{len(paths)}/{len(paths)}"))
            rows.append((name, "S3 / disk", s_wall / d_wall, None, None, None, ""))
    finally:
        if s3:
            s3.stop()
        origin.terminate()
        origin.wait()
        shutil.rmtree(scratch, ignore_errors=True)
    print("| workload | to | wall s | files/s | MB/s | peak RSS MB | verified |")
    print("|---|---|---|---|---|---|---|")
    for name, target, wall, fps, mbs, rss, ok in rows:
        if fps is None:
            print(f"| {name} | {target} | **{wall:.2f} x** | | | | |")
        else:
            print(f"| {name} | {target} | {wall:.2f} | {fps:,.0f} | {mbs:,.1f} | {rss:,.0f} | {ok} |")


if __name__ == "__main__":
    main()
