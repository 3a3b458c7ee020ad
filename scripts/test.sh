#!/usr/bin/env bash
# Set up (if needed) and run the test suite. Extra arguments go to pytest
# (e.g. `-m slow` for the slow tests, `-k conformance`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
