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
