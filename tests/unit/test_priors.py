"""Prior log-densities and transforms (il2pkpd.inference.priors) against scipy.stats."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from scipy import stats

from il2pkpd.inference.priors import beta_shape, from_unconstrained, prior_logpdf, to_unconstrained
from il2pkpd.solve._config import configure_jax

configure_jax()

CASES = [
    ({"dist": "lognormal", "median": 9.0, "sigma": 0.41}, stats.lognorm(0.41, scale=9.0), [2.0, 9.0, 30.0]),
    ({"dist": "normal", "mean": 2.3, "sd": 0.3}, stats.norm(2.3, 0.3), [1.5, 2.3, 3.0]),
    ({"dist": "halfnormal", "sd": 0.5}, stats.halfnorm(scale=0.5), [0.01, 0.4, 1.5]),
    ({"dist": "truncnormal", "mean": 0.45, "sd": 0.25, "lower": 0.0, "upper": 1.0}, stats.truncnorm(-1.8, 2.2, loc=0.45, scale=0.25), [0.05, 0.45, 0.9]),
    ({"dist": "beta", "mean": 0.35, "sd": 0.14}, stats.beta(*beta_shape(0.35, 0.14)), [0.05, 0.35, 0.8]),
    ({"dist": "uniform", "lower": 1.0, "upper": 4.0}, stats.uniform(1.0, 3.0), [1.5, 3.9]),
]


@pytest.mark.parametrize("prior, ref, xs", CASES, ids=[c[0]["dist"] for c in CASES])
def test_logpdf_matches_scipy(prior, ref, xs):
    for x in xs:
        assert float(prior_logpdf(prior, x)) == pytest.approx(ref.logpdf(x), rel=1e-10)


@pytest.mark.parametrize("prior, ref, xs", CASES, ids=[c[0]["dist"] for c in CASES])
def test_transform_round_trip_and_log_jacobian(prior, ref, xs):
    for x in xs:
        u = float(to_unconstrained(prior, x))
        back, log_jac = from_unconstrained(prior, u)
        assert float(back) == pytest.approx(x, rel=1e-12)
        dxdu = jax.grad(lambda v: from_unconstrained(prior, v)[0])(u)
        assert float(log_jac) == pytest.approx(np.log(abs(float(dxdu))), rel=1e-9, abs=1e-12)


def test_beta_shape_from_mean_and_sd():
    a, b = beta_shape(0.35, 0.14)
    assert stats.beta(a, b).mean() == pytest.approx(0.35) and stats.beta(a, b).std() == pytest.approx(0.14)
