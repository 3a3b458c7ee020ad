"""Prior log-densities and unconstraining transforms of model-file priors, in JAX.

Used where the posterior is written directly in JAX (the aggregate-data calibration)
rather than through PyMC. Each prior has a support; parameters are moved to the real line
by ``log(x - lower)`` (one bound), a scaled logit (two bounds) or the identity, and the
log-Jacobian of that map is added so that densities are in the unconstrained space.
"""

from __future__ import annotations

import math

import numpy as np

import jax.numpy as jnp
from jax.scipy.special import betaln, ndtr
from jax.scipy.stats import norm

from ..errors import ModelSpecError

__all__ = ["OMEGA_PRIOR", "sigma_prior", "prior_support", "prior_logpdf", "to_unconstrained", "from_unconstrained", "beta_shape", "prior_draws"]


#: the prior of every IIV SD ``omega_<name>`` (BRIEF 8.1): the PyMC model and MAP-FOCE-I use it
OMEGA_PRIOR = {"dist": "halfnormal", "sd": 0.5}


def sigma_prior(value: float) -> dict:
    """The prior of a residual error parameter whose model-file value is ``value``: half-normal
    of scale twice that value (at least 2e-3), weakly informative on the file's scale."""
    return {"dist": "halfnormal", "sd": 2.0 * max(float(value), 1e-3)}


def beta_shape(mean: float, sd: float) -> tuple[float, float]:
    """(alpha, beta) of a beta distribution with the given mean and SD."""
    kappa = mean * (1 - mean) / sd**2 - 1
    if not (0 < mean < 1 and kappa > 0):
        raise ModelSpecError(f"beta prior needs 0 < mean < 1 and sd < sqrt(mean (1 - mean)), got mean={mean!r}, sd={sd!r}")
    return mean * kappa, (1 - mean) * kappa


def prior_support(prior: dict) -> tuple[float, float]:
    """(lower, upper) of a prior's support (infinite where unbounded)."""
    kind = prior["dist"]
    if kind in ("lognormal", "halfnormal"):
        return 0.0, math.inf
    if kind == "beta":
        return 0.0, 1.0
    if kind in ("uniform", "truncnormal"):
        return float(prior.get("lower", -math.inf)), float(prior.get("upper", math.inf))
    if kind == "normal":
        return -math.inf, math.inf
    raise ModelSpecError(f"unknown prior {kind!r}")


def prior_logpdf(prior: dict, x):
    """Log-density of ``prior`` at ``x`` (natural scale)."""
    kind = prior["dist"]
    if kind == "lognormal":
        return norm.logpdf(jnp.log(x), math.log(prior["median"]), prior["sigma"]) - jnp.log(x)
    if kind == "normal":
        return norm.logpdf(x, prior["mean"], prior["sd"])
    if kind == "halfnormal":
        return math.log(2.0) + norm.logpdf(x, 0.0, prior["sd"])
    if kind == "truncnormal":
        m, s = prior["mean"], prior["sd"]
        lo, hi = prior_support(prior)
        mass = ndtr((hi - m) / s) - ndtr((lo - m) / s)
        return norm.logpdf(x, m, s) - jnp.log(mass)
    if kind == "beta":
        a, b = beta_shape(prior["mean"], prior["sd"])
        return (a - 1) * jnp.log(x) + (b - 1) * jnp.log1p(-x) - betaln(a, b)
    if kind == "uniform":
        lo, hi = prior_support(prior)
        return -math.log(hi - lo) + 0.0 * x
    raise ModelSpecError(f"unknown prior {kind!r}")


def to_unconstrained(prior: dict, x):
    """Natural -> unconstrained value."""
    lo, hi = prior_support(prior)
    if math.isfinite(lo) and math.isfinite(hi):
        p = (x - lo) / (hi - lo)
        return jnp.log(p) - jnp.log1p(-p)
    if math.isfinite(lo):
        return jnp.log(x - lo)
    if math.isfinite(hi):
        return jnp.log(hi - x)
    return jnp.asarray(x, dtype=float)


def from_unconstrained(prior: dict, u):
    """Unconstrained -> (natural value, log |dx/du|)."""
    lo, hi = prior_support(prior)
    if math.isfinite(lo) and math.isfinite(hi):
        s = 1.0 / (1.0 + jnp.exp(-u))
        # log(s (1 - s)) written stably for large |u|
        return lo + (hi - lo) * s, math.log(hi - lo) - jnp.logaddexp(0.0, u) - jnp.logaddexp(0.0, -u)
    if math.isfinite(lo):
        return lo + jnp.exp(u), u
    if math.isfinite(hi):
        return hi - jnp.exp(u), u
    return u, 0.0 * u


def prior_draws(params, n: int, rng) -> np.ndarray:
    """(n, K) draws from the parameters' priors (natural scale)."""
    from scipy import stats

    cols = []
    for p in params:
        d = p.prior
        kind = d["dist"]
        if kind == "lognormal":
            x = np.exp(rng.normal(math.log(d["median"]), d["sigma"], n))
        elif kind == "normal":
            x = rng.normal(d["mean"], d["sd"], n)
        elif kind == "halfnormal":
            x = np.abs(rng.normal(0.0, d["sd"], n))
        elif kind == "truncnormal":
            lo, hi = prior_support(d)
            x = stats.truncnorm.rvs((lo - d["mean"]) / d["sd"], (hi - d["mean"]) / d["sd"], loc=d["mean"], scale=d["sd"], size=n, random_state=rng)
        elif kind == "beta":
            a, b = beta_shape(d["mean"], d["sd"])
            x = rng.beta(a, b, n)
        else:
            lo, hi = prior_support(d)
            x = rng.uniform(lo, hi, n)
        cols.append(x)
    return np.stack(cols, axis=1)
