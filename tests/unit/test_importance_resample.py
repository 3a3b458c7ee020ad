"""The importance-resampling step of the published calibration, on targets with closed forms.

Target N(0, 1) with a normal proposal N(0, s^2): the weight ratio is bounded when s > 1
(Pareto k-hat small, resampled draws recover mean 0 and sd 1) and has infinite variance when
s < 1/sqrt(2) (k-hat > 0.7 in theory: k = 1 - s^2 ... > 0.5; at s = 0.3, k ~ 0.9), where
the step must refuse to correct and keep the proposal draws instead.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from il2pkpd.errors import OptionError
from il2pkpd.inference.calibration import _importance_resample


def _weights(scale: float, n: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, scale, n)
    return x, stats.norm.logpdf(x) - stats.norm.logpdf(x, scale=scale)


def test_equal_weights_keep_every_draw_once():
    log_w = np.zeros(200)
    idx, khat, ess, method = _importance_resample(log_w, np.isfinite(log_w), np.random.default_rng(0))
    assert method == "importance" and khat == 0.0
    assert ess == pytest.approx(200.0)  # ESS = n for equal weights
    np.testing.assert_array_equal(np.sort(idx), np.arange(200))


def test_wide_proposal_is_corrected_to_the_target():
    x, log_w = _weights(1.6, 4000)
    idx, khat, ess, method = _importance_resample(log_w, np.isfinite(log_w), np.random.default_rng(0))
    assert method == "importance" and khat < 0.5
    # resampled draws follow N(0, 1): Monte Carlo error of the mean ~ 1/sqrt(ESS)
    assert abs(np.mean(x[idx])) < 4.0 / np.sqrt(ess)
    assert np.std(x[idx]) == pytest.approx(1.0, abs=0.08)


def test_narrow_proposal_is_refused_and_failed_solves_dropped():
    x, log_w = _weights(0.3, 2000)
    log_w[:7] = -np.inf  # proposals whose solve failed
    idx, khat, _, method = _importance_resample(log_w, np.isfinite(log_w), np.random.default_rng(0))
    assert method == "laplace" and not (khat < 0.7)
    np.testing.assert_array_equal(idx, np.arange(7, 2000))


def test_too_few_solvable_proposals_is_an_error():
    log_w = np.full(50, -np.inf)
    log_w[:3] = 0.0
    with pytest.raises(OptionError, match="only 3 of 50 proposals"):
        _importance_resample(log_w, np.isfinite(log_w), np.random.default_rng(0))


def test_adaptive_rounds_correct_a_proposal_too_narrow_and_off_centre():
    """AMIS on a correlated 4-dimensional normal target (closed-form moments): the first
    proposal, off centre and with half the target's SDs, fails k-hat (its weights have infinite
    variance); the adapted rounds pass it, and the importance-weighted pool recovers the
    target's mean and SDs within Monte Carlo error."""
    from il2pkpd.inference.calibration import _adaptive_importance, _psis

    mean = np.array([1.0, -2.0, 0.5, 3.0])
    sd = np.array([1.0, 0.5, 2.0, 1.5])
    corr = np.full((4, 4), 0.3) + 0.7 * np.eye(4)
    cov = corr * np.outer(sd, sd)
    target = stats.multivariate_normal(mean, cov)
    rounds_seen = []

    def evaluate(u, label):
        rounds_seen.append(label)
        return target.logpdf(u)

    u, log_p, log_w, rounds = _adaptive_importance(evaluate, mean + 0.5 * sd, 0.25 * cov, n_round=2000, max_rounds=6,
                                                   rng=np.random.default_rng(3), say=lambda m: None)
    assert rounds[0]["pareto_khat"] >= 0.7 and rounds[-1]["pareto_khat"] < 0.7 and len(rounds) >= 2
    assert len(rounds_seen) == len(rounds) and len(u) == 2000 * len(rounds)
    np.testing.assert_allclose(log_p, target.logpdf(u))
    lw, khat = _psis(log_w)
    w = np.exp(lw)
    ess = 1.0 / np.sum(w**2)
    est_mean = w @ u
    est_sd = np.sqrt(w @ (u - est_mean) ** 2)
    assert np.all(np.abs(est_mean - mean) <= 4 * sd / np.sqrt(ess)), (est_mean, ess)
    assert np.all(np.abs(est_sd / sd - 1) <= 6 / np.sqrt(ess)), (est_sd, ess)


