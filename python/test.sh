#!/usr/bin/env bash
# The Python package's tests: a venv with maturin, pytest, mypy, pandas,
# pyarrow and tqdm; the package built in it (debug, sharing the workspace's
# target/); pytest against the Rust test origin; mypy --strict on the
# package and on the README's Python examples.
#
#   python/test.sh                 # venv in $HAUL_VENV, else target/py-venv
set -euo pipefail
cd "$(dirname "$0")"
root=$(cd .. && pwd)
venv=${HAUL_VENV:-$root/target/py-venv}
if [[ ! -x $venv/bin/python ]]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check \
  'maturin>=1.9,<2' pytest mypy pandas pyarrow tqdm
cargo build -q --locked -p haul-origin
# maturin develop installs into the venv it runs from.
VIRTUAL_ENV=$venv PATH=$venv/bin:$PATH "$venv/bin/maturin" develop -q --locked
HAUL_ORIGIN=$root/target/debug/haul-origin "$venv/bin/python" -m pytest -q tests "$@"
"$venv/bin/python" -m mypy --strict haul
