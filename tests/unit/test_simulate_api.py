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


# ---- issue 12: one-line errors naming the argument, exact extrema, CLI hints, progress -------

def test_non_numeric_parameter_value_names_the_parameter(pk1):
    # was a bare ValueError("could not convert string to float: 'fast'")
    with pytest.raises(ModelSpecError, match=r"parameter `cl` must be a number within \[0.0, inf\] L/h .*got 'fast' \(str\)"):
        il2pkpd.simulate(pk1, "100 mg po once", T, params={"cl": "fast"})
    with pytest.raises(ModelSpecError, match=r"covariate `bsa` must be a number \(in m2\).*got 'big'"):
        il2pkpd.simulate("ivory", "1 MIU sc once", [0.0, 1.0], covariates={"bsa": "big"})


def test_negative_bsa_with_a_per_m2_dose_blames_bsa_not_amt(ivory):
    with pytest.raises(ModelSpecError, match=r"covariate `bsa` must be a finite number > 0 \(m2\) .*per-m2 dose.*got -1.7 \(subject 1\)") as info:
        il2pkpd.simulate(ivory, "1 MIU/m2 sc once", [0.0, 1.0], covariates={"bsa": -1.7})
    assert "AMT" not in str(info.value)


def test_solver_failure_hints_name_the_callers_options(pk1):
    # the command line has no throw= and no solver='rodas4': its hint names its flags
    with pytest.raises(SolverError) as py:
        il2pkpd.simulate(pk1, "100 mg po once", T, params={"ka": 50.0}, max_steps=2)
    assert "solver='rodas4'" in str(py.value) and "throw=False" in str(py.value)
    with pytest.raises(SolverError) as cli:
        il2pkpd.simulate(pk1, "100 mg po once", T, params={"ka": 50.0}, max_steps=2, hint_style="cli")
    msg = str(cli.value)
    assert "--solver rodas4" in msg and "--max-steps" in msg and "--rtol/--atol" in msg
    assert "throw=" not in msg and "solver='" not in msg and "max_steps" not in msg


def _oral_peak(ka, ke, v, dose=100.0):
    """One-compartment first-order absorption (F = 1): tmax = ln(ka/ke)/(ka - ke) and
    Cmax = dose/V * ka/(ka - ke) * (exp(-ke tmax) - exp(-ka tmax)), the closed forms."""
    tmax = np.log(ka / ke) / (ka - ke)
    return dose / v * ka / (ka - ke) * (np.exp(-ke * tmax) - np.exp(-ka * tmax)), tmax


def test_extrema_of_an_oral_dose_match_the_closed_form_on_a_coarse_grid(pk1):
    ds = il2pkpd.simulate(pk1, "100 mg po once", np.arange(0.0, 25.0, 6.0), extrema=True)
    cmax, tmax = _oral_peak(1.0, 1.0 / 20.0, 20.0)  # pk1_oral.toml: ka 1/h, CL 1 L/h, V 20 L
    assert ds["cp"].values.max() < 0.92 * cmax  # the 6-hour grid misses the peak by 9%
    np.testing.assert_allclose(ds["cp_max"].values, cmax, rtol=1e-7)
    np.testing.assert_allclose(ds["cp_tmax"].values, tmax, atol=1e-5)
    assert float(ds["cp_min"].values[0]) == 0.0 and float(ds["cp_tmin"].values[0]) == 0.0  # before absorption
    assert ds["cp_max"].attrs["unit"] == "mg/L" and ds["cp_tmax"].attrs["unit"] == "h"
    assert ds["cp_max"].attrs["located"].startswith("by the solver")


def test_extrema_follow_each_draw_and_subject(pk1):
    ds = il2pkpd.simulate(pk1, "100 mg po once", np.arange(0.0, 25.0, 8.0), params={"cl": [0.5, 2.0]}, n_subjects=3,
                          seed=4, extrema=["cp"])
    assert ds["cp_max"].dims == ("draw", "subject")
    ka, ke = ds["ka"].values, ds["cl"].values / ds["v"].values
    cmax, tmax = _oral_peak(ka, ke, ds["v"].values)
    np.testing.assert_allclose(ds["cp_max"].values, cmax, rtol=1e-7)
    np.testing.assert_allclose(ds["cp_tmax"].values, tmax, atol=1e-5)