def test_a_target_the_first_proposal_matches_stops_after_one_round():
    from il2pkpd.inference.calibration import _adaptive_importance

    target = stats.multivariate_normal(np.zeros(3), np.eye(3))
    _, _, _, rounds = _adaptive_importance(lambda u, label: target.logpdf(u), np.zeros(3), np.eye(3), n_round=500, max_rounds=4,
                                           rng=np.random.default_rng(0), say=lambda m: None)
    assert len(rounds) == 1 and rounds[0]["pareto_khat"] == 0.0 and rounds[0]["importance_ess"] == pytest.approx(500)


def test_rounds_go_on_until_the_importance_ess_reaches_min_ess():
    """A proposal twice as wide (in SD) as the N(0, I) target passes k-hat at once but keeps few
    effective draws (ESS/n = 1/E[w^2] = (sqrt(2 - 1/4) / 2)^3 = 0.29 in 3 dimensions, the
    closed-form second moment of the weights); asked for more, the rounds go on until the pool's ESS reaches it."""
    from il2pkpd.inference.calibration import _adaptive_importance

    target = stats.multivariate_normal(np.zeros(3), np.eye(3))
    _, _, _, rounds = _adaptive_importance(lambda u, label: target.logpdf(u), np.zeros(3), 4.0 * np.eye(3), n_round=300, max_rounds=6,
                                           rng=np.random.default_rng(1), say=lambda m: None, min_ess=400)
    assert rounds[0]["pareto_khat"] < 0.7 and rounds[0]["importance_ess"] < 400
    assert len(rounds) >= 2 and rounds[-1]["importance_ess"] >= 400


def test_student_t_proposals_cover_a_heavy_tailed_target_that_normal_ones_do_not():
    """A multivariate t(4) target (closed-form covariance 2 I). A normal proposal of half that
    covariance has lighter tails than the target: its importance weights have infinite
    variance and k-hat fails (0.76 here); a t(4) proposal of the same covariance passes it
    (its tails are the target's). A t(4) proposal of the target's covariance is the target:
    equal weights, and the pool's SDs are the closed-form sqrt(df / (df - 2)) = sqrt(2)."""
    from il2pkpd.inference.calibration import _adaptive_importance, _psis

    target = stats.multivariate_t(np.zeros(3), np.eye(3), df=4)

    def run(cov, df):
        return _adaptive_importance(lambda u, label: target.logpdf(u), np.zeros(3), cov, df=df, n_round=3000, max_rounds=1,
                                    rng=np.random.default_rng(7), say=lambda m: None)

    assert run(np.eye(3), None)[3][0]["pareto_khat"] >= 0.7 > run(np.eye(3), 4.0)[3][0]["pareto_khat"]
    u, _, log_w, rounds = run(2.0 * np.eye(3), 4.0)
    assert rounds[0]["importance_ess"] == pytest.approx(3000)
    lw, _ = _psis(log_w)
    np.testing.assert_allclose(np.sqrt(np.exp(lw) @ u**2), np.sqrt(2.0), rtol=0.1)


def test_confirm_asks_for_passing_rounds_in_a_row():
    from il2pkpd.inference.calibration import _adaptive_importance

    target = stats.multivariate_normal(np.zeros(3), np.eye(3))
    _, _, _, rounds = _adaptive_importance(lambda u, label: target.logpdf(u), np.zeros(3), np.eye(3), n_round=500, max_rounds=4,
                                           rng=np.random.default_rng(0), say=lambda m: None, confirm=2)
    assert len(rounds) == 2 and all(r["pareto_khat"] < 0.7 for r in rounds)


