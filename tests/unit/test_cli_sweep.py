"""`il2pkpd sweep` (issue 12): Dask's log chatter is silenced, the README tells the default
number of workers as --help does, and the progress rate is never printed as 0."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# a Dask LocalCluster started as `il2pkpd sweep` starts it (after the CLI's logging set-up)
_CLUSTER = """
import logging, sys
from il2pkpd import cli
cli._main(debug={debug})
{quiet}
from distributed import Client, LocalCluster
cluster = LocalCluster(n_workers=1, processes=False, threads_per_worker=1, dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR)
client = Client(cluster)
client.close()
cluster.close()
print("done")
"""


def _cluster_stderr(debug: bool, quiet: bool) -> str:
    code = _CLUSTER.format(debug=debug, quiet="cli._quiet_dask()" if quiet else "")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "done" in res.stdout, res.stderr
    return res.stderr


def test_dask_info_lines_are_silenced_unless_debug():
    assert "INFO distributed" in _cluster_stderr(debug=False, quiet=False)  # what the sweep printed (~34 lines)
    assert "distributed" not in _cluster_stderr(debug=False, quiet=True)


def test_readme_states_the_default_workers_as_help_does():
    from typer.testing import CliRunner

    from il2pkpd.cli import app

    help_text = " ".join(CliRunner().invoke(app, ["sweep", "--help"], terminal_width=400).stdout.split())
    assert "default: one per CPU core" in help_text
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "one worker per CPU core" in readme
    assert not re.search(r"`--workers 0` \(default\)", readme)


def test_sweep_rate_keeps_three_significant_digits():
    from il2pkpd.cli import _sig3

    assert _sig3(2 / 38.6) == "0.0518"  # 2 solves in 38.6 s was printed as "0 solves/s"
    assert _sig3(12.345) == "12.3" and _sig3(1234.5) == "1,234"
