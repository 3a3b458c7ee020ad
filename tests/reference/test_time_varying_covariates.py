"""Time-varying covariates follow NONMEM's rule (next observation carried backward).

A covariate value on a record applies over the interval from the previous record up to that
record (mrgsolve reproduces NONMEM with ``nocb = TRUE``). Oracle: the piecewise-exponential
closed form of an IV bolus whose clearance doubles when weight doubles.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import il2pkpd
from il2pkpd.io.nonmem import from_dataframe
from il2pkpd.prediction import predict

MODEL = il2pkpd.build_model({
    "model": {"name": "wt_cl", "time_unit": "h"},
    "parameters": {"tvcl": {"value": 2.0, "unit": "L/h"}, "v": {"value": 20.0, "unit": "L"}},
    "constants": {"wt_ref": {"value": 70.0, "unit": "kg"}},
    "covariates": {"wt": {"value": 70.0, "unit": "kg", "label": "WT"}},
    "states": {"central": {"unit": "mg", "dose": True}},
    "odes": {"central": "-tvcl*(wt/wt_ref)/v*central"},
    "outputs": {"cp": {"expr": "central/v", "unit": "mg/L"}},
})


def test_covariate_change_applies_back_to_the_previous_record():
    times = np.arange(0.0, 11.0)
    wt = np.where(times >= 5, 140.0, 70.0)  # the record at t=5 carries the new weight
    table = pd.DataFrame({
        "ID": 1, "TIME": np.concatenate([[0.0], times[1:]]),
        "EVID": [1] + [0] * 10, "AMT": [100.0] + [0.0] * 10, "CMT": 1, "WT": wt,
    })
    out = predict(MODEL, from_dataframe(table))
    k1, k2 = 2.0 / 20.0, 4.0 / 20.0
    # NOCB: weight 140 applies over (4, 5] already, i.e. from the previous record at t=4
    want = np.where(times <= 4, 5.0 * np.exp(-k1 * times), 5.0 * np.exp(-k1 * 4) * np.exp(-k2 * (times - 4)))
    np.testing.assert_allclose(out.PRED.to_numpy(), want, rtol=1e-7)


def test_missing_time_varying_covariate_is_refused_with_the_row():
    table = pd.DataFrame({"ID": 1, "TIME": [0.0, 1.0, 2.0], "EVID": [1, 0, 0], "AMT": [100.0, 0, 0], "CMT": 1, "WT": [70.0, np.nan, 80.0]})
    with pytest.raises(il2pkpd.DataFormatError, match="`WT` is missing on row 2"):
        predict(MODEL, from_dataframe(table))


def test_simulate_on_the_dataset_uses_the_same_rule():
    table = pd.DataFrame({"ID": 1, "TIME": np.arange(0.0, 11.0), "EVID": [1] + [0] * 10, "AMT": [100.0] + [0.0] * 10, "CMT": 1,
                          "WT": np.where(np.arange(11) >= 5, 140.0, 70.0)})
    data = from_dataframe(table)
    ds = il2pkpd.simulate(MODEL, data)
    np.testing.assert_allclose(ds["cp"].values[0], predict(MODEL, data).PRED.to_numpy(), rtol=1e-12)
    with pytest.raises(il2pkpd.DataFormatError, match="change between records"):
        il2pkpd.simulate(MODEL, data, np.arange(0.0, 5.0))
