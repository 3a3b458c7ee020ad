"""FOCE-I estimation (issue 14) against maximum likelihood computed independently.

For a model linear in its random effects with an additive error, FOCE-I's objective is the
exact Gaussian marginal likelihood (tests/reference/test_marginal.py), so its estimate must be
the maximum-likelihood estimate: ``scipy.optimize.minimize`` on ``-2 log`` of
``scipy.stats.multivariate_normal`` densities (``y_i ~ N(X beta, X Omega X' + sigma^2 I)``,
diagonal Omega) gives the oracle, and the inverse of its Hessian (central differences of the
SciPy objective, a computation independent of ours) the covariance of ``MATRIX=R``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.optimize
import scipy.stats

import il2pkpd
from il2pkpd.dosing import Record, Records
from il2pkpd.inference.estimation import estimate

LOG_2PI = math.log(2 * math.pi)


def _data(n=24, seed=5):
    rng = np.random.default_rng(seed)
    subjects, designs = [], []
    for i in range(n):
        t = np.array([0.0, 2.0, 4.0, 8.0])
        y = 10.0 + rng.normal(0, 1.5) + (0.5 + rng.normal(0, 0.2)) * t + rng.normal(0, 0.8, t.size)
        subjects.append(Records(tuple(Record(time=float(tt), evid=0, dvid=1, dv=float(v), row=4 * i + j) for j, (tt, v) in enumerate(zip(t, y))), subject=i + 1))
        designs.append((t, y))
    return subjects, designs


def _ofv(x, designs):
    """-2 log-likelihood without n log 2 pi; x = (base, slope, log w1, log w2, log sigma)."""
    beta, omega, sigma = x[:2], np.diag(np.exp(x[2:4])), math.exp(x[4])
    total = 0.0
    for t, y in designs:
        xm = np.column_stack([np.ones_like(t), t])
        total += -2 * scipy.stats.multivariate_normal(xm @ beta, xm @ omega @ xm.T + sigma**2 * np.eye(t.size)).logpdf(y) - t.size * LOG_2PI
    return total


def test_focei_estimate_of_a_linear_gaussian_model_is_the_ml_estimate(linear_growth):
    subjects, designs = _data()
    model = il2pkpd.build_model(linear_growth)
    fit = estimate(model, subjects, method="focei")
    oracle = scipy.optimize.minimize(_ofv, np.array([10.0, 0.5, math.log(4.0), math.log(0.09), 0.0]), args=(designs,),
                                     method="BFGS", options={"gtol": 1e-9})
    x = oracle.x
    expected = {"base": x[0], "slope": x[1], "omega2_base": math.exp(x[2]), "omega2_slope": math.exp(x[3]), "y_add": math.exp(x[4])}
    assert fit.info["converged"], fit.info["message"]
    assert fit.ofv == pytest.approx(oracle.fun, abs=1e-6)
    for name, value in expected.items():
        assert fit.estimates[name] == pytest.approx(value, rel=1e-4), name
    # MATRIX=R covariance: 2 (Hessian of OFV)^-1 on the natural scale, by SciPy central differences
    nat = np.array([x[0], x[1], math.exp(x[2]), math.exp(x[3]), math.exp(x[4])])

    def ofv_natural(v):
        return _ofv(np.array([v[0], v[1], math.log(v[2]), math.log(v[3]), math.log(v[4])]), designs)

    h = 1e-4 * np.maximum(np.abs(nat), 1e-2)
    hess = np.zeros((5, 5))
    for i in range(5):
        for j in range(5):
            ei, ej = np.eye(5)[i] * h[i], np.eye(5)[j] * h[j]
            hess[i, j] = (ofv_natural(nat + ei + ej) - ofv_natural(nat + ei - ej) - ofv_natural(nat - ei + ej) + ofv_natural(nat - ei - ej)) / (4 * h[i] * h[j])
    np.testing.assert_allclose(fit.covariance_r, 2 * np.linalg.inv(hess), rtol=2e-3, atol=1e-7)  # entries near 0: scale 1e-2-1e-1
    assert fit.info["covariance_step"]["ok"]
    assert list(fit.table.index) == ["base", "slope", "omega2_base", "omega2_slope", "y_add"]
    np.testing.assert_allclose(fit.table["se"], np.sqrt(np.diag(fit.covariance)))


def test_bad_arguments_are_refused_before_any_work(linear_growth):
    from il2pkpd.errors import OptionError

    subjects, _ = _data(n=3)
    model = il2pkpd.build_model(linear_growth)
    with pytest.raises(OptionError, match=r"`start` key 'cl' is not an estimated quantity; estimated: \['base', 'slope'"):
        estimate(model, subjects, start={"cl": 1.0})
    with pytest.raises(OptionError, match=r"`start\['base'\]` must be a finite number, got nan"):
        estimate(model, subjects, start={"base": float("nan")})
    with pytest.raises(OptionError, match="`method` must be one of"):
        estimate(model, subjects, method="saem")
    with pytest.raises(OptionError, match=r"the starting variance omega2_base must be > 0, got -1.0"):
        estimate(model, subjects, start={"omega2_base": -1.0})
    bounded = model.replace(parameters=tuple(p if p.name != "slope" else __import__("dataclasses").replace(p, lower=0.0) for p in model.parameters))
    with pytest.raises(OptionError, match=r"the starting value of slope must be inside its bounds \(0, inf\), got -0.5"):
        estimate(bounded, subjects, start={"slope": -0.5})
    no_iiv = model.replace(parameters=tuple(__import__("dataclasses").replace(p, iiv=None) for p in model.parameters))
    with pytest.raises(OptionError, match="has none: give a parameter an `iiv`"):
        estimate(no_iiv, subjects)


def test_sir_draws_agree_with_the_covariance_step_where_the_likelihood_is_near_normal(linear_growth):
    """SIR (Dosne et al. 2016) on the linear Gaussian model: the resamples' SDs match the
    covariance step's MATRIX=R standard errors where the likelihood is near normal (the fixed
    effects and the residual SD: within 10%; the variances, whose likelihood is skewed, within
    25%), the importance ratios are even (ESS > half the samples) and the resamples' dOFV
    stays within the chi-square it should follow."""
    from il2pkpd.inference.estimation import sir

    subjects, _ = _data(n=40)
    est = estimate(il2pkpd.build_model(linear_growth), subjects)
    calls = []
    res = sir(est, n_samples=1000, n_resamples=300, seed=2, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 1000) for i in range(1, 1001)]  # the progress callback: once per sample, in order
    se_r = dict(zip(est.table.index, np.sqrt(np.diag(est.covariance_r))))
    for name, tol in {"base": 0.10, "y_add": 0.10, "slope": 0.25, "omega2_base": 0.25, "omega2_slope": 0.25}.items():
        assert res["se"][name] == pytest.approx(se_r[name], rel=tol), name
        assert len(res["draws"][name]) == 300
    assert res["ess"] > 500 and res["failed_samples"] == 0
    assert res["dofv_resamples_q95"] < 1.2 * res["chi2_q95"]


def test_iterated_sir_recovers_from_a_poor_first_proposal(linear_growth):
    """Dosne et al. (2017)'s iterations with PsN's rising resampled share: a first proposal too
    narrow (R^-1 x 0.5) leaves few effective samples; each further iteration proposes from
    the previous resamples' covariance, and by the fourth the ratios are three times as even
    and the resamples' SDs match the covariance step's MATRIX=R standard errors (the oracle of
    the test above) within 20%."""
    from il2pkpd.errors import OptionError
    from il2pkpd.inference.estimation import sir

    subjects, _ = _data(n=40)
    est = estimate(il2pkpd.build_model(linear_growth), subjects)
    res = sir(est, n_samples=[500, 500, 500, 1000], n_resamples=[100, 200, 250, 500], seed=5, inflation=0.5, iterations=4)
    rounds = res["iterations"]
    assert [(r["iteration"], r["n_samples"], r["n_resamples"]) for r in rounds] == [(1, 500, 100), (2, 500, 200), (3, 500, 250), (4, 1000, 500)]
    assert res["ess"] == rounds[-1]["ess"] > 3 * rounds[0]["ess"] and "iteration 3's resamples" in res["proposal"]
    assert len(res["draws"]["base"]) == 500
    se_r = dict(zip(est.table.index, np.sqrt(np.diag(est.covariance_r))))
    for name in ("base", "y_add", "slope", "omega2_base", "omega2_slope"):
        assert res["se"][name] == pytest.approx(se_r[name], rel=0.2), name
    with pytest.raises(OptionError, match=r"`iterations` must be an integer >= 1, got 0"):
        sir(est, iterations=0)
    with pytest.raises(OptionError, match=r"`n_samples` must be one integer or one per iteration \(2\), got \[500\]"):
        sir(est, n_samples=[500], iterations=2)


def test_map_focei_is_the_posterior_mode_of_the_exact_marginal_likelihood(linear_growth):
    """MAP-FOCE-I (``priors=True``) on the linear Gaussian model is the mode of the exact
    marginal likelihood times the priors: SciPy's minimum of ``-2 log L - 2 log p`` with the
    priors written with scipy.stats (normal on the typical values as the model gives them,
    half-normal(0.5) on each omega SD, half-normal(2 x file value) on the residual SD)."""
    subjects, designs = _data(n=8, seed=11)
    spec = {**linear_growth, "parameters": {**linear_growth["parameters"]}}
    spec["parameters"]["base"] = {**spec["parameters"]["base"], "prior": {"dist": "normal", "mean": 8.0, "sd": 0.5}}
    spec["parameters"]["slope"] = {**spec["parameters"]["slope"], "prior": {"dist": "normal", "mean": 0.4, "sd": 0.05}}
    model = il2pkpd.build_model(spec)
    fit = estimate(model, subjects, method="focei", priors=True)

    def penalised(x):
        sd_base, sd_slope, sigma = math.exp(x[2] / 2), math.exp(x[3] / 2), math.exp(x[4])
        logp = (scipy.stats.norm(8.0, 0.5).logpdf(x[0]) + scipy.stats.norm(0.4, 0.05).logpdf(x[1]) + scipy.stats.halfnorm(scale=0.5).logpdf(sd_base)
                + scipy.stats.halfnorm(scale=0.5).logpdf(sd_slope) + scipy.stats.halfnorm(scale=2.0).logpdf(sigma))
        return _ofv(x, designs) - 2 * logp

    oracle = scipy.optimize.minimize(penalised, np.array([9.0, 0.45, math.log(0.25), math.log(0.01), 0.0]), method="BFGS", options={"gtol": 1e-9})
    x = oracle.x
    expected = {"base": x[0], "slope": x[1], "omega2_base": math.exp(x[2]), "omega2_slope": math.exp(x[3]), "y_add": math.exp(x[4])}
    assert fit.info["converged"] and fit.info["priors"] and fit.info["flat_prior"] == []
    assert fit.info["objective"] == pytest.approx(oracle.fun, abs=1e-5)
    assert fit.ofv == pytest.approx(_ofv(x, designs), abs=1e-4)  # the OFV is still the likelihood's
    for name, value in expected.items():
        assert fit.estimates[name] == pytest.approx(value, rel=1e-4), name
    assert fit.info["covariance_step"]["matrix"].startswith("R^-1 (the curvature")


def test_restarts_reach_the_same_minimum_and_are_reported(linear_growth):
    """Perturbed restarts (PsN -retries): every run ends at SciPy's maximum-likelihood OFV
    for this model with one minimum, and the report lists each with its start."""
    subjects, designs = _data(n=10, seed=3)
    model = il2pkpd.build_model(linear_growth)
    fit = estimate(model, subjects, restarts=2, perturbation=0.3, seed=4, covariance=False)
    oracle = scipy.optimize.minimize(_ofv, np.array([10.0, 0.5, math.log(4.0), math.log(0.09), 0.0]), args=(designs,), method="BFGS",
                                     options={"gtol": 1e-9})
    runs = fit.info["restarts"]
    assert len(runs) == 3 and runs[0]["start"]["base"] == 10.0 and runs[1]["start"] != runs[2]["start"]
    for run in runs:
        assert run["objective"] == pytest.approx(oracle.fun, abs=1e-5)
    for name, lo, hi in (("base", 7.0, 13.0), ("omega2_base", 4.0 * 0.7, 4.0 * 1.3)):
        assert all(lo <= r["start"][name] <= hi for r in runs)
    from il2pkpd.errors import OptionError

    with pytest.raises(OptionError, match=r"`restarts` must be an integer >= 0, got -1"):
        estimate(model, subjects, restarts=-1)


def test_ofv_stopping_rule_stops_at_the_ml_objective_and_says_so(linear_growth):
    """With ``ofv_tol`` the estimation stops once the OFV has stopped falling: the OFV is within
    the tolerance of SciPy's maximum-likelihood optimum, in no more iterations than L-BFGS-B's
    own gradient test, and the message names the rule. A bad tolerance is refused."""
    subjects, designs = _data(n=10, seed=3)
    model = il2pkpd.build_model(linear_growth)
    oracle = scipy.optimize.minimize(_ofv, np.array([10.0, 0.5, math.log(4.0), math.log(0.09), 0.0]), args=(designs,), method="BFGS",
                                     options={"gtol": 1e-9})
    plain = estimate(model, subjects, covariance=False)
    ruled = estimate(model, subjects, covariance=False, ofv_tol=1e-3)
    assert ruled.info["converged"] and ruled.ofv - oracle.fun < 1e-3 * 5
    assert ruled.info["iterations"] <= plain.info["iterations"]
    if ruled.info["iterations"] < plain.info["iterations"]:
        assert ruled.info["message"].startswith("stopping rule")
    from il2pkpd.errors import OptionError

    with pytest.raises(OptionError, match=r"`ofv_tol` must be a positive number"):
        estimate(model, subjects, ofv_tol=0.0)


def test_scaled_and_unscaled_searches_reach_the_ml_estimate(linear_growth):
    """The search in variables scaled by the cross-product curvature (the default) and the one
    on the plain estimation scale both end at SciPy's maximum-likelihood OFV, with an expected
    decrease to the minimum (EDM) below the convergence limit."""
    from il2pkpd.inference.estimation import EDM_LIMIT

    subjects, designs = _data(n=10, seed=3)
    model = il2pkpd.build_model(linear_growth)
    oracle = scipy.optimize.minimize(_ofv, np.array([10.0, 0.5, math.log(4.0), math.log(0.09), 0.0]), args=(designs,), method="BFGS",
                                     options={"gtol": 1e-9})
    for precondition in (True, False):
        fit = estimate(model, subjects, covariance=False, precondition=precondition)
        assert fit.info["converged"] and fit.info["preconditioned"] is precondition
        assert fit.ofv == pytest.approx(oracle.fun, abs=1e-6)
        assert 0 <= fit.info["edm"] < EDM_LIMIT


def test_a_search_that_stalls_away_from_the_minimum_is_not_called_converged(linear_growth, monkeypatch):
    """L-BFGS-B can report success when its line search stalls (round-off, a non-finite
    objective stepped back from). Made to stop after one iteration while claiming success, the
    run's OFV is far above SciPy's optimum, and the estimate says it is not converged because
    the expected decrease to the minimum is above the limit."""
    import il2pkpd.inference.estimation as estimation

    subjects, designs = _data(n=10, seed=3)
    model = il2pkpd.build_model(linear_growth)
    oracle = scipy.optimize.minimize(_ofv, np.array([10.0, 0.5, math.log(4.0), math.log(0.09), 0.0]), args=(designs,), method="BFGS",
                                     options={"gtol": 1e-9})
    real = scipy.optimize.minimize

    def stalls(*args, **kwargs):
        res = real(*args, **{**kwargs, "options": {**kwargs["options"], "maxiter": 1}})
        res.success, res.message = True, "CONVERGENCE: RELATIVE REDUCTION OF F <= FACTR*EPSMCH"
        return res

    monkeypatch.setattr(estimation.scipy.optimize, "minimize", stalls)
    with pytest.warns(il2pkpd.Il2pkpdWarning, match="did not converge"):
        fit = estimate(model, subjects, covariance=False)
    assert fit.ofv - oracle.fun > 1.0
    assert not fit.info["converged"] and fit.info["edm"] > estimation.EDM_LIMIT
    assert "not at a minimum" in fit.info["message"]


def test_eps_shrinkage_and_iwres_match_the_closed_form_conditional_means(linear_growth):
    """For the linear Gaussian model the conditional modes are the BLUPs
    ``Omega X' V^-1 (y - X beta)``; IWRES = (y - X (beta + eta)) / sigma and
    epsilon-shrinkage = 100 (1 - SD(IWRES)) follow in NumPy, independent of the estimator."""
    subjects, designs = _data(n=12, seed=8)
    est = estimate(il2pkpd.build_model(linear_growth), subjects, covariance=False)
    beta = np.array([est.estimates["base"], est.estimates["slope"]])
    omega = np.diag([est.estimates["omega2_base"], est.estimates["omega2_slope"]])
    sigma = est.estimates["y_add"]
    iwres = []
    for t, y in designs:
        xm = np.column_stack([np.ones_like(t), t])
        v = xm @ omega @ xm.T + sigma**2 * np.eye(t.size)
        eta = omega @ xm.T @ np.linalg.solve(v, y - xm @ beta)
        iwres.append((y - xm @ (beta + eta)) / sigma)
    iwres = np.concatenate(iwres)
    np.testing.assert_allclose(est.info["residuals"]["IWRES"], iwres, atol=1e-6)
    assert est.info["eps_shrinkage_percent"]["y"] == pytest.approx(100 * (1 - np.std(iwres, ddof=1)), abs=1e-4)


def test_error_parameters_of_observations_without_rows_are_held_and_said(linear_growth):
    """A second observation type with no rows in the data: its residual SD is not estimated
    (a flat direction), it is reported as held, and the estimate equals the one-observation
    model's (the same likelihood)."""
    subjects, _ = _data(n=8, seed=2)
    spec = {**linear_growth, "observations": {**linear_growth["observations"],
                                              "y2": {"output": "y", "dvid": 2, "error": {"model": "proportional", "prop": 0.2}}}}
    two = estimate(il2pkpd.build_model(spec), subjects, covariance=True)
    one = estimate(il2pkpd.build_model(linear_growth), subjects, covariance=True)
    assert "y2_prop" not in two.estimates and two.info["not_estimated"]["y2_prop"]["value"] == 0.2
    assert two.info["covariance_step"]["ok"]
    assert two.ofv == pytest.approx(one.ofv, abs=1e-8)
    for name, value in one.estimates.items():
        assert two.estimates[name] == pytest.approx(value, rel=1e-8)


