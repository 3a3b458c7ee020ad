"""Residual error models and below/above-limit (M3) observations, pure JAX.

All functions are elementwise, jit/vmap/grad-safe, and return log-densities (natural log).
Error models (epsilon ~ N(0, 1)):

============  ====================================  ==========================
model         y =                                   parameters
============  ====================================  ==========================
additive      f + add*eps                           add
proportional  f + prop*|f|*eps                      prop
combined      f + sqrt(add^2 + prop^2 f^2)*eps      add, prop (nlmixr2 add()+prop())
lognormal     f*exp(sigma*eps)  (log y ~ N(log f))  sigma
============  ====================================  ==========================
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import log_ndtr

from ..errors import OptionError
from ..model import ERROR_MODEL_PARAMETERS

__all__ = ["ERROR_MODELS", "residual_sd", "loglik_observation", "loglik_censored", "check_error_parameters", "observation_information"]

ERROR_MODELS = tuple(ERROR_MODEL_PARAMETERS)
_LOG_2PI = math.log(2 * math.pi)


def check_error_parameters(model: str, **params: float) -> None:
    """Validate an error model and its parameters at the boundary (Python values).

    Raises
    ------
    OptionError
        Unknown model, or a standard deviation that is not finite and > 0.
    """
    need = ERROR_MODEL_PARAMETERS
    if model not in need:
        raise OptionError(f"`error model` must be one of {list(ERROR_MODELS)}, got {model!r}")
    for k in need[model]:
        v = params.get(k)
        if v is None or not (math.isfinite(v) and v > 0):
            raise OptionError(f"`{k}` of a {model} error model must be a finite number > 0, got {v!r}")


def residual_sd(pred, model: str, add=0.0, prop=0.0, sigma=0.0):
    """Residual standard deviation at prediction ``pred`` (on the log scale for lognormal)."""
    if model == "additive":
        return jnp.broadcast_to(add, jnp.shape(pred)) * jnp.ones_like(pred)
    if model == "proportional":
        return prop * jnp.abs(pred)
    if model == "combined":
        return jnp.sqrt(add**2 + (prop * pred) ** 2)
    if model == "lognormal":
        return jnp.broadcast_to(sigma, jnp.shape(pred)) * jnp.ones_like(pred)
    raise OptionError(f"`model` must be one of {list(ERROR_MODELS)}, got {model!r}")


def _normal_logpdf(x, mu, sd):
    z = (x - mu) / sd
    return -0.5 * (z * z + _LOG_2PI) - jnp.log(sd)


def loglik_observation(y, pred, model: str, add=0.0, prop=0.0, sigma=0.0, sd_pred=None):
    """Log-density of observations ``y`` given predictions ``pred``.

    For ``lognormal`` this is the density of ``y`` itself (log-normal, including the
    Jacobian ``-log y``); ``y <= 0`` or ``pred <= 0`` there give ``-inf``. ``sd_pred``, if
    given, is the prediction the residual SD is evaluated at instead of ``pred`` (FOCE
    without interaction evaluates it at the population prediction).
    """
    if model == "lognormal":
        ok = (y > 0) & (pred > 0)
        ys, ps = jnp.where(ok, y, 1.0), jnp.where(ok, pred, 1.0)
        val = _normal_logpdf(jnp.log(ys), jnp.log(ps), sigma) - jnp.log(ys)
        return jnp.where(ok, val, -jnp.inf)
    return _normal_logpdf(y, pred, residual_sd(pred if sd_pred is None else sd_pred, model, add, prop, sigma))


def observation_information(pred, model: str, add=0.0, prop=0.0, sigma=0.0, sd_pred=None):
    """Fisher information of one observation about its prediction ``pred``.

    For ``y ~ N(f, s(f)^2)``: ``1/s^2 + 2 (s'/s)^2`` (the second term is the information in
    the spread, present when the SD depends on the prediction: NONMEM's "interaction");
    with ``sd_pred`` the SD is held at that prediction and the information is ``1/s^2``.
    Log-normal: ``log y ~ N(log f, sigma^2)`` gives ``1/(sigma f)^2``. FOCE and FOCE-I
    approximate the Hessian of the conditional -2 log-likelihood with it.
    """
    if model == "lognormal":
        return 1.0 / (sigma * jnp.where(pred != 0, pred, 1.0)) ** 2
    if sd_pred is not None:
        return 1.0 / residual_sd(sd_pred, model, add, prop, sigma) ** 2
    sd, dsd = jax.jvp(lambda f: residual_sd(f, model, add, prop, sigma), (pred,), (jnp.ones_like(pred),))
    return 1.0 / sd**2 + 2.0 * (dsd / sd) ** 2


def loglik_censored(limit, pred, model: str, cens, add=0.0, prop=0.0, sigma=0.0, sd_pred=None):
    """M3 likelihood of a censored observation (Beal 2001).

    ``cens = 1``: below the limit (BLQ), ``log P(y < limit)``; ``cens = -1``: above the
    limit, ``log P(y > limit)``. The residual SD is evaluated at the prediction.
    """
    if model == "lognormal":
        ok = (limit > 0) & (pred > 0)
        z = (jnp.log(jnp.where(ok, limit, 1.0)) - jnp.log(jnp.where(ok, pred, 1.0))) / sigma
        below = jnp.where(ok, log_ndtr(z), jnp.where(limit > 0, 0.0, -jnp.inf))
        above = jnp.where(ok, log_ndtr(-z), jnp.where(limit > 0, -jnp.inf, 0.0))
    else:
        z = (limit - pred) / residual_sd(pred if sd_pred is None else sd_pred, model, add, prop, sigma)
        below, above = log_ndtr(z), log_ndtr(-z)
    return jnp.where(cens == 1, below, above)
