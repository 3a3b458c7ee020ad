"""Every log-density of il2pkpd.likelihood against scipy.stats or a closed form (PyMC's
`check_logp` habit): value grids, out-of-support values, gradients."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from il2pkpd import OptionError
from il2pkpd.likelihood import (
    check_error_parameters,
    fixed_normals,
    loglik_censored,
    loglik_count,
    loglik_dose_for_target,
    loglik_observation,
    loglik_summary,
    loglik_time_to_event,
    se_from_ci,
)

Y = np.array([0.01, 0.5, 1.0, 2.3, 10.0, 250.0])
F = np.array([0.02, 0.4, 1.0, 3.0, 8.0, 300.0])
GRID = list(itertools.product(Y, F))


def _close(got, want):
    # 1e-10: jax and scipy compute far-tail log-CDFs (log_ndtr) by different series
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("add", [0.05, 1.0])
def test_additive_matches_scipy_norm(add):
    y, f = np.array(GRID).T
    _close(loglik_observation(y, f, "additive", add=add), stats.norm.logpdf(y, f, add))


@pytest.mark.parametrize("prop", [0.1, 0.3])
def test_proportional_matches_scipy_norm(prop):
    y, f = np.array(GRID).T
    _close(loglik_observation(y, f, "proportional", prop=prop), stats.norm.logpdf(y, f, prop * f))


def test_combined_matches_scipy_norm():
    y, f = np.array(GRID).T
    sd = np.sqrt(0.5**2 + (0.1 * f) ** 2)  # nlmixr2 add() + prop(), as in shared/conformance/warfarin
    _close(loglik_observation(y, f, "combined", add=0.5, prop=0.1), stats.norm.logpdf(y, f, sd))


@pytest.mark.parametrize("sigma", [0.1, 0.6])
def test_lognormal_matches_scipy_lognorm(sigma):
    y, f = np.array(GRID).T
    _close(loglik_observation(y, f, "lognormal", sigma=sigma), stats.lognorm.logpdf(y, s=sigma, scale=f))


def test_lognormal_out_of_support_is_minus_infinity():
    out = np.asarray(loglik_observation(np.array([0.0, -1.0, 1.0]), np.array([1.0, 1.0, 0.0]), "lognormal", sigma=0.2))
    assert np.all(np.isneginf(out))


@pytest.mark.parametrize(("model", "kw"), [("additive", {"add": 0.3}), ("proportional", {"prop": 0.2}), ("combined", {"add": 0.1, "prop": 0.2})])
def test_m3_censoring_matches_normal_cdf(model, kw):
    limit, f = np.array(GRID).T
    sd = np.asarray(__import__("il2pkpd").likelihood.residual_sd(f, model, **kw))
    _close(loglik_censored(limit, f, model, np.ones_like(f), **kw), stats.norm.logcdf(limit, f, sd))
    _close(loglik_censored(limit, f, model, -np.ones_like(f), **kw), stats.norm.logsf(limit, f, sd))


def test_m3_censoring_lognormal_matches_scipy():
    limit, f = np.array(GRID).T
    _close(loglik_censored(limit, f, "lognormal", np.ones_like(f), sigma=0.4), stats.lognorm.logcdf(limit, s=0.4, scale=f))
    _close(loglik_censored(limit, f, "lognormal", -np.ones_like(f), sigma=0.4), stats.lognorm.logsf(limit, s=0.4, scale=f))


def test_time_to_event_matches_exponential_and_weibull():
    t = np.array([0.1, 1.0, 2.5, 7.0])
    lam = 0.3
    _close(loglik_time_to_event(np.ones(4), lam * np.ones(4), lam * t), stats.expon.logpdf(t, scale=1 / lam))
    _close(loglik_time_to_event(np.zeros(4), lam * np.ones(4), lam * t), stats.expon.logsf(t, scale=1 / lam))
    k, s = 0.7, 5.0
    h, big_h = k / s * (t / s) ** (k - 1), (t / s) ** k
    _close(loglik_time_to_event(np.ones(4), h, big_h), stats.weibull_min.logpdf(t, k, scale=s))
    _close(loglik_time_to_event(np.zeros(4), h, big_h), stats.weibull_min.logsf(t, k, scale=s))


def test_count_matches_binomial():
    for events, n, p in [(0, 28, 0.05), (3, 27, 0.11), (10, 10, 0.9)]:  # IVORY-FINALE-like counts (BRIEF 1.7, inferred)
        _close(loglik_count(p, events, n), stats.binom.logpmf(events, n, p))


def test_summary_and_ci_to_se():
    se = se_from_ci(-0.308, -0.034)  # IVORY index-vessel difference (S12)
    assert se == pytest.approx(0.0699, abs=5e-4)  # BRIEF 1.4: SE ~0.070
    _close(loglik_summary(-0.12, -0.171, se), stats.norm.logpdf(-0.171, -0.12, se))
    with pytest.raises(ValueError, match="upper"):
        se_from_ci(1.0, 0.5)


def test_dose_for_target_is_the_delta_method_normal():
    _close(loglik_dose_for_target(1.70, 0.45, 1.75, 0.21), stats.norm.logpdf(1.75, 1.70, 0.45 * 0.21))


def test_gradients_match_the_analytic_score():
    g = jax.grad(lambda f: jnp.sum(loglik_observation(jnp.array([1.0, 2.0]), f, "additive", add=0.5)))(jnp.array([1.5, 1.0]))
    _close(g, (np.array([1.0, 2.0]) - np.array([1.5, 1.0])) / 0.25)
    g2 = jax.grad(lambda s: loglik_observation(2.0, 1.0, "lognormal", sigma=s))(0.3)
    z = np.log(2.0) / 0.3
    assert float(g2) == pytest.approx((z * z - 1) / 0.3, rel=1e-10)


def test_fixed_normals_are_deterministic_and_standard():
    a, b = fixed_normals(4096, 3, seed=1), fixed_normals(4096, 3, seed=1)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (4096, 3)
    assert np.all(np.abs(a.mean(axis=0)) < 0.01) and np.all(np.abs(a.std(axis=0) - 1) < 0.01)
    assert not np.array_equal(a, fixed_normals(4096, 3, seed=2))


def test_bad_error_parameters_are_refused_with_the_value():
    with pytest.raises(OptionError, match=r"`add` of a additive error model must be a finite number > 0, got -0.1"):
        check_error_parameters("additive", add=-0.1)
    with pytest.raises(OptionError, match="'poisson'"):
        check_error_parameters("poisson")
    check_error_parameters("combined", add=0.1, prop=0.2)
