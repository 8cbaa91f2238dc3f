"""The Rust test origin (crates/origin, the `haul-origin` binary) on
127.0.0.1, started and stopped by each test that asks for it."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Iterator, List, Optional

import pytest

ROOT = Path(__file__).resolve().parents[2]
FLAGS = ROOT / "tests" / "fixtures" / "flags"


def origin_binary() -> Path:
    """`HAUL_ORIGIN`, or the workspace's debug build (built if missing)."""
    if "HAUL_ORIGIN" in os.environ:
        return Path(os.environ["HAUL_ORIGIN"])
    path = ROOT / "target" / "debug" / "haul-origin"
    if not path.exists():
        subprocess.run(["cargo", "build", "-q", "-p", "haul-origin"], cwd=ROOT, check=True)
    return path


class Origin:
    """One `haul-origin` process; `stop()` returns its closing stats line."""

    def __init__(self, args: List[str]) -> None:
        self.proc = subprocess.Popen(
            [str(origin_binary()), "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        m = re.match(r"listening (http://127\.0\.0\.1:\d+)/?", line)
        if not m:
            self.proc.kill()
            raise RuntimeError(f"haul-origin did not start: {line!r}")
        self.base = m.group(1)
        self.closing: Optional[str] = None

    def url(self, path: str) -> str:
        return self.base + path

    def stop(self) -> str:
        if self.closing is None:
            self.proc.terminate()
            _, err = self.proc.communicate(timeout=10)
            self.closing = err
        return self.closing

    def requests(self) -> int:
        """Requests served, once stopped."""
        m = re.search(r"haul-origin: (\d+) requests", self.stop())
        assert m, self.stop()
        return int(m.group(1))


@pytest.fixture
def origin() -> Iterator[Origin]:
    o = Origin([])
    yield o
    o.stop()


@pytest.fixture
def start_origin() -> Iterator["callable[..., Origin]"]:  # type: ignore[valid-type]
    started: List[Origin] = []

    def start(*args: str) -> Origin:
        o = Origin(list(args))
        started.append(o)
        return o

    yield start
    for o in started:
        o.stop()


def verify(out: Path, pairs: List["tuple[str, str]"]) -> None:
    """Checks each `out/NAME` holds exactly what the origin serves for
    `PATH_AND_QUERY` (`haul-origin verify`)."""
    listing = out.parent / f".{out.name}.verify"
    listing.write_text("".join(f"{p}\t{n}\n" for p, n in pairs))
    done = subprocess.run(
        [str(origin_binary()), "verify", str(out), str(listing)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


class S3:
    """moto's S3 server (`HAUL_MOTO_SERVER`, or `moto_server` on PATH; the
    tests fail without it: `pip install 'moto[server]'`)."""

    def __init__(self) -> None:
        import shutil
        import socket
        import time

        binary = os.environ.get("HAUL_MOTO_SERVER") or shutil.which("moto_server")
        if not binary:
            raise RuntimeError("moto's S3 server is missing: pip install 'moto[server]'")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen(
            [binary, "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.05)
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def request(self, method: str, target: str) -> "tuple[int, bytes]":
        """An HTTP/1.0 request with a made-up signature: moto takes any,
        and refuses private objects to a request without one."""
        import socket

        with socket.create_connection(("127.0.0.1", self.port)) as s:
            s.sendall(
                f"{method} {target} HTTP/1.0\r\nHost: 127.0.0.1:{self.port}\r\n"
                "Content-Length: 0\r\nAuthorization: AWS4-HMAC-SHA256 "
                "Credential=k/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, "
                "Signature=00\r\n\r\n".encode()
            )
            data = b""
            while chunk := s.recv(1 << 16):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split()[1]), body

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def s3() -> Iterator[S3]:
    server = S3()
    try:
        yield server
    finally:
        server.stop()
