"""Special functions of the expression language that need more than sympy's elementary
functions: a normal CDF (NONMEM's ``PHI``) and the hazard of a log-normal time to event.

Each is a sympy function for the symbolic layer (dimensions, Jacobians) with a numerically
stable JAX and NumPy implementation for the generated code. The table :data:`SPECIAL` is
the one place they are registered: the parser, the dimension checker and the code
generator read it.

The log-normal hazard is a function rather than something a user writes with
``normcdf``: written out, ``phi(z)/(sigma*t*(1 - PHI(z)))`` is ``0/0`` at ``t = 0``, where
every solve of a hazard starts (NaN in the first solver stage), and ``1 - PHI(z)`` cancels
to 0 in the upper tail. Here it is 0 at ``t <= 0`` (its limit) and evaluated in logs
(``log_ndtr``) elsewhere, with gradients that stay finite.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import sympy as sp

__all__ = ["SPECIAL", "Special", "normcdf", "lognormal_hazard"]

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


class normcdf(sp.Function):  # noqa: N801 - the name the expression language and generated code use
    """Standard normal cumulative distribution function Phi(x) (NONMEM's ``PHI``)."""

    nargs = 1

    def fdiff(self, argindex=1):
        x = self.args[0]
        return sp.exp(-(x**2) / 2) / sp.sqrt(2 * sp.pi)

    @classmethod
    def eval(cls, x):
        if x.is_Number:  # constants fold exactly (erfc is exact in sympy)
            return sp.erfc(-x / sp.sqrt(2)) / 2
        return None

    def _eval_is_real(self):
        return self.args[0].is_real


def _lognormal_hazard_explicit(t, tmed, sigma):
    z = sp.log(t / tmed) / sigma
    return sp.exp(-(z**2) / 2) / (sp.sqrt(2 * sp.pi) * sigma * t * sp.erfc(z / sp.sqrt(2)) / 2)


class lognormal_hazard(sp.Function):  # noqa: N801
    """Hazard ``h(t)`` (1/time) of a log-normal time to event with median ``tmed`` (the
    same unit as ``t``) and log-scale standard deviation ``sigma`` (dimensionless):
    ``h = phi(z) / (sigma t (1 - Phi(z)))`` with ``z = log(t/tmed)/sigma``; 0 at ``t <= 0``.
    Its cumulative hazard is ``-log(1 - Phi(z))``."""

    nargs = 3

    def fdiff(self, argindex=1):
        # derivative of the closed form with respect to one argument (sympy applies the
        # chain rule); only a Jacobian with a state inside the arguments needs it
        dummies = sp.symbols("_t _m _s", positive=True)
        d = sp.diff(_lognormal_hazard_explicit(*dummies), dummies[argindex - 1])
        return d.subs(dict(zip(dummies, self.args)))

    def _eval_evalf(self, prec):
        t, tmed, sigma = self.args
        if t.is_Number and t <= 0:
            return sp.Float(0, prec)
        return _lognormal_hazard_explicit(t, tmed, sigma)._eval_evalf(prec)

    def _eval_is_real(self):
        return all(a.is_real for a in self.args) or None


def _normcdf_jax(x):
    from jax.scipy.special import ndtr

    return ndtr(x)


def _lognormal_hazard_jax(t, tmed, sigma):
    import jax.numpy as jnp
    from jax.scipy.special import log_ndtr

    positive = t > 0
    # both branches of `where` are evaluated (and differentiated): keep the discarded one finite
    safe_t = jnp.where(positive, t, tmed)
    z = jnp.log(safe_t / tmed) / sigma
    log_h = -0.5 * z * z - _LOG_SQRT_2PI - log_ndtr(-z) - jnp.log(sigma * safe_t)
    return jnp.where(positive, jnp.exp(log_h), 0.0)


def _normcdf_numpy(x):
    from scipy.special import ndtr

    return ndtr(x)


def _lognormal_hazard_numpy(t, tmed, sigma):
    from scipy.special import log_ndtr

    t, tmed, sigma = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (t, tmed, sigma)))
    positive = t > 0
    safe_t = np.where(positive, t, tmed)
    z = np.log(safe_t / tmed) / sigma
    log_h = -0.5 * z * z - _LOG_SQRT_2PI - log_ndtr(-z) - np.log(sigma * safe_t)
    return np.where(positive, np.exp(log_h), 0.0)


@dataclass(frozen=True)
class Special:
    """One special function: its sympy class, implementations and dimension rule.

    ``dims(arg_dims, is_dimless, same) -> result dims`` gets the arguments' dimension
    vectors and two helpers from the dimension checker, and raises its ``DimensionError``
    (through the helpers) when the arguments do not fit.
    """

    function: type[sp.Function]
    jax: Callable
    numpy: Callable
    signature: str
    dims: Callable


def _dims_dimensionless_in_out(args, require_dimensionless, same, zero):
    require_dimensionless(0)
    return zero


def _dims_lognormal_hazard(args, require_dimensionless, same, zero):
    d_t = same((0, 1), "given as `t` and `tmed` of lognormal_hazard(t, tmed, sigma)")
    require_dimensionless(2)
    return zero if d_t is None else tuple(-x for x in d_t)


#: Special functions by the name an expression calls them with.
SPECIAL: dict[str, Special] = {
    "normcdf": Special(normcdf, _normcdf_jax, _normcdf_numpy, "normcdf(x)", _dims_dimensionless_in_out),
    "lognormal_hazard": Special(lognormal_hazard, _lognormal_hazard_jax, _lognormal_hazard_numpy,
                                "lognormal_hazard(t, tmed, sigma)", _dims_lognormal_hazard),
}
