"""NUTS started from a FOCE-I fit: its inverse mass matrix and its chains' starts (issue 14).

Oracles: the linear Gaussian model of data/linear_growth.toml (``y = base + slope t + eps``,
normal IIV on both), for which FOCE-I is exact, so

* each subject's conditional covariance of ``eta_i`` is ``C = (Omega^-1 + X^T X / sigma^2)^-1``
  (the Gaussian posterior of a linear model: a closed form, computed here with NumPy), and its
  mode ``eta_hat_i = C X^T (y_i - X beta) / sigma^2`` moves with the estimates as
  ``d eta_hat / d beta = -C X^T X / sigma^2``, ``d eta_hat / d omega_k^2 = C E_kk eta_hat / omega_k^4``
  and ``d eta_hat / d sigma = -2 C Omega^-1 eta_hat / sigma`` (differentiating the closed form);
* the population block is the covariance step's covariance carried to PyMC's unconstrained
  scale by the delta method written out by hand (``log`` for the half-normal SDs:
  ``var(log omega) = var(omega^2) / (4 omega^4)``, ``var(log sigma) = var(sigma) / sigma^2``);
* the flat layout is the one PyMC hands NumPyro (``pymc.sampling.jax``'s initial points).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import il2pkpd
from il2pkpd.errors import Il2pkpdWarning, OptionError

from test_fit_methods import TIMES, _dataset, _with_priors


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    from il2pkpd.inference.fit import initial_values
    from il2pkpd.inference.pymc_model import build_pymc_model
    from il2pkpd.io.nonmem import read_nonmem_csv
    from il2pkpd.likelihood import subject_data

    path = tmp_path_factory.mktemp("warm") / "data.csv"
    ys = _dataset(path, n=12, seed=5)
    model = _with_priors()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Il2pkpdWarning)
        ml_fit = il2pkpd.fit(model, path, method="focei")
    subjects = subject_data(model, read_nonmem_csv(path))
    pmodel = build_pymc_model(model, subjects, parameterization={"base": "centered", "slope": "noncentered"})
    return {"path": path, "model": model, "fit": ml_fit, "subjects": subjects, "pmodel": pmodel, "ys": ys,
            "start": initial_values(pmodel, ml_fit, subjects)}


def _layout(pmodel):
    from il2pkpd.inference.warm_start import flat_layout

    return {name: s for name, s, _ in flat_layout(pmodel)}


def test_the_flat_layout_is_the_one_pymc_hands_numpyro(setting):
    from pymc.sampling.jax import _get_batched_jittered_initial_points

    pmodel = setting["pmodel"]
    points = _get_batched_jittered_initial_points(pmodel, chains=1, initvals=None, random_seed=0, jitter=False)
    flat = np.concatenate([np.ravel(p) for p in points])
    at = _layout(pmodel)
    assert sum(s.stop - s.start for s in at.values()) == flat.size
    for rv in pmodel.free_RVs:  # each variable's slice of PyMC's flat vector holds that variable's value
        value = pmodel.initial_point()[pmodel.rvs_to_values[rv].name]
        np.testing.assert_array_equal(flat[at[rv.name]], np.ravel(value))


def _closed_form(setting):
    """The linear Gaussian model's conditional covariance ``C``, modes and their sensitivity
    ``J_i`` (subjects, 2, table rows) at the fit's estimates, by the closed forms above."""
    fit = setting["fit"]
    t = fit.summary
    names = list(t.index)
    beta = np.array([fit.estimates["base"], fit.estimates["slope"]])
    om = np.array([fit.estimates["omega_base"], fit.estimates["omega_slope"]])
    sigma = fit.estimates["sigma_y"]
    sig_row = next(n for n in names if t.loc[n, "kind"] == "SIGMA")
    assert float(t.loc[sig_row, "estimate"]) == pytest.approx(sigma)  # the table's residual row is the SD itself
    x = np.column_stack([np.ones_like(TIMES), TIMES])
    cond = np.linalg.inv(np.diag(1 / om**2) + x.T @ x / sigma**2)  # every subject has the same design
    eta = np.array([cond @ x.T @ (y - x @ beta) / sigma**2 for y in setting["ys"]])
    sens = np.zeros((len(eta), 2, len(names)))
    for j, row in enumerate(["base", "slope"]):
        sens[:, :, names.index(row)] = -(cond @ x.T @ x / sigma**2)[:, j]
    for k, row in enumerate(["omega2_base", "omega2_slope"]):
        sens[:, :, names.index(row)] = (cond[:, k][None, :] * eta[:, k:k + 1]) / om[k] ** 4
    sens[:, :, names.index(sig_row)] = -2.0 / sigma * eta @ (cond @ np.diag(1 / om**2)).T
    return {"cond": cond, "eta": eta, "sens": sens, "om": om, "names": names, "sig_row": sig_row}


