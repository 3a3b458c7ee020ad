"""``fit(method="focei")`` and ``il2pkpd fit --method focei`` (issue 14) from a CSV file to a fit
folder that ``load_fit`` reads and ``simulate(params=fit)`` uses.

Oracle: the maximum-likelihood estimate of the linear Gaussian model of
data/linear_growth.toml (``scipy.optimize`` on ``scipy.stats.multivariate_normal``), whose
FOCE-I objective is exact (test_marginal.py): the fit's typical values and OFV must be it.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import scipy.optimize
import scipy.stats

import il2pkpd
from il2pkpd.io.fits import load_fit, write_fit

from conftest import DATA

TIMES = np.array([0.0, 2.0, 4.0, 8.0])


def _dataset(path, n=16, seed=11):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(1, n + 1):
        y = 10.0 + rng.normal(0, 1.5) + (0.5 + rng.normal(0, 0.2)) * TIMES + rng.normal(0, 0.8, TIMES.size)
        rows += [{"ID": i, "TIME": t, "DV": v, "EVID": 0, "MDV": 0, "AMT": 0.0, "CMT": 1, "DVID": 1} for t, v in zip(TIMES, y)]
    table = pd.DataFrame(rows)
    table.to_csv(path, index=False)
    return [g.DV.to_numpy() for _, g in table.groupby("ID")]


def _ml(ys):
    def ofv(x):
        xm = np.column_stack([np.ones_like(TIMES), TIMES])
        cov = xm @ np.diag(np.exp(x[2:4])) @ xm.T + math.exp(2 * x[4]) * np.eye(TIMES.size)
        return sum(-2 * scipy.stats.multivariate_normal(xm @ x[:2], cov).logpdf(y) - TIMES.size * math.log(2 * math.pi) for y in ys)

    return scipy.optimize.minimize(ofv, np.array([10.0, 0.5, math.log(2.0), math.log(0.04), 0.0]), method="BFGS", options={"gtol": 1e-9})


def test_fit_method_focei_from_a_csv_to_a_fit_folder_and_simulate(tmp_path):
    ys = _dataset(tmp_path / "data.csv")
    oracle = _ml(ys)
    fit = il2pkpd.fit(DATA / "linear_growth.toml", tmp_path / "data.csv", method="focei", sir_samples=100, seed=3)
    assert fit.info["ofv"] == pytest.approx(oracle.fun, abs=1e-6)
    assert fit.estimates["base"] == pytest.approx(oracle.x[0], rel=1e-5)
    assert fit.estimates["slope"] == pytest.approx(oracle.x[1], rel=1e-5)
    assert fit.estimates["omega_base"] == pytest.approx(math.exp(oracle.x[2] / 2), rel=1e-4)  # SDs, as model files write them
    assert fit.estimates["sigma_y"] == pytest.approx(math.exp(oracle.x[4]), rel=1e-4)
    assert set(fit.summary.columns) >= {"estimate", "se", "rse_percent"}
    assert len(fit.info["ebe"]["eta"]) == 16 and fit.info["covariance_step"]["ok"]

    back = load_fit(write_fit(fit, tmp_path / "fit"), model=DATA / "linear_growth.toml")
    assert back.estimates == pytest.approx(fit.estimates)
    # SIR resamples are the fit's draws, labelled as what they are
    assert back.idata["posterior"].attrs["kind"].startswith("SIR resamples")
    draws = back.population_draws()
    assert {len(v) for v in draws.values()} == {20} and set(draws) == {"base", "slope", "omega_base", "omega_slope"}
    assert np.std(draws["base"]) > 0 and fit.info["sir"]["ess"] > 10
    sim = il2pkpd.simulate(DATA / "linear_growth.toml", regimen=None, times=[0.0, 4.0], params=back, n_subjects=2, seed=1)
    assert np.isfinite(np.asarray(sim["y"])).all()


def test_fit_iterates_sir_on_psns_schedule(tmp_path):
    """``sir_iterations=2``: two SIR iterations of ``sir_samples`` each, keeping 20% then 40%
    (PsN's schedule); the second iteration's resamples are the fit's draws, and their SDs
    agree with the covariance step's SEs of this near-normal linear model within 35% (40
    resamples; the oracle of test_estimation.py's SIR tests)."""
    from il2pkpd.errors import OptionError

    _dataset(tmp_path / "data.csv", n=16)
    fit = il2pkpd.fit(DATA / "linear_growth.toml", tmp_path / "data.csv", method="focei", sir_samples=100, sir_iterations=2, seed=3)
    rounds = fit.info["sir"]["iterations"]
    assert [(r["n_samples"], r["n_resamples"]) for r in rounds] == [(100, 20), (100, 40)]
    base = np.asarray(fit.idata["posterior"]["base"]).ravel()
    assert base.size == 40 and base.std(ddof=1) == pytest.approx(float(fit.summary.loc["base", "se"]), rel=0.35)
    with pytest.raises(OptionError, match=r"`sir_iterations=2` iterates SIR: give `sir_samples` too"):
        il2pkpd.fit(DATA / "linear_growth.toml", tmp_path / "data.csv", method="focei", sir_iterations=2)


def test_cli_fit_method_focei_and_bad_method(tmp_path):
    _dataset(tmp_path / "data.csv", n=6)
    args = [sys.executable, "-m", "il2pkpd", "fit", "--model", str(DATA / "linear_growth.toml"), "--data", str(tmp_path / "data.csv")]
    bad = subprocess.run([*args, "--out", str(tmp_path / "bad"), "--method", "saem"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "--method must be one of ['nuts', 'map', 'foce', 'focei', 'laplace'], got 'saem'" in bad.stderr
    assert not (tmp_path / "bad").exists()
    ok = subprocess.run([*args, "--out", str(tmp_path / "fit"), "--method", "focei"], capture_output=True, text=True, timeout=600)
    assert ok.returncode == 0, ok.stderr
    info = json.loads((tmp_path / "fit" / "fit.json").read_text())
    assert info["method"] == "focei" and info["solver"]["solver"] == "rodas4" and math.isfinite(info["ofv"])


def test_fit_refuses_settings_of_the_other_method(tmp_path):
    from il2pkpd.errors import OptionError

    _dataset(tmp_path / "data.csv", n=3)
    with pytest.raises(OptionError, match=r"`sir_samples` applies to methods \['foce', 'focei', 'laplace'\], got sir_samples=100 with method='nuts'"):
        il2pkpd.fit(DATA / "linear_growth.toml", tmp_path / "data.csv", sir_samples=100)
    with pytest.raises(OptionError, match=r"`sampler` applies to method='nuts', got sampler='pymc' with method='focei'"):
        il2pkpd.fit(DATA / "linear_growth.toml", tmp_path / "data.csv", method="focei", sampler="pymc")
    with pytest.raises(OptionError, match=r"`draws` applies to method='nuts', got draws=200 with method='focei'"):
        il2pkpd.fit(DATA / "linear_growth.toml", tmp_path / "data.csv", method="focei", draws=200)
    with pytest.raises(OptionError, match=r"`restarts` applies to methods \['foce', 'focei', 'laplace'\], got restarts=2 with method='map'"):
        il2pkpd.fit(DATA / "linear_growth.toml", tmp_path / "data.csv", method="map", restarts=2)
    with pytest.raises(OptionError, match=r"`draws` applies to method='nuts', got draws=10 with method='map'"):
        il2pkpd.fit(DATA / "linear_growth.toml", tmp_path / "data.csv", sampler="map", draws=10)  # sampler='map' is method='map'
    with pytest.raises(OptionError, match=r"`priors` must be True or False, got 'yes'"):
        il2pkpd.fit(DATA / "linear_growth.toml", tmp_path / "data.csv", method="focei", priors="yes")
    with pytest.raises(OptionError, match=r"`sir_samples` must be 0 \(none\) or an integer >= 10, got 5"):
        il2pkpd.fit(DATA / "linear_growth.toml", tmp_path / "data.csv", method="focei", sir_samples=5)


def test_nuts_starts_from_a_focei_fit(tmp_path):
    """fit(init=focei_fit): every free variable of the PyMC model gets its starting value from
    the maximum-likelihood fit (z = eta / omega from the conditional modes)."""
    from il2pkpd.errors import OptionError
    from il2pkpd.inference.fit import initial_values
    from il2pkpd.inference.pymc_model import build_pymc_model
    from il2pkpd.io.nonmem import read_nonmem_csv
    from il2pkpd.likelihood import subject_data

    import tomllib

    _dataset(tmp_path / "data.csv", n=5)
    spec = tomllib.loads((DATA / "linear_growth.toml").read_text())
    spec["parameters"]["base"]["prior"] = {"dist": "normal", "mean": 10.0, "sd": 10.0}  # sampled by NUTS only with a prior
    spec["parameters"]["slope"]["prior"] = {"dist": "normal", "mean": 0.5, "sd": 1.0}
    model = il2pkpd.build_model(spec)
    subjects = subject_data(model, read_nonmem_csv(tmp_path / "data.csv"))
    import warnings

    with warnings.catch_warnings():  # 5 subjects: omega2_slope goes to 0 (flagged near its bound); starting values are what is tested
        warnings.simplefilter("ignore", il2pkpd.errors.Il2pkpdWarning)
        ml_fit = il2pkpd.fit(model, tmp_path / "data.csv", method="focei")
    init = initial_values(build_pymc_model(model, subjects), ml_fit, subjects)
    assert set(init) == {"base", "slope", "omega_base", "omega_slope", "z_base", "z_slope", "sigma_y"}
    assert init["base"] == ml_fit.estimates["base"]
    eta = np.asarray(ml_fit.info["ebe"]["eta"])
    np.testing.assert_allclose(init["z_base"], eta[:, 0] / ml_fit.estimates["omega_base"])
    assert init["sigma_y"] == ml_fit.estimates["sigma_y"]
    with pytest.raises(OptionError, match="`init` applies to method='nuts', got init=<Fit> with method='map'"):
        il2pkpd.fit(model, tmp_path / "data.csv", sampler="map", init=ml_fit)


def test_focei_fit_reports_pred_ipred_cwres(tmp_path):
    """The residual table of a FOCE-I fit: one row per observation, CWRES ~ N(0, 1) for data
    simulated from the model (mean within 4 SE of 0, SD within 30% of 1 for 64 rows)."""
    _dataset(tmp_path / "data.csv", n=16)
    fit = il2pkpd.fit(DATA / "linear_growth.toml", tmp_path / "data.csv", method="focei")
    res = pd.DataFrame(fit.info["residuals"])
    assert list(res.columns) == ["ID", "TIME", "DVID", "DV", "PRED", "IPRED", "IWRES", "CWRES"] and len(res) == 64
    assert abs(res.CWRES.mean()) < 4 / math.sqrt(64) and 0.7 < res.CWRES.std() < 1.3
    np.testing.assert_allclose(res.PRED, fit.estimates["base"] + fit.estimates["slope"] * res.TIME)


def test_gof_and_pc_vpc_take_a_focei_fit(tmp_path):
    """The existing GOF table and pcVPC take a maximum-likelihood fit. GOF: PRED = X beta and
    CRES = CWRES, which for this linear Gaussian model is ``V^-1/2 (y - X beta)`` with
    ``V = X Omega X' + sigma^2 I`` (symmetric square root, NumPy). pcVPC: simulated from the
    estimates, its median band holds the observed median in every bin for data from the model."""
    from il2pkpd import diagnostics
    from il2pkpd.io.nonmem import read_nonmem_csv

    ys = _dataset(tmp_path / "data.csv", n=16)
    data = read_nonmem_csv(tmp_path / "data.csv")
    model = il2pkpd.load_model(DATA / "linear_growth.toml")
    fit = il2pkpd.fit(model, data, method="focei")
    gof = diagnostics.gof_table(fit, model, data)
    e = fit.estimates
    xm = np.column_stack([np.ones_like(TIMES), TIMES])
    v = xm @ np.diag([e["omega_base"] ** 2, e["omega_slope"] ** 2]) @ xm.T + e["sigma_y"] ** 2 * np.eye(TIMES.size)
    lam, q = np.linalg.eigh(v)
    cwres = np.concatenate([q @ ((q.T @ (y - xm @ np.array([e["base"], e["slope"]]))) / np.sqrt(lam)) for y in ys])
    np.testing.assert_allclose(gof["cres"], cwres, atol=1e-6)
    np.testing.assert_allclose(gof["pred"], np.tile(xm @ np.array([e["base"], e["slope"]]), 16), atol=1e-8)
    assert gof.attrs["cres"].startswith("CWRES") and len(gof) == 64
    vpc = diagnostics.pc_vpc(fit, model, data, "y", n_rep=60, bins=np.array([-0.5, 1.0, 3.0, 6.0, 9.0]))
    assert len(vpc) == 4 and (vpc["sim_q50_lo"] <= vpc["obs_q50"]).all() and (vpc["obs_q50"] <= vpc["sim_q50_hi"]).all()
    _dataset(tmp_path / "other.csv", n=3)
    with pytest.raises(il2pkpd.errors.OptionError, match=r"`subjects` are not the data of this fit \(3 subjects, the fit 16\)"):
        diagnostics.gof_table(fit, model, read_nonmem_csv(tmp_path / "other.csv"))


def _with_priors():
    import tomllib

    spec = tomllib.loads((DATA / "linear_growth.toml").read_text())
    spec["parameters"]["base"]["prior"] = {"dist": "normal", "mean": 10.0, "sd": 10.0}
    spec["parameters"]["slope"]["prior"] = {"dist": "normal", "mean": 0.5, "sd": 1.0}
    return il2pkpd.build_model(spec)


def test_centred_and_noncentred_models_are_the_same_posterior(tmp_path):
    """Change of variables: with ``eta = omega z``, ``N(eta; 0, omega) = N(z; 0, 1) / omega``,
    so the centred model's log density at ``eta`` is the non-centred one's at
    ``z = eta / omega`` minus ``n log omega`` (n subjects), at any point."""
    from il2pkpd.errors import OptionError
    from il2pkpd.inference.pymc_model import build_pymc_model
    from il2pkpd.io.nonmem import read_nonmem_csv
    from il2pkpd.likelihood import subject_data

    _dataset(tmp_path / "data.csv", n=5)
    model = _with_priors()
    subjects = subject_data(model, read_nonmem_csv(tmp_path / "data.csv"))
    nc = build_pymc_model(model, subjects)
    c = build_pymc_model(model, subjects, parameterization={"base": "centered"})
    assert "eta_base" in {v.name for v in c.free_RVs} and "z_base" not in {v.name for v in c.free_RVs}
    rng = np.random.default_rng(0)
    eta = rng.normal(0, 1.5, 5)
    point = {"base": 9.5, "slope": 0.45, "omega_base_log__": math.log(1.7), "omega_slope_log__": math.log(0.25),
             "z_slope": rng.normal(0, 1, 5), "sigma_y_log__": math.log(0.9)}
    logp_c = c.compile_logp(mode="JAX")({**point, "eta_base": eta})
    logp_nc = nc.compile_logp(mode="JAX")({**point, "z_base": eta / 1.7})
    assert logp_c - logp_nc == pytest.approx(-5 * math.log(1.7), abs=1e-9)
    with pytest.raises(OptionError, match=r"`parameterization\['base'\]` must be one of \['centered', 'noncentered'\], got 'centred'"):
        build_pymc_model(model, subjects, parameterization={"base": "centred"})
    with pytest.raises(OptionError, match=r"`parameterization` names 'cl', which is not an estimated parameter with IIV: \['base', 'slope'\]"):
        build_pymc_model(model, subjects, parameterization={"cl": "centered"})


def test_nuts_from_a_focei_fit_centres_the_well_informed_random_effects(tmp_path):
    """``parameterization="auto"`` with ``init``: the rule (centred below 30% eta-shrinkage)
    applied to the init fit's shrinkage, the centred effect started at the EBEs, and a short
    NUTS run whose posterior has both effects and records the choice."""
    from il2pkpd.inference.estimators import ESTIMATORS
    from il2pkpd.inference.fit import initial_values
    from il2pkpd.inference.pymc_model import build_pymc_model
    from il2pkpd.io.nonmem import read_nonmem_csv
    from il2pkpd.likelihood import subject_data

    _dataset(tmp_path / "data.csv", n=8)
    model = _with_priors()
    ml_fit = il2pkpd.fit(model, tmp_path / "data.csv", method="focei")
    shrinkage = ml_fit.info["eta_shrinkage_percent"]
    chosen, rule = ESTIMATORS["nuts"].parameterization(model, "auto", ml_fit)
    assert chosen == {n: ("centered" if shrinkage[n] < 30.0 else "noncentered") for n in ("base", "slope")} and rule.startswith("auto")
    forced = {"base": "centered", "slope": "noncentered"}
    subjects = subject_data(model, read_nonmem_csv(tmp_path / "data.csv"))
    init = initial_values(build_pymc_model(model, subjects, parameterization=forced), ml_fit, subjects)
    np.testing.assert_allclose(init["eta_base"], np.asarray(ml_fit.info["ebe"]["eta"])[:, 0])
    import warnings

    with warnings.catch_warnings():  # a short run: its low-ESS warning is expected, not tested here
        warnings.simplefilter("ignore", il2pkpd.errors.Il2pkpdWarning)
        post = il2pkpd.fit(model, tmp_path / "data.csv", init=ml_fit, parameterization=forced, chains=1, tune=150, draws=100,
                           predictive_draws=0, seed=3)
    assert post.info["parameterization"] == forced and post.info["parameterization_rule"].startswith("given")
    assert {"eta_base", "eta_slope", "z_slope"} <= set(post.idata["posterior"].data_vars) and "z_base" not in post.idata["posterior"]
    # the posterior mean of the typical baseline is within 3 posterior SDs of the ML estimate (flat-ish prior, 32 rows)
    x = np.asarray(post.idata["posterior"]["base"].values).ravel()
    assert abs(x.mean() - ml_fit.estimates["base"]) < 3 * x.std()
