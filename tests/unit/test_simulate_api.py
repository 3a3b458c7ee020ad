"""simulate(): labelled output, parameters (typical, overrides, draws, tables, IIV), errors."""

from __future__ import annotations

import numpy as np
import pytest

import il2pkpd
from il2pkpd import ModelSpecError, RegimenError, ShapeError, SolverError

T = np.arange(0.0, 49.0, 1.0)


def test_output_has_named_dims_and_units(pk1):
    ds = il2pkpd.simulate(pk1, "100 mg po q12h x4", T)
    assert ds["cp"].dims == ("subject", "time")
    assert ds["cp"].attrs["unit"] == "mg/L" and ds["central"].attrs["unit"] == "mg"
    assert ds["time"].attrs["unit"] == "h"
    assert ds["ka"].attrs["kind"] == "parameter"
    assert int(ds["status"].values[0]) == 0
    assert "not observed data" in ds.attrs["simulated"]


def test_times_in_another_unit_are_converted(ivory):
    a = il2pkpd.simulate(ivory, "1.5 MIU sc once", np.array([0.0, 24.0, 48.0]), time_unit="h")
    b = il2pkpd.simulate(ivory, "1.5 MIU sc once", np.array([0.0, 1.0, 2.0]))
    np.testing.assert_allclose(a["treg_fold"].values, b["treg_fold"].values, rtol=1e-12)
    assert a["time"].attrs["unit"] == "h"


def test_params_override_by_name_or_label(pk1):
    a = il2pkpd.simulate(pk1, "100 mg iv once", T, params={"CL": 2.0})
    b = il2pkpd.simulate(pk1, "100 mg iv once", T, params={"cl": 2.0})
    np.testing.assert_array_equal(a["cp"].values, b["cp"].values)
    np.testing.assert_allclose(a["cp"].values[0], 100 / 20 * np.exp(-0.1 * T), rtol=1e-7)


def test_parameter_draws_give_a_draw_dimension(pk1):
    ds = il2pkpd.simulate(pk1, "100 mg iv once", T, params={"cl": [1.0, 2.0, 4.0]}, n_subjects=2, iiv=False)
    assert ds["cp"].dims == ("draw", "subject", "time")
    np.testing.assert_allclose(ds["cp"].sel(draw=2, subject=1).values, 5 * np.exp(-0.2 * T), rtol=1e-7)


def test_subject_table_sets_individual_values(pk1):
    table = {"ID": [1, 2], "CL": [1.0, 3.0]}
    ds = il2pkpd.simulate(pk1, "100 mg iv once", T, subject_params=table)
    assert ds.sizes["subject"] == 2
    np.testing.assert_allclose(ds["cl"].values, [1.0, 3.0])


def test_iiv_is_reproducible_with_a_seed_and_follows_omega(pk1):
    a = il2pkpd.simulate(pk1, "100 mg po once", T, n_subjects=2000, seed=7)
    b = il2pkpd.simulate(pk1, "100 mg po once", T, n_subjects=2000, seed=7)
    np.testing.assert_array_equal(a["cl"].values, b["cl"].values)
    sd = np.std(np.log(a["cl"].values / pk1.typical_values["cl"]))
    assert sd == pytest.approx(0.3, rel=0.06)  # omega of cl in pk1_oral.toml; 2000 draws: SE ~1.6%


def test_unknown_parameter_is_named(pk1):
    with pytest.raises(ModelSpecError, match="'clearance'"):
        il2pkpd.simulate(pk1, "100 mg po once", T, params={"clearance": 1.0})


def test_parameter_outside_bounds_is_refused(pk1):
    with pytest.raises(ModelSpecError, match=r"`cl` must lie within \[0.0, inf\] L/h, got -1.0"):
        il2pkpd.simulate(pk1, "100 mg po once", T, params={"cl": -1.0})


def test_bad_times_and_subject_counts_are_refused(pk1):
    with pytest.raises(ShapeError, match="sorted"):
        il2pkpd.simulate(pk1, "100 mg po once", [2.0, 1.0])
    with pytest.raises(ShapeError, match="n_subjects"):
        il2pkpd.simulate(pk1, "100 mg po once", T, n_subjects=0)
    with pytest.raises(RegimenError, match="`times` must be given"):
        il2pkpd.simulate(pk1, "100 mg po once")


def test_solver_failure_raises_or_reports_status(pk1):
    # max_steps=2 cannot cover 48 h of a fast absorption: a failure, not a crash
    with pytest.raises(SolverError, match=r"subject 1 near t=.*maximum number of solver steps"):
        il2pkpd.simulate(pk1, "100 mg po once", T, params={"ka": 50.0}, max_steps=2)
    ds = il2pkpd.simulate(pk1, "100 mg po once", T, params={"ka": 50.0}, max_steps=2, throw=False)
    assert int(ds["status"].values[0]) == il2pkpd.SolveStatus.MAX_STEPS


def test_invalid_modelled_rate_is_a_status_not_a_nan(pk1):
    from il2pkpd.dosing import Record, Records

    recs = [Records([Record(0, 1, 100.0, 2, rate=-1.0)], subject="A")]
    with pytest.raises(SolverError, match="subject 'A'.*invalid dose parameter"):
        il2pkpd.simulate(pk1, recs, T)  # R2 = 0 in pk1_oral: a RATE=-1 dose cannot be given


def test_bad_solver_options_are_refused_with_the_value(pk1):
    from il2pkpd import OptionError

    with pytest.raises(OptionError, match="'rk4'"):
        il2pkpd.simulate(pk1, "100 mg po once", T, solver="rk4")
    with pytest.raises(OptionError, match=r"`rtol` must be in \(0, 1\), got 0.0"):
        il2pkpd.simulate(pk1, "100 mg po once", T, rtol=0.0)


def test_residual_error_follows_the_error_model(ivory):
    # tbr: additive SD 0.11 (ivory.toml, from BRIEF S82); treg: proportional 0.15
    ds = il2pkpd.simulate(ivory, "1.5 MIU sc qd x5", np.array([0.0, 5.0]), n_subjects=4000, iiv=False, seed=3, residual_error=True)
    resid = ds["tbr_obs"].values - ds["tbr"].values
    assert resid.std() == pytest.approx(0.11, rel=0.03)  # 8000 draws: SE of an SD ~0.8%
    ratio = ds["treg_obs"].values[:, 1] / ds["treg_fold"].values[:, 1] - 1
    assert ratio.std() == pytest.approx(0.15, rel=0.04)
    assert ds["tbr_obs"].attrs["kind"] == "simulated observation"
    again = il2pkpd.simulate(ivory, "1.5 MIU sc qd x5", np.array([0.0, 5.0]), n_subjects=4000, iiv=False, seed=3, residual_error=True)
    np.testing.assert_array_equal(again["tbr_obs"].values, ds["tbr_obs"].values)
