"""Generate JAX functions from a model's sympy form.

sympy's ``lambdify`` (JAX printer, common-subexpression elimination) writes one Python
function per group of expressions; each takes plain arrays and is jit/vmap/grad-safe.
Everything is in the model's declared units: states in their units, time in the model's
clock, parameters and covariates as declared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np
import sympy as sp

from ._special import SPECIAL

__all__ = ["CompiledModel", "compile_model"]


@dataclass(frozen=True, eq=False)
class CompiledModel:
    """JAX callables of a model (all arrays float64 when x64 is on).

    Attributes
    ----------
    rhs(t, y, theta, cov) -> dy
        The ODE right-hand side without dose input.
    outputs(t, y, theta, cov) -> out
        All outputs (model outputs, then event hazards and survivals).
    initial(theta, cov) -> y0
    dose(theta, cov) -> (f, lag, rate, duration)
        Per-state bioavailability, lag, modelled rate and modelled duration.
    jacobian(t, y, theta, cov) -> J
        d(rhs)/dy from sympy (used by the SciPy backend and steady-state Newton steps).
    """

    n_states: int
    n_outputs: int
    rhs: Callable
    outputs: Callable
    initial: Callable
    dose: Callable
    jacobian: Callable
    rhs_numpy: Callable
    jacobian_numpy: Callable
    outputs_numpy: Callable


_SAFE_POW = sp.Function("safe_pow")


def _jax_safe_pow(base, exponent):
    # Both branches are evaluated, so the discarded one must stay finite: otherwise a
    # NaN from 0**h or log(0) leaks into (second) derivatives through jnp.where.
    positive = base > 0
    safe_base = jnp.where(positive, base, 1.0)
    return jnp.where(positive, safe_base**exponent, 0.0)


def _numpy_safe_pow(base, exponent):
    positive = np.asarray(base) > 0
    safe_base = np.where(positive, base, 1.0)
    return np.where(positive, safe_base**exponent, 0.0)


def _with_safe_powers(expr: sp.Expr) -> sp.Expr:
    """``a**b`` with a non-integer ``b`` -> ``safe_pow(a, b)`` (0 for ``a <= 0``).

    A concentration raised to a Hill coefficient is the typical case: at a zero
    concentration its derivative with respect to the exponent (``a**b * log a``) and its
    second derivatives are 0 * inf = NaN under autodiff, and round-off may push a
    concentration a hair below zero, where a real power is undefined.
    """
    return expr.replace(lambda e: e.is_Pow and not e.exp.is_Integer, lambda e: _SAFE_POW(e.base, e.exp))


def _vector_fn(args: list, exprs: list[sp.Expr], module: str) -> Callable:
    exprs = [_with_safe_powers(sp.sympify(e)) for e in exprs]
    safe_pow = _jax_safe_pow if module == "jax" else _numpy_safe_pow
    special = {name: getattr(s, module) for name, s in SPECIAL.items()}
    fn = sp.lambdify(args, exprs, modules=[{"safe_pow": safe_pow, **special}, module], cse=True)
    xp = jnp if module == "jax" else np

    def wrapped(*a):
        vals = fn(*a)
        return xp.stack([xp.asarray(v, dtype=float) * xp.ones((), dtype=float) for v in vals])

    return wrapped


def _matrix_fn(args: list, matrix: sp.Matrix, module: str) -> Callable:
    n, m = matrix.shape
    flat = _vector_fn(args, list(matrix), module)
    return lambda *a: flat(*a).reshape(n, m)


def compile_model(model) -> CompiledModel:
    """Compile a :class:`~il2pkpd.model.Model` into :class:`CompiledModel`."""
    sym = model.symbolic
    t, y, th, cv = sym.t, sym.state_symbols, sym.parameter_symbols, sym.covariate_symbols
    full = [t, y, th, cv]
    static = [th, cv]
    jac = sym.jacobian()
    return CompiledModel(
        n_states=len(y),
        n_outputs=len(sym.outputs),
        rhs=_vector_fn(full, sym.rhs, "jax"),
        outputs=_vector_fn(full, sym.outputs, "jax"),
        initial=_vector_fn(static, sym.initial, "jax"),
        dose=_dose_fn(static, sym.dose),
        jacobian=_matrix_fn(full, jac, "jax"),
        rhs_numpy=_vector_fn(full, sym.rhs, "numpy"),
        jacobian_numpy=_matrix_fn(full, jac, "numpy"),
        outputs_numpy=_vector_fn(full, sym.outputs, "numpy"),
    )


def _dose_fn(args: list, dose: list[tuple]) -> Callable:
    flat = _vector_fn(args, [e for row in dose for e in row], "jax")
    n = len(dose)

    def fn(theta, cov):
        v = flat(theta, cov).reshape(n, 4)
        return v[:, 0], v[:, 1], v[:, 2], v[:, 3]

    return fn
