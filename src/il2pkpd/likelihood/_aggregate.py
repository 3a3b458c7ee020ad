"""Aggregate-data likelihoods: published summaries against a virtual population, pure JAX.

A published result (a mean or difference with its CI, an event count out of n, a dose
giving a target response) is compared with the same summary computed from virtual
subjects whose random effects come from FIXED quasi-random normals (:func:`fixed_normals`),
so that the likelihood is a smooth, differentiable function of the population parameters.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln
from scipy.stats import norm, qmc

__all__ = ["se_from_ci", "loglik_summary", "loglik_count", "loglik_dose_for_target", "fixed_normals"]

_LOG_2PI = math.log(2 * math.pi)


def se_from_ci(lower: float, upper: float, level: float = 0.95) -> float:
    """Standard error implied by a symmetric normal CI: (upper - lower) / (2 z)."""
    if not upper > lower:
        raise ValueError(f"`upper` must exceed `lower`, got lower={lower!r}, upper={upper!r}")
    if not 0 < level < 1:
        raise ValueError(f"`level` must be in (0, 1), got {level!r}")
    return (upper - lower) / (2 * norm.ppf(0.5 + level / 2))


def loglik_summary(model_value, reported: float, se):
    """Normal log-likelihood of a reported mean/difference given the model's value (``se`` may
    depend on the parameters: a JAX value)."""
    z = (reported - model_value) / se
    return -0.5 * (z * z + _LOG_2PI) - jnp.log(se)


def loglik_count(p_model, events: int, n: int):
    """Binomial log-probability of ``events`` out of ``n`` with model probability ``p_model``.

    ``p_model`` is typically the mean of ``1 - S_i(T)`` over the virtual population.
    """
    p = jnp.clip(p_model, 1e-300, 1 - 1e-16)
    log_choose = gammaln(n + 1.0) - gammaln(events + 1.0) - gammaln(n - events + 1.0)
    return log_choose + events * jnp.log(p) + (n - events) * jnp.log1p(-p)


def loglik_dose_for_target(response_at_dose, slope_at_dose, target: float, dose_se: float):
    """Likelihood of a reported "dose giving a target response" (e.g. LILACS ED75).

    By the delta method, if the model's response at the reported dose is r(d) with slope
    r'(d), the reported dose's error se_d maps to a response error |r'(d)| se_d; the
    likelihood is N(target; r(d), (r'(d) se_d)^2). Smooth in the parameters, no root finding.
    """
    sd = jnp.abs(slope_at_dose) * dose_se
    z = (target - response_at_dose) / sd
    return -0.5 * (z * z + _LOG_2PI) - jnp.log(sd)


def fixed_normals(n: int, d: int, seed: int = 0) -> np.ndarray:
    """(n, d) standard normals from a scrambled Sobol sequence (fixed by ``seed``).

    Used as the random effects of an aggregate-data virtual population: fixed draws keep the
    likelihood deterministic and smooth; quasi-random draws cover the distribution evenly.
    """
    if n < 1 or d < 1:
        raise ValueError(f"`n` and `d` must be >= 1, got n={n!r}, d={d!r}")
    u = qmc.Sobol(d, scramble=True, seed=seed).random(n)
    return norm.ppf(np.clip(u, 1e-12, 1 - 1e-12))