def test_extrema_of_iv_boluses_peak_after_a_dose_and_trough_just_before_one(pk1):
    # bolus superposition C(t) = sum_i D/V exp(-ke (t - t_i)): the maximum is right after the
    # last dose; the infimum is the limit just before the second dose, D/V exp(-12 ke)
    ds = il2pkpd.simulate(pk1, "100 mg iv q12h x4", np.arange(0.0, 48.0, 5.0), extrema=True)
    ke = 0.05
    np.testing.assert_allclose(ds["cp_max"].values, 5.0 * sum(np.exp(-ke * (36.0 - 12.0 * i)) for i in range(4)), rtol=1e-7)
    np.testing.assert_allclose(ds["cp_tmax"].values, 36.0, atol=1e-9)
    np.testing.assert_allclose(ds["cp_min"].values, 5.0 * np.exp(-12.0 * ke), rtol=1e-7)
    np.testing.assert_allclose(ds["cp_tmin"].values, 12.0, atol=1e-6)


def test_extrema_of_an_infusion_peak_at_its_end(pk1):
    # zero-order input R = 40 mg/h for 2.5 h: C(T) = R/CL (1 - exp(-ke T)) at the end (a kink)
    ds = il2pkpd.simulate(pk1, "100 mg iv over 2.5h once", np.arange(0.0, 25.0, 6.0), extrema=True)
    np.testing.assert_allclose(ds["cp_max"].values, 40.0 / 1.0 * (1 - np.exp(-0.05 * 2.5)), rtol=1e-7)
    np.testing.assert_allclose(ds["cp_tmax"].values, 2.5, atol=1e-6)


def test_extrema_of_a_dataset_at_its_records_span_each_subject(pk1):
    from il2pkpd.dosing import Record, Records

    recs = [Records([Record(0.0, 1, 100.0, 1, row=0), Record(12.0, 0, cmt=2, row=1)], subject="A"),
            Records([Record(0.0, 1, 100.0, 1, row=0), Record(2.0, 0, cmt=2, row=1)], subject="B")]
    ds = il2pkpd.simulate(pk1, recs, extrema=["cp"], iiv=False)
    cmax, tmax = _oral_peak(1.0, 0.05, 20.0)
    np.testing.assert_allclose(ds["cp_max"].values[0], cmax, rtol=1e-7)  # A: the peak lies within its 12 h
    c2 = 5.0 / 0.95 * (np.exp(-0.05 * 2.0) - np.exp(-2.0))  # B's records end at 2 h, before the peak
    np.testing.assert_allclose(ds["cp_max"].values[1], c2, rtol=1e-9)
    np.testing.assert_allclose(ds["cp_tmax"].values, [tmax, 2.0], atol=1e-5)


def test_progress_is_reported_per_block_and_changes_no_number(pk1):
    seen = []
    kw = dict(params={"cl": np.linspace(0.5, 2.0, 7)}, n_subjects=3, seed=1, extrema=True)
    a = il2pkpd.simulate(pk1, "100 mg po once", T, progress=lambda done, total: seen.append((done, total)), **kw)
    b = il2pkpd.simulate(pk1, "100 mg po once", T, **kw)
    total = 21 * 5  # 21 solves, and 4 more each for the extrema
    assert seen[0] == (0, total) and seen[-1] == (total, total) and len(seen) > 5
    assert all(x[0] <= y[0] for x, y in zip(seen, seen[1:]))
    np.testing.assert_allclose(a["cp"].values, b["cp"].values, rtol=1e-12)
    np.testing.assert_allclose(a["cp_max"].values, b["cp_max"].values, rtol=1e-12)


def test_dataset_without_covariate_columns_is_simulated_at_file_values_with_a_warning(tmp_path):
    """simulate()/predict() on a dataset lacking a covariate column used the model file's
    value without a word (issue 12: nothing falls back to a default unseen)."""
    import warnings

    from il2pkpd.errors import Il2pkpdWarning
    from il2pkpd.prediction import predict

    path = tmp_path / "d.csv"
    path.write_text("ID,TIME,EVID,AMT,CMT,DV,BSA\n1,0,1,1.5,1,.,1.8\n1,1,0,0,2,1,1.8\n")
    model = il2pkpd.load_model("ivory")
    data = il2pkpd.read_nonmem_csv(path)
    with pytest.warns(Il2pkpdWarning, match=r"no column for covariate\(s\) \['TACS'\].*t_acs0 = 7 day"):
        il2pkpd.simulate(model, data)
    with pytest.warns(Il2pkpdWarning, match=r"no column for covariate\(s\) \['TACS'\]"):
        predict(model, data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        il2pkpd.simulate(model, data, covariates={"t_acs0": 7.0})  # given explicitly: no warning
