"""A progress callback of one's own: here, a line per second with each
busy host's window (transfers in flight / what the host allows)."""

import time

import haul

last = 0.0


def show(p: haul.Progress) -> None:
    global last
    if time.monotonic() - last >= 1:
        last = time.monotonic()
        hosts = ", ".join(f"{h} {n}/{w}" for h, n, w in p.hosts)
        print(f"{p.done}/{p.seen} files, {p.bytes / 1e6:.1f} MB; {hosts}")


result = haul.download("urls.txt", "downloads", progress=show)
