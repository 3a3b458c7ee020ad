#!/usr/bin/env bash
# Create .venv (Python 3.12, from .python-version) and install il2pkpd with the locked
# versions of requirements.lock. Re-running is cheap: nothing is reinstalled unless
# pyproject.toml or requirements.lock changed.
set -euo pipefail
cd "$(dirname "$0")/.."

want=$(cat .python-version)
find_python() {
  for cand in "${PYTHON:-}" "$HOME/.pyenv/versions/$want/bin/python" "$(command -v pyenv >/dev/null && pyenv root 2>/dev/null)/versions/$want/bin/python" python3.12 python3; do
    [ -n "$cand" ] || continue
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 12) else 1)' 2>/dev/null; then
      echo "$cand"; return 0
    fi
  done
  return 1
}

stamp=.venv/.il2pkpd-installed
key=$(cat pyproject.toml requirements.lock | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key" ]; then
  exit 0
fi
py=$(find_python) || { echo "error: Python 3.12 not found (pyenv install $want, or set PYTHON=/path/to/python3.12)" >&2; exit 2; }
echo "setting up .venv with $py ($("$py" --version))" >&2
[ -x .venv/bin/python ] || "$py" -m venv .venv
log=.venv/setup.log
if ! { .venv/bin/python -m pip install --upgrade pip && .venv/bin/python -m pip install -c requirements.lock -e ".[test]"; } > "$log" 2>&1; then
  tail -30 "$log" >&2
  echo "error: installing il2pkpd failed; the full log is $log" >&2
  exit 2
fi
echo "$key" > "$stamp"
