#!/usr/bin/env bash
# Set up (if needed) and run the test suite. Extra arguments go to pytest
# (e.g. `-m slow` for the slow tests, `-k conformance`).
#
# Test files run on parallel pytest-xdist workers, one file per worker at a time (module and
# session fixtures are built once per worker): one worker per core, at most 4, or
# IL2PKPD_TEST_WORKERS of them (0: no workers, everything in this process).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cores=$(nproc 2>/dev/null || echo 2)
workers=${IL2PKPD_TEST_WORKERS:-$(( cores < 4 ? cores : 4 ))}
if ! [[ "$workers" =~ ^[0-9]+$ ]]; then
  echo "error: IL2PKPD_TEST_WORKERS must be a whole number, got '$workers'" >&2
  exit 2
fi
parallel=()
if [ "$workers" -gt 1 ]; then
  parallel=(-n "$workers" --dist loadfile)
fi
exec .venv/bin/python -m pytest "${parallel[@]}" "$@"
