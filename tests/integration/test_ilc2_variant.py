"""The ILC2 variant (models/ivory_ilc2.toml, issue 16): it extends ivory.toml without changing
it, its ILC2 -> IL-5 -> eosinophil chain reaches the steady state its equations give, its
observations simulate, and its claims (models/claims/ivory_ilc2.toml) hold as recorded at the
file's values and over prior draws (no human data inform it: a prior-predictive check)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import il2pkpd
from il2pkpd.errors import ModelSpecError
from il2pkpd.io.claims import check_claims, claims_path, load_claims

IVORY = "1.5 MIU sc qd x5 then 1.5 MIU sc qw x7"


@pytest.fixture(scope="module")
def variant():
    return il2pkpd.load_model("ivory_ilc2")


def test_the_variant_is_ivory_plus_its_own_parts(variant):
    base = il2pkpd.load_model("ivory")
    assert [s.name for s in variant.states[: len(base.states)]] == [s.name for s in base.states]
    assert {p.name for p in base.parameters} < {p.name for p in variant.parameters}
    t = np.arange(0.0, 120.0, 1.0)
    a, b = il2pkpd.simulate(variant, IVORY, t), il2pkpd.simulate(base, IVORY, t)
    for out in ("conc", "treg_fold", "nk_fold", "tbr", "surv_mi"):
        # the solver's steps differ (more states in its error norm): equal to its tolerance,
        # with concentrations' round-off between doses (~1e-8 pM) below the absolute floor
        want = b[out].values
        np.testing.assert_allclose(a[out].values, want, rtol=1e-6, atol=1e-7 * np.abs(want).max(), err_msg=out)


def test_constant_exposure_reaches_the_chains_steady_state(variant):
    """At a constant IL-2 concentration (a 60-day infusion, with the Treg and CD25 feedback on
    clearance switched off so that it stays constant) the equations' steady state is
    ilc2 = il5 = 1 + emax s and eos = (1 + emax s)^gamma, s the ILC2 signal at that concentration."""
    over = {"kprol": 0.0, "e_cd": 0.0, "gamma_eos": 1.7}
    ds = il2pkpd.simulate(variant, "20 MIU iv over 60d once", np.arange(0.0, 60.01, 1.0), params=over)
    p = variant.typical_values | over
    c = ds["conc"].values[0, -1]
    ilc2 = 1 + p["emax_ilc2"] * c ** p["hill"] / (p["ec50_ilc2"] ** p["hill"] + c ** p["hill"])
    assert ds["ilc2_fold"].values[0, -1] == pytest.approx(ilc2, rel=1e-6)
    assert ds["il5_fold"].values[0, -1] == pytest.approx(ilc2, rel=1e-6)
    assert ds["eos_fold"].values[0, -1] == pytest.approx(ilc2 ** 1.7, rel=1e-6)
    assert ds["eos_count"].values[0, -1] == pytest.approx(p["eos0"] * ilc2 ** 1.7, rel=1e-6)


def test_its_observations_simulate_with_residual_error(variant):
    ds = il2pkpd.simulate(variant, IVORY, [0.0, 7.0, 90.0], n_subjects=20, seed=1, residual_error=True)
    for name in ("il5_obs", "eos_obs", "lvef_obs"):
        assert np.isfinite(ds[name].values).all(), name
    # LVEF (additive error 4 points) moves around its prediction; eosinophils stay positive
    assert 0 < np.std(ds["lvef_obs"].values - ds["ef"].values) < 10 and (ds["eos_obs"].values > 0).all()


def test_claims_hold_as_recorded_at_the_values_and_over_prior_draws(variant):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = check_claims(variant, load_claims(claims_path(variant), variant), prior=100)
    assert (r["typical_verdict"] == r["recorded_typical"]).all(), r[["typical_value", "typical_verdict", "recorded_typical"]]
    assert (r["prior_verdict"] == r["recorded_prior"]).all(), r[["prior_median", "prior_share_inside", "prior_verdict", "recorded_prior"]]
    assert (r["prior_undefined"] == 0).all() and (r["prior_draws"] == 100).all()


def test_extends_adds_and_overrides_and_refuses_what_it_cannot_do(tmp_path):
    from il2pkpd.io.model_file import _resolve

    (tmp_path / "base.toml").write_text(_resolve("pk1_oral").read_text())
    (tmp_path / "v.toml").write_text('[model]\nextends = "base"\nname = "v"\n\n[parameters.cl]\nvalue = 3.0\nunit = "L/h"\nlower = 0.0\n')
    v = il2pkpd.load_model(tmp_path / "v.toml")
    base = il2pkpd.load_model("pk1_oral")
    assert v.name == "v" and v.parameter("cl").value == 3.0 and v.parameter("v").value == base.parameter("v").value
    # the redefined entry keeps what it does not say: prior, IIV, label, bounds
    for key in ("prior", "iiv", "label", "lower", "unit"):
        assert getattr(v.parameter("cl"), key) == getattr(base.parameter("cl"), key), key
    (tmp_path / "same.toml").write_text('[model]\nextends = "base"\n')
    with pytest.raises(ModelSpecError, match="own.*name"):
        il2pkpd.load_model(tmp_path / "same.toml")
    (tmp_path / "a.toml").write_text('[model]\nextends = "b"\nname = "a"\n')
    (tmp_path / "b.toml").write_text('[model]\nextends = "a"\nname = "b"\n')
    with pytest.raises(ModelSpecError, match="cycle"):
        il2pkpd.load_model(tmp_path / "a.toml")
    (tmp_path / "c.toml").write_text('[model]\nextends = "no_such_model"\nname = "c"\n')
    with pytest.raises(ModelSpecError, match="no_such_model"):
        il2pkpd.load_model(tmp_path / "c.toml")
    (tmp_path / "d.toml").write_text('[model]\nextends = "base"\nname = "d"\n\n[extras]\nx = 1\n')
    with pytest.raises(ModelSpecError, match="unknown sections.*extras"):
        il2pkpd.load_model(tmp_path / "d.toml")
