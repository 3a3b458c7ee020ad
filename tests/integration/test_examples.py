"""The README's example data and commands work (the files are synthetic, see examples/README.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

from il2pkpd.io.adam import from_adam, read_adam
from il2pkpd.io.nonmem import from_dataframe, read_nonmem_csv

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_nonmem_example_predicts_from_the_command_line(tmp_path, pk1):
    data = EXAMPLES / "nonmem" / "pk1_oral_synthetic.csv"
    assert read_nonmem_csv(data).problems(pk1, require_dv=True) == []
    out = tmp_path / "pred.csv"
    res = subprocess.run([sys.executable, "-m", "il2pkpd", "predict", "--model", "pk1_oral", "--data", str(data), "--out", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    pred = pd.read_csv(out)
    obs = pred[pred.EVID == 0]
    # the data were simulated from pk1_oral with IIV and 10% proportional error: typical
    # predictions sit within a factor of 2.5 of every observation
    ratio = obs.DV / obs.PRED
    assert ratio.between(0.4, 2.5).all()


def test_adam_example_reads_into_a_valid_table(ivory):
    table = from_adam(read_adam(EXAMPLES / "adam"), ivory)
    assert table.ID.nunique() == 3 and (table.SIMULATED == 1).all()
    assert from_dataframe(table).problems(ivory) == []