def test_a_prior_block_proposes_uninformed_parameters_exactly():
    """22 parameters: 2 informed by a normal likelihood (closed-form normal posterior: precision
    1 + 25, mean 25/26 of the observation) and 20 uniform on (0, 1) that the data do not touch
    (their posterior is the prior: logistic in the logit space, variance pi^2/3). The Laplace
    normal gives those 20 a variance of 2, too light in the tails: its importance ESS is a few
    percent of the draws. Drawing the 20 from their priors (the prior block, which
    _uninformed finds from the Laplace fit) leaves only the informed pair to the proposal,
    here exact: the weights are equal, k-hat passes, and the pool has the closed-form moments."""
    from types import SimpleNamespace

    from il2pkpd.inference.calibration import _adaptive_importance, _prior_block, _psis, _uninformed

    m = 20
    params = [SimpleNamespace(prior={"dist": "normal", "mean": 0.0, "sd": 1.0})] * 2 + \
             [SimpleNamespace(prior={"dist": "uniform", "lower": 0.0, "upper": 1.0})] * m
    obs = np.array([1.0, -1.0])

    def log_target(u, label=None):
        informed = np.sum(stats.norm.logpdf(u[:, :2]) + stats.norm.logpdf(obs, u[:, :2], 0.2), axis=1)
        return informed + np.sum(-u[:, 2:] - 2 * np.log1p(np.exp(-u[:, 2:])), axis=1)  # logistic

    mode = np.concatenate([25 / 26 * obs, np.zeros(m)])
    laplace = np.diag([1 / 26] * 2 + [2.0] * m)
    dims = _uninformed(params, mode, laplace, np.random.default_rng(1))
    np.testing.assert_array_equal(dims, np.arange(2, 2 + m))
    kw = dict(n_round=4000, max_rounds=1, rng=np.random.default_rng(2), say=lambda msg: None)
    assert _adaptive_importance(log_target, mode, laplace, **kw)[3][0]["importance_ess"] < 0.15 * 4000
    u, _, log_w, rounds = _adaptive_importance(log_target, mode, laplace, prior_block=_prior_block(params[2:], dims), **kw)
    assert rounds[0]["pareto_khat"] < 0.7 and rounds[0]["importance_ess"] > 0.99 * 4000
    lw, _ = _psis(log_w)
    w = np.exp(lw)
    np.testing.assert_allclose(w @ u[:, :2], 25 / 26 * obs, atol=4 * np.sqrt(1 / 26 / 4000))
    np.testing.assert_allclose(np.mean(w @ u[:, 2:] ** 2), np.pi**2 / 3, rtol=0.05)


def test_a_prior_block_with_a_slope_follows_a_posterior_correlated_across_the_blocks():
    """Two parameters with N(0, 1) and N(0, 3^2) priors and one observation of their sum
    (SD 0.1): the first stays near its prior (it is 'uninformed' alone) but the second moves
    with it (u2 ~ obs - u1). Drawing u2 from its marginal, independently of the prior-drawn u1,
    loses most of the ESS; proposing it given u1 by the Laplace regression (exact here: the
    target is normal) keeps all of it, and the pool has the closed-form posterior moments."""
    from types import SimpleNamespace

    from il2pkpd.inference.calibration import _adaptive_importance, _prior_block, _psis

    obs, prior_sd = 1.0, np.array([1.0, 3.0])
    # the exact normal posterior: precision = prior precision + a a^T / 0.1^2 with a = (1, 1)
    prec = np.diag(1 / prior_sd**2) + np.ones((2, 2)) / 0.01
    cov = np.linalg.inv(prec)
    mean = cov @ (np.ones(2) * obs / 0.01)
    target = stats.multivariate_normal(mean, cov)
    params = [SimpleNamespace(prior={"dist": "normal", "mean": 0.0, "sd": 1.0})]
    block = _prior_block(params, np.array([0]))
    slope = cov[1:, :1] / cov[0, 0]
    kw = dict(n_round=4000, max_rounds=1, rng=np.random.default_rng(4), say=lambda msg: None)
    # the first parameter's posterior is not its prior here, so weights are not all equal;
    # the marginal proposal for u2 still loses far more than the conditional one
    lost = _adaptive_importance(lambda u, label: target.logpdf(u), mean, cov, prior_block=block, **kw)[3][0]["importance_ess"]
    u, _, log_w, rounds = _adaptive_importance(lambda u, label: target.logpdf(u), mean, cov, prior_block=_prior_block(params, np.array([0]), slope), **kw)
    assert rounds[0]["importance_ess"] > 5 * lost and rounds[0]["pareto_khat"] < 0.7
    lw, _ = _psis(log_w)
    w = np.exp(lw)
    ess = 1.0 / np.sum(w**2)
    assert np.all(np.abs(w @ u - mean) <= 5 * np.sqrt(np.diag(cov) / ess)), (w @ u, mean)
    centred = u - w @ u
    np.testing.assert_allclose((centred * w[:, None]).T @ centred, cov, rtol=0.15, atol=0.02)