def test_an_estimate_at_its_bound_is_flagged_not_reported_as_precise(linear_growth):
    """The data's slope is ~0.5 (SciPy's unconstrained maximum-likelihood estimate, above
    0.3); with the model file's upper bound 0.3 the estimate ends at the bound, and it is
    flagged (warning, ``near_boundary``), as NONMEM's PARAMETER ESTIMATE IS NEAR ITS BOUNDARY."""
    import dataclasses

    from il2pkpd.errors import Il2pkpdWarning

    subjects, designs = _data(n=10, seed=3)
    oracle = scipy.optimize.minimize(_ofv, np.array([10.0, 0.5, math.log(4.0), math.log(0.09), 0.0]), args=(designs,), method="BFGS")
    assert oracle.x[1] > 0.35
    model = il2pkpd.build_model(linear_growth)
    capped = model.replace(parameters=tuple(dataclasses.replace(p, lower=0.0, upper=0.3, value=0.2) if p.name == "slope" else p
                                            for p in model.parameters))
    with pytest.warns(Il2pkpdWarning, match=r"\['slope'\] ended at \(or next to\) a bound"):
        est = estimate(capped, subjects, covariance=False)
    assert est.estimates["slope"] == pytest.approx(0.3, abs=3e-4)
    assert est.info["near_boundary"] == ["slope"] and bool(est.table.loc["slope", "near_boundary"])
    assert not est.table.drop(index="slope")["near_boundary"].any()
