#!/usr/bin/env python3
"""Download every URL of a list through haul's Python API: the benchmark's
`haul-py` tool, the script a Python user of the package would write (issue
16), to set against the asyncio + aiohttp script (aiohttp_fetch.py) that
does the same job by hand.

It hands the list's path to `haul.download` with the same transfers in
flight and retries as the other tools and otherwise keeps the package's
defaults (a manifest in a temporary directory, files synced, job state in
DIR/.haul). Exit status: 0 when every URL was saved, 1 otherwise.

    bench/out/py-venv/bin/python haul_api.py -i urls.txt -o DIR [-j 64] [--retries 5]
"""

import argparse
import sys

import haul


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-i", "--input", required=True, help="URL list, one per line")
    parser.add_argument("-o", "--output", default=".", help="output directory")
    parser.add_argument("-j", "--jobs", type=int, default=64)
    parser.add_argument("--retries", type=int, default=5)
    args = parser.parse_args()

    result = haul.download(args.input, args.output, jobs=args.jobs, retries=args.retries)
    if result.failed:
        print(f"{result.failed} failed: {result.failures}", file=sys.stderr)
    return 0 if result.failed == 0 and not result.interrupted else 1


if __name__ == "__main__":
    sys.exit(main())
