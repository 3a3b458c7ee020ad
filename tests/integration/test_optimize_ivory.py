"""Regimen optimisation on the IVORY model (issue 15): the gradient through dose times and
amounts is finite, the total-dose cap is found, and the optimum's metric is what an
independent sweep of the same regimen reports."""

from __future__ import annotations

import numpy as np
import pytest

import il2pkpd
from il2pkpd.design.optimize import optimize_regimen


@pytest.fixture(scope="module")
def result():
    model = il2pkpd.load_model("ivory")
    return model, optimize_regimen(model, objective="maximise E(cmax(treg_fold))",
                                   constraints=["E(cmax(nk_fold)) <= 1.5", "total_dose <= 20"], space="dose=0.1..3; interval=3d,7d",
                                   regimen="{dose} MIU sc qd x5 then {dose} MIU sc q{interval} x6", horizon=90.0)


def test_the_total_dose_cap_binds_and_dosing_is_denser(result):
    """The Treg peak rises with dose and with dose density over this range, and NK stays
    under its cap: the optimum spends the whole 20 MIU (11 doses of 20/11) every 3 days."""
    _, r = result
    assert r.feasible and r.values["interval"] == "3d"
    assert float(r.values["dose"]) == pytest.approx(20.0 / 11.0, rel=1e-6)
    cons = {c["text"]: c for c in r.constraints}
    assert cons["total_dose <= 20"]["active"] and not cons["E(cmax(nk_fold)) <= 1.5"]["active"]
    assert all(c["iterations"] > 0 and "successfully" in c["message"] for c in r.candidates)


def test_the_optimum_is_what_a_sweep_of_that_regimen_reports(result):
    model, r = result
    design = il2pkpd.SweepDesign("ivory", (("opt", r.regimen),), horizon=90.0, metrics=("cmax(treg_fold)", "cmax(nk_fold)"),
                                 solver="rodas4", rtol=1e-8, atol=1e-10, dense_step=1.0, grid_step=1.0)
    row = il2pkpd.sweep(design).table.iloc[0]
    # both sample day 0..90 daily and 1-24 h after each dose; the sweep's tolerance is tighter
    assert row["cmax(treg_fold)"] == pytest.approx(r.objective["value"], rel=1e-4)
    assert row["cmax(nk_fold)"] == pytest.approx(r.constraints[0]["value"], rel=1e-4)
    assert np.isfinite(r.quantities[0]["mean"])
