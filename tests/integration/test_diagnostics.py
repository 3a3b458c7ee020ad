"""Posterior groups of fit(), and the diagnostics built on them (LOO, GOF, pcVPC, KM-VPC).

Data are SYNTHETIC (simulated with known truth). Oracles: independent scipy.stats sums of
log-densities over simulate() predictions; simulate() at the posterior mean for PRED; the
closed-form survival exp(-lambda t) for the KM-VPC; a hand-computed Kaplan-Meier curve.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import il2pkpd
from il2pkpd import diagnostics
from il2pkpd.dosing import Record, Records
from il2pkpd.inference.fit import Fit

pytest.importorskip("pymc")

T = np.array([0.25, 0.5, 1, 2, 4, 6, 8, 12, 24.0])


def test_fit_has_every_arviz_group(nuts_fit, subjects):  # noqa: F811
    groups = set(nuts_fit.idata.children)
    assert {"posterior", "sample_stats", "prior", "log_likelihood", "posterior_predictive", "observed_data"} <= groups
    obs = nuts_fit.idata["observed_data"]
    want = [r.dv for recs in subjects for r in recs if r.evid == 0]
    np.testing.assert_array_equal(obs["dv"].values, want)
    assert nuts_fit.idata["log_likelihood"]["subject_loglik"].shape[-1] == 16
    assert nuts_fit.idata["prior"]["cl"].size >= 100


def test_subject_loglik_matches_scipy_at_a_draw(nuts_fit, model, subjects):  # noqa: F811
    from il2pkpd.inference.posterior import individual_theta_draws

    ll = nuts_fit.idata["log_likelihood"]["subject_loglik"]
    chain, draw = 0, int(ll["draw"].values[3])
    post = nuts_fit.idata["posterior"].to_dataset()
    theta = individual_theta_draws(model, post, 16)[chain, draw]
    sigma = float(post["sigma_cp"].values[chain, draw])
    table = {p.name: theta[:, j] for j, p in enumerate(model.parameters)}
    ds = il2pkpd.simulate(model, "100 mg po once", T, subject_params=table)
    for i, recs in enumerate(subjects):
        dv = np.array([r.dv for r in recs if r.evid == 0])
        f = ds["cp"].values[i]
        want = stats.norm.logpdf(dv, f, sigma * np.abs(f)).sum()
        # the fit solves at rtol 1e-6, simulate() at 1e-8: agreement to solver tolerance
        assert float(ll.sel(chain=chain, draw=draw).values[i]) == pytest.approx(want, rel=1e-4, abs=1e-4)


def test_loo_is_leave_one_subject_out(nuts_fit):  # noqa: F811
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = diagnostics.loo(nuts_fit)
    k = np.asarray(res.pareto_k)
    said = [str(w.message) for w in caught if issubclass(w.category, il2pkpd.Il2pkpdWarning)]
    assert bool(said) == bool((k > 0.7).any()), said  # high k is said, in words, exactly when present
    assert np.isfinite(res.elpd) and res.n_data_points == 16
    assert res.elpd <= np.sum(nuts_fit.idata["log_likelihood"]["subject_loglik"].mean(("chain", "draw")).values)


def test_gof_table_pred_is_the_typical_prediction(nuts_fit, model, subjects):  # noqa: F811
    gof = diagnostics.gof_table(nuts_fit, model, subjects)
    typical = {k: nuts_fit.estimates[k] for k in ("ka", "cl", "v")}
    ds = il2pkpd.simulate(model, "100 mg po once", T, params=typical, iiv=False)
    np.testing.assert_allclose(gof["pred"].values[: T.size], ds["cp"].values[0], rtol=1e-6)
    # a correctly specified model: conditional residuals ~ N(0, 1)
    assert 0.6 < gof["cres"].std() < 1.4 and abs(gof["cres"].mean()) < 0.3
    from il2pkpd.plot import plot_gof

    assert plot_gof(gof) is not None


def test_pc_vpc_bins_and_brackets(nuts_fit, model, subjects):  # noqa: F811
    vpc = diagnostics.pc_vpc(nuts_fit, model, subjects, "cp", n_rep=40, bins=np.r_[T - 0.01, 30.0])
    assert len(vpc) == T.size
    # same design for everyone -> PRED is equal within a bin, so no correction: raw medians
    dv = np.array([[r.dv for r in recs if r.evid == 0] for recs in subjects])
    np.testing.assert_allclose(vpc["obs_q50"].values, np.median(dv, axis=0), rtol=1e-12)
    assert (~vpc["outside"]).sum() >= 6  # the true model: most observed percentiles inside the simulated 95% bands


def test_kaplan_meier_by_hand():
    from il2pkpd.diagnostics import _kaplan_meier

    # times 1,2,2(c),3,5(c): S = 4/5 after t=1, *3/4 after t=2, *1/2 after t=3
    km = _kaplan_meier(np.array([1, 2, 2, 3, 5.0]), np.array([1, 1, 0, 1, 0.0]), np.array([0.5, 1, 2, 2.5, 3, 6]))
    np.testing.assert_allclose(km, [1.0, 0.8, 0.6, 0.6, 0.3, 0.3])


def test_km_vpc_matches_exponential_survival():
    spec = {
        "model": {"name": "exp_tte", "time_unit": "day"},
        "parameters": {"lam": {"value": 0.01, "unit": "1/day"}},
        "states": {"x": {"unit": "1"}},
        "odes": {"x": "0"},
        "outputs": {"y": {"expr": "x", "unit": "1"}},
        "events": {"ev": {"hazard": "lam"}},
    }
    m = il2pkpd.build_model(spec)
    rng = np.random.default_rng(0)
    t_ev = rng.exponential(100.0, 60)
    subjects = [Records([Record(time=float(min(t, 150.0)), evid=0, dv=float(t <= 150.0), event="ev", row=0)], subject=i + 1)
                for i, t in enumerate(t_ev)]
    fit = Fit("exp_tte", None, {}, {"lam": 0.01}, None)
    grid = np.array([0.0, 50.0, 100.0, 150.0])
    # 30 replicate trials (was 60; the cost is linear in n_rep). One replicate's KM estimate
    # from 60 subjects has MC sd sqrt(S(1 - S)/60) <= 0.065; their median over n_rep
    # replicates has sd ~ sqrt(pi/2) * 0.065 / sqrt(n_rep) = 0.015 at n_rep = 30 (0.010 at 60),
    # so atol 0.08, which the single-replicate sd sets, stays > 5 sd of what is compared. The
    # 2.5-97.5% band from fewer replicates is, if anything, narrower: no easier to fall inside.
    vpc = diagnostics.km_vpc(fit, m, subjects, "ev", n_rep=30, grid=grid)
    np.testing.assert_allclose(vpc["sim_med"].values, np.exp(-0.01 * grid), atol=0.08)  # 60 subjects: MC sd ~ 0.06
    assert ((vpc["sim_lo"] <= vpc["observed"]) & (vpc["observed"] <= vpc["sim_hi"])).all()
