"""The IVORY model over a year of the IVORY regimen agrees with SciPy LSODA (rtol 1e-10).

Both the explicit (Tsit5) and the Rosenbrock (Rodas4) solvers are checked.
Oracle: ``il2pkpd.solve.solve_scipy`` (SciPy ``solve_ivp`` LSODA, rtol 1e-10, atol 1e-14),
an independent event loop. Every output must agree within relative 1e-5; values below
0.1% of an output's largest magnitude over the year (concentrations between weekly doses,
which fall to ~1e-10 pM) are compared at that floor, where a relative error has no meaning.
"""

from __future__ import annotations

import numpy as np
import pytest

import il2pkpd
from il2pkpd.dosing import Records
from il2pkpd.solve import solve_scipy

IVORY = "1.5 MIU sc qd x5 then 1.5 MIU sc qw x7"


@pytest.fixture(scope="module", params=["tsit5", "rodas4"])
def both(ivory, request):
    reg = il2pkpd.parse_regimen(IVORY)
    times = np.concatenate([np.arange(0, 60, 0.25), np.arange(60, 366, 1.0)])
    theta = [p.value for p in ivory.parameters]
    cov = [c.value for c in ivory.covariates]
    ref, _ = solve_scipy(ivory, Records(reg.to_records(ivory)), theta, cov, times, method="LSODA", rtol=1e-10, atol=1e-14)
    ds = il2pkpd.simulate(ivory, reg, times, solver=request.param)
    return ds, ref


def test_every_ivory_output_matches_lsoda(ivory, both):
    ds, ref = both
    for j, name in enumerate(ivory.symbolic.output_names):
        got, want = ds[name].values[0], ref[:, j]
        floor = 1e-3 * np.max(np.abs(want)) if np.max(np.abs(want)) > 0 else 1e-30
        err = np.abs(got - want) / np.maximum(np.abs(want), floor)
        assert err.max() <= 1e-5, f"output {name}: max relative error {err.max():.2e}"


def test_ivory_dose_schedule_is_days_1_to_5_then_weekly(ivory):
    times = il2pkpd.parse_regimen(IVORY).dose_times("day")
    assert times == [0, 1, 2, 3, 4, 11, 18, 25, 32, 39, 46, 53]  # BRIEF 1.2: days 1-5, 12, 19, ..., 54