def test_the_sensitivity_of_the_modes_is_the_closed_form(setting):
    """FOCE-I's implicit derivative of each conditional mode with respect to every estimate
    (``info["ebe"]["sensitivity"]``) against the differentiated closed form."""
    oracle = _closed_form(setting)
    ebe = setting["fit"].info["ebe"]
    np.testing.assert_allclose(ebe["eta"], oracle["eta"], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(ebe["sensitivity"], oracle["sens"], rtol=1e-5, atol=1e-9)


def test_inverse_mass_matrix_against_closed_forms(setting):
    """The joint normal approximation in the sampler's coordinates: the population block by the
    delta method, each subject's random effects ``C + J_i Cov J_i^T`` (``/ omega`` for the
    non-centred ``z``, which also moves with omega), and the cross terms ``J_i Cov``."""
    from il2pkpd.inference.warm_start import has_cross_covariance, initial_inverse_mass_matrix

    fit, pmodel = setting["fit"], setting["pmodel"]
    assert has_cross_covariance(fit)
    inv_mass = initial_inverse_mass_matrix(pmodel, fit, setting["subjects"])
    at = _layout(pmodel)
    assert inv_mass.shape == (sum(s.stop - s.start for s in at.values()),) * 2
    assert np.linalg.eigvalsh(inv_mass)[0] > 0

    # population block: the covariance step by the delta method, written out
    t = fit.summary
    se = t["se"].astype(float)
    corr = np.asarray(fit.info["covariance_step"]["correlation"])
    oracle = _closed_form(setting)
    names, sig_row, om, cond, sens = oracle["names"], oracle["sig_row"], oracle["om"], oracle["cond"], oracle["sens"]
    cov = corr * np.outer(se, se)
    i = {n: names.index(n) for n in names}
    o2 = float(t.loc["omega2_base", "estimate"])
    assert inv_mass[at["base"], at["base"]][0, 0] == pytest.approx(cov[i["base"], i["base"]], rel=1e-6)  # Normal prior: no transform
    assert inv_mass[at["omega_base"], at["omega_base"]][0, 0] == pytest.approx(cov[i["omega2_base"], i["omega2_base"]] / (4 * o2**2), rel=1e-5)
    sy = fit.estimates["sigma_y"]
    assert inv_mass[at["sigma_y"], at["sigma_y"]][0, 0] == pytest.approx(cov[i[sig_row], i[sig_row]] / sy**2, rel=1e-5)
    assert inv_mass[at["base"], at["sigma_y"]][0, 0] == pytest.approx(cov[i["base"], i[sig_row]] / sy, rel=1e-5)

    # random effects: the centred eta_base and the non-centred z_slope = eta_slope / omega_slope,
    # as linear maps of the estimates' deviations plus their conditional noise
    eta_base, z_slope = at["eta_base"], at["z_slope"]
    a_eta = sens[:, 0, :]
    a_z = sens[:, 1, :] / om[1]
    a_z[:, i["omega2_slope"]] -= oracle["eta"][:, 1] / om[1] ** 2 * (0.5 / om[1])  # z moves with omega = sqrt(omega^2)
    np.testing.assert_allclose(np.diag(inv_mass[eta_base, eta_base]), cond[0, 0] + np.einsum("bp,pq,bq->b", a_eta, cov, a_eta), rtol=1e-5)
    np.testing.assert_allclose(np.diag(inv_mass[z_slope, z_slope]), cond[1, 1] / om[1] ** 2 + np.einsum("bp,pq,bq->b", a_z, cov, a_z), rtol=1e-5)
    np.testing.assert_allclose(np.diag(inv_mass[eta_base, z_slope]), cond[0, 1] / om[1] + np.einsum("bp,pq,bq->b", a_eta, cov, a_z), rtol=1e-5)
    # two subjects are correlated only through the estimates they share
    assert inv_mass[eta_base.start, z_slope.start + 1] == pytest.approx(a_eta[0] @ cov @ a_z[1], rel=1e-5)
    # cross terms: Cov(eta_base_i, base) = J_i Cov(x)[:, base]; sigma's unconstrained scale is log
    np.testing.assert_allclose(inv_mass[eta_base, at["base"]][:, 0], a_eta @ cov[:, i["base"]], rtol=1e-5)
    np.testing.assert_allclose(inv_mass[z_slope, at["sigma_y"]][:, 0], a_z @ cov[:, i[sig_row]] / sy, rtol=1e-5)
    # the ridge a centred parameter makes: base and the mean of eta_base are negatively correlated
    mean_eta = inv_mass[eta_base, at["base"]][:, 0].mean()
    assert mean_eta < 0


def test_a_fit_without_the_sensitivity_gives_the_block_diagonal_matrix_and_says_so(setting):
    """An init fit written before the sensitivity was recorded: no cross terms, the conditional
    covariances alone, and a warning naming why (never a silent downgrade)."""
    import dataclasses

    from il2pkpd.inference.warm_start import has_cross_covariance, initial_inverse_mass_matrix

    fit = setting["fit"]
    old = dataclasses.replace(fit, info={**fit.info, "ebe": {k: v for k, v in fit.info["ebe"].items() if k != "sensitivity"}})
    assert not has_cross_covariance(old)
    inv_mass = initial_inverse_mass_matrix(setting["pmodel"], old, setting["subjects"])
    at = _layout(setting["pmodel"])
    cond = _closed_form(setting)["cond"]
    np.testing.assert_allclose(np.diag(inv_mass)[at["eta_base"]], cond[0, 0], rtol=1e-5)
    assert inv_mass[at["base"], at["eta_base"]].max() == 0.0 and inv_mass[at["eta_base"].start, at["z_slope"].start + 1] == 0.0
    with warnings.catch_warnings(record=True) as caught:  # a 5-draw run also warns of its ESS
        warnings.simplefilter("always", Il2pkpdWarning)
        post = il2pkpd.fit(setting["model"], setting["path"], init=old, sampler="numpyro", mass_matrix="fixed", chains=1, tune=5, draws=5,
                           predictive_draws=0, seed=1)
    assert any("does not record the sensitivity of its conditional modes" in str(w.message) for w in caught)
    assert "block-diagonal" in post.info["mass_matrix"]["rule"]


def test_dispersed_starts_are_the_normal_approximation(setting):
    """Chain 0 at the estimate; 2,000 chains' starts mapped back to the unconstrained scale have
    the inverse mass matrix as covariance (sampling error of a covariance: a few percent)."""
    from il2pkpd.inference.warm_start import dispersed_starts, initial_inverse_mass_matrix

    pmodel, start = setting["pmodel"], setting["start"]
    inv_mass = initial_inverse_mass_matrix(pmodel, setting["fit"], setting["subjects"])
    starts = dispersed_starts(pmodel, start, inv_mass, chains=2000, seed=1)
    assert starts[0] == start
    omega = np.log([s["omega_base"] for s in starts[1:]])
    at = _layout(pmodel)["omega_base"]
    assert np.mean(omega) == pytest.approx(np.log(start["omega_base"]), abs=4 * np.sqrt(inv_mass[at, at][0, 0] / 1999))
    assert np.var(omega) == pytest.approx(inv_mass[at, at][0, 0], rel=0.1)
    z = np.array([s["z_slope"] for s in starts[1:]])
    assert z.shape == (1999, 12) and np.all(np.isfinite(z))


def test_mass_matrix_settings_are_checked_and_recorded(setting):
    from il2pkpd.inference.estimators import ESTIMATORS

    path, fit = setting["path"], setting["fit"]
    nuts = ESTIMATORS["nuts"]
    assert nuts.mass_matrix("auto", None, "numpyro")[0] == "adapt"
    assert nuts.mass_matrix("auto", fit, "numpyro")[0] == "init"
    setting_, rule = nuts.mass_matrix("auto", fit, "nutpie")
    assert setting_ == "adapt" and "nutpie" in rule
    with pytest.raises(OptionError, match=r"`mass_matrix='fixed'` needs a sampler that takes a starting mass matrix \(\['numpyro'\]\); 'nutpie' takes none"):
        il2pkpd.fit(setting["model"], path, init=fit, mass_matrix="fixed")
    with pytest.raises(OptionError, match=r"`mass_matrix='init'` takes the matrix from a maximum-likelihood fit: give it as `init`"):
        il2pkpd.fit(setting["model"], path, sampler="numpyro", mass_matrix="init")
    with pytest.raises(OptionError, match=r"`mass_matrix` must be 'auto' or one of \['adapt', 'init', 'fixed'\], got 'dense'"):
        il2pkpd.fit(setting["model"], path, mass_matrix="dense")
    with pytest.raises(OptionError, match=r"`mass_matrix` applies to method='nuts'"):
        il2pkpd.fit(setting["model"], path, method="focei", mass_matrix="init")
    import dataclasses

    from il2pkpd.inference.warm_start import initial_inverse_mass_matrix

    old = dataclasses.replace(fit, info={k: v for k, v in fit.info.items() if k != "fit_names"})
    with pytest.raises(OptionError, match=r"does not record its estimates' names \(fitted by an older il2pkpd\): refit it"):
        initial_inverse_mass_matrix(setting["pmodel"], old, setting["subjects"])
    failed = dataclasses.replace(fit, info={**fit.info, "covariance_step": {"ok": False, "reason": "R matrix not positive definite"}})
    with pytest.raises(OptionError, match=r"no covariance step \(it failed: R matrix not positive definite\)"):
        initial_inverse_mass_matrix(setting["pmodel"], failed, setting["subjects"])


def test_numpyro_nuts_with_the_fixed_focei_mass_matrix(setting):
    """A short NumPyro run with the FOCE-I matrix held fixed (only the step size adapted, 100
    warm-up iterations) samples this model: the typical baseline's posterior mean is within
    3 SE of the ML estimate and its SD within 35% of the SE (its prior, N(10, 10), is flat
    next to the data; the omegas' half-normal(0.5) priors are not, which is why the omegas are
    not compared), and the run records what it used."""
    fit = setting["fit"]
    with warnings.catch_warnings():  # a short run: its low-ESS warning is expected, not tested here
        warnings.simplefilter("ignore", Il2pkpdWarning)
        post = il2pkpd.fit(setting["model"], setting["path"], init=fit, sampler="numpyro", mass_matrix="fixed",
                           parameterization={"base": "centered", "slope": "noncentered"}, chains=2, tune=100, draws=300,
                           predictive_draws=0, seed=2)
    assert post.info["mass_matrix"]["setting"] == "fixed" and "dispersed_starts" in post.info["initial_values"]
    # on CPU the two chains run one after another, not in lockstep (Nuts.chain_method)
    import jax

    assert post.info["chain_method"]["setting"] == ("sequential" if jax.default_backend() == "cpu" else "vectorized")
    assert post.idata["posterior"].sizes["chain"] == 2
    x = np.asarray(post.idata["posterior"]["base"].values).ravel()
    se = float(fit.summary.loc["base", "se"])
    assert abs(x.mean() - fit.estimates["base"]) < 3 * se
    assert x.std() == pytest.approx(se, rel=0.35)
    assert int(np.asarray(post.idata["sample_stats"]["diverging"].values).sum()) == 0


def test_cli_nuts_from_a_focei_fit_folder(setting, tmp_path):
    """``il2pkpd fit --init FOLDER --sampler numpyro``: the FOCE-I fit folder written by
    ``write_fit`` starts the chains and gives the mass matrix (recorded in fit.json); a
    missing folder is refused naming --init, exit code 2, before any sampling."""
    import json
    import subprocess
    import sys

    from il2pkpd.io.fits import write_fit

    from test_fit_methods import DATA

    model_path = tmp_path / "linear_growth_priors.toml"
    text = (DATA / "linear_growth.toml").read_text()
    text = text.replace('iiv = { kind = "normal", omega = 2.0 }',
                        'iiv = { kind = "normal", omega = 2.0 }\nprior = { dist = "normal", mean = 10.0, sd = 10.0 }')
    text = text.replace('iiv = { kind = "normal", omega = 0.3 }',
                        'iiv = { kind = "normal", omega = 0.3 }\nprior = { dist = "normal", mean = 0.5, sd = 1.0 }')
    model_path.write_text(text)
    assert il2pkpd.load_model(model_path).parameters == setting["model"].parameters  # the same model as the fixture's fit
    write_fit(setting["fit"], tmp_path / "focei")
    args = [sys.executable, "-m", "il2pkpd", "fit", "--model", str(model_path), "--data", str(setting["path"])]
    bad = subprocess.run([*args, "--out", str(tmp_path / "bad"), "--init", str(tmp_path / "nowhere")], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("error: --init: `fit`") and not (tmp_path / "bad").exists()
    ok = subprocess.run([*args, "--out", str(tmp_path / "nuts"), "--init", str(tmp_path / "focei"), "--sampler", "numpyro",
                         "--mass-matrix", "fixed", "--chains", "1", "--tune", "30", "--draws", "30"], capture_output=True, text=True, timeout=600)
    assert ok.returncode == 0, ok.stderr
    info = json.loads((tmp_path / "nuts" / "fit.json").read_text())
    assert info["mass_matrix"]["setting"] == "fixed" and info["initial_values"].startswith("the maximum-likelihood fit")


def test_a_residual_sd_without_rows_starts_at_the_file_value_with_its_prior_variance(tmp_path):
    """An observation type with no rows in the data: FOCE-I holds its residual SD at the model
    file's value (``not_estimated``), NUTS samples it from its prior, so it starts at that value
    and its mass-matrix entry is the prior's variance on the log scale: for a half-normal SD,
    ``Var(log |Z|) = pi^2 / 8`` whatever the scale (closed form; 4,000 prior draws, 10%)."""
    from il2pkpd.inference.fit import initial_values
    from il2pkpd.inference.pymc_model import build_pymc_model
    from il2pkpd.inference.warm_start import initial_inverse_mass_matrix
    from il2pkpd.io.nonmem import read_nonmem_csv
    from il2pkpd.likelihood import subject_data

    import tomllib

    from test_fit_methods import DATA

    spec = tomllib.loads((DATA / "linear_growth.toml").read_text())
    spec["parameters"]["base"]["prior"] = {"dist": "normal", "mean": 10.0, "sd": 10.0}
    spec["parameters"]["slope"]["prior"] = {"dist": "normal", "mean": 0.5, "sd": 1.0}
    spec["observations"]["y_other"] = {"output": "y", "dvid": 2, "error": {"model": "proportional", "prop": 0.1}}
    model = il2pkpd.build_model(spec)
    _dataset(tmp_path / "data.csv", n=8, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Il2pkpdWarning)
        fit = il2pkpd.fit(model, tmp_path / "data.csv", method="focei")
    assert "y_other_prop" in fit.info["not_estimated"]
    subjects = subject_data(model, read_nonmem_csv(tmp_path / "data.csv"))
    pmodel = build_pymc_model(model, subjects)
    start = initial_values(pmodel, fit, subjects)
    assert start["sigma_y_other"] == 0.1
    inv_mass = initial_inverse_mass_matrix(pmodel, fit, subjects)
    at = _layout(pmodel)["sigma_y_other"]
    assert inv_mass[at, at][0, 0] == pytest.approx(np.pi**2 / 8, rel=0.1)
    assert np.count_nonzero(inv_mass[at]) == 1  # uncorrelated with everything the data inform


def test_auto_without_a_usable_matrix_says_so_and_adapts(setting):
    """``mass_matrix="auto"`` with an init fit whose covariance step failed: a warning names the
    reason and ``info["mass_matrix"]`` records the identity-adapted matrix, never silently."""
    import dataclasses

    fit = setting["fit"]
    failed = dataclasses.replace(fit, info={**fit.info, "covariance_step": {"ok": False, "reason": "R matrix not positive definite"}})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", Il2pkpdWarning)
        post = il2pkpd.fit(setting["model"], setting["path"], init=failed, sampler="numpyro", chains=1, tune=20, draws=20,
                           predictive_draws=0, seed=1)
    assert any("mass_matrix='auto': no starting mass matrix from the init fit" in str(w.message) for w in caught)
    assert post.info["mass_matrix"]["setting"] == "adapt" and "R matrix not positive definite" in post.info["mass_matrix"]["rule"]
