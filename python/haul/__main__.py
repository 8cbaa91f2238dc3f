"""``haul``: the command line, the same program as the ``haul`` binary."""

from __future__ import annotations

import sys

from haul._haul import cli


def main() -> None:
    """Run ``haul`` with the process's arguments and exit with its status."""
    sys.exit(cli(sys.argv[1:]))


if __name__ == "__main__":
    main()
