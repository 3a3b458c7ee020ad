"""Rodas4: a stiffly accurate, L-stable Rosenbrock method as a diffrax solver.

PK/PD models are stiff in a characteristic way: a fast distribution/elimination phase
(IL-2: CL/Vc ~ 3/h, a 13-minute alpha half-life) sits inside a slow response (Tregs over
days, TBR over months, events over years). An explicit method is held to steps of a few
minutes by stability long after the fast phase has died out; an implicit method is not.

A Rosenbrock method is linearly implicit: each step solves a few linear systems with one
matrix ``W = I/(gamma h) - J`` instead of iterating Newton to convergence. For PK-sized
systems (5-20 states) the LU factorisation is cheap, and because a step is a fixed sequence
of arithmetic, reverse-mode differentiation through it is exact (discretise-then-
differentiate) without the implicit-function correction a Newton solver would need.

Formulation (Hairer & Wanner, *Solving ODEs II*, section IV.7, the RODAS convention)::

    u_i   = u + sum_{j<i} a_ij k_j
    W k_i = f(t + c_i h, u_i) + d_i h f_t + (1/h) sum_{j<i} C_ij k_j
    u_new = u + sum_i b_i k_i

Rodas4 is stiffly accurate (``b = a[s-1]`` plus ``b_s = 1``), so ``u_new = u_s + k_s`` and
the embedded third-order solution is ``u_s``: the error estimate is the last stage ``k_s``.
Coefficients: Hairer & Wanner (1996), RODAS4, as tabulated in OrdinaryDiffEq.jl's
``Rodas4Tableau``. They are pinned by the measured convergence order in the test suite.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ClassVar

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Rodas4", "rodas4_step", "rodas4_step_saving", "rodas4_step_vjp", "rodas4_step_forward"]

_GAMMA = 0.25
_C = np.array([0.0, 0.386, 0.21, 0.63, 1.0, 1.0])
_D = np.array([0.25, -0.1043, 0.1035, -0.0362, 0.0, 0.0])
_A = np.array([
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    [1.544, 0.0, 0.0, 0.0, 0.0, 0.0],
    [0.9466785280815826, 0.2557011698983284, 0.0, 0.0, 0.0, 0.0],
    [3.314825187068521, 2.896124015972201, 0.9986419139977817, 0.0, 0.0, 0.0],
    [1.221224509226641, 6.019134481288629, 12.53708332932087, -0.687886036105895, 0.0, 0.0],
    [1.221224509226641, 6.019134481288629, 12.53708332932087, -0.687886036105895, 1.0, 0.0],
])
_CC = np.array([
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    [-5.6688, 0.0, 0.0, 0.0, 0.0, 0.0],
    [-2.430093356833875, -0.2063599157091915, 0.0, 0.0, 0.0, 0.0],
    [-0.1073529058151375, -9.594562251023355, -20.47028614809616, 0.0, 0.0, 0.0],
    [7.496443313967647, -10.24680431464352, -33.99990352819905, 11.7089089320616, 0.0, 0.0],
    [8.083246795921522, -7.981132988064893, -31.52159432874371, 16.31930543123136, -6.058818238834054, 0.0],
])
_STAGES = 6


def _inverse(a):
    """Gauss-Jordan inverse with partial pivoting, unrolled (small n): no LAPACK call."""
    n = a.shape[0]
    aug = jnp.concatenate([a, jnp.eye(n, dtype=a.dtype)], axis=1)
    rows = jnp.arange(n)
    for k in range(n):
        col = jnp.where(rows >= k, jnp.abs(aug[:, k]), -1.0)
        p = jnp.argmax(col)
        rk, rp = aug[k], aug[p]
        aug = aug.at[p].set(rk).at[k].set(rp)
        pivot_row = aug[k] / aug[k, k]
        factors = aug[:, k].at[k].set(0.0)
        aug = aug - factors[:, None] * pivot_row[None, :]
        aug = aug.at[k].set(pivot_row)
    return aug[:, n:]


#: smallest pivot, relative to the largest entry, the non-pivoting inverse accepts
_PIVOT_FLOOR = 1e-6


@jax.custom_jvp
def _inverse_fast(a):
    """Gauss-Jordan inverse without pivoting (unrolled: 3x faster than with pivoting for
    n ~ 13), falling back to :func:`_inverse` when a pivot is small or the result is not
    finite. ``W = I/(gamma h) - J`` is diagonally dominant for the small steps of a fast
    phase; only long steps over a slow phase can make it otherwise."""
    n = a.shape[0]
    aug = jnp.concatenate([a, jnp.eye(n, dtype=a.dtype)], axis=1)
    smallest = jnp.asarray(jnp.inf, dtype=a.dtype)
    for k in range(n):
        pivot = aug[k, k]
        smallest = jnp.minimum(smallest, jnp.abs(pivot))
        row = aug[k] / pivot
        aug = aug - aug[:, k : k + 1] * row[None, :]
        aug = aug.at[k].set(row)
    inv = aug[:, n:]
    ok = (smallest > _PIVOT_FLOOR * jnp.max(jnp.abs(a))) & jnp.all(jnp.isfinite(inv))
    return jax.lax.cond(ok, lambda: inv, lambda: _inverse(a))


@_inverse_fast.defjvp
def _inverse_fast_jvp(primals, tangents):
    """``d(A^-1) = -A^-1 dA A^-1``: two matrix products per tangent, where JAX's own forward
    mode would differentiate the unrolled elimination (and the fallback's branch) operation by
    operation. The rule calls :func:`_inverse_fast` again, so nested (higher-order) forward
    mode uses it at every order."""
    (a,), (da,) = primals, tangents
    inv = _inverse_fast(a)
    return inv, -inv @ da @ inv


def _stage_input(i: int, y0, ks):
    """``u_i = y0 + sum_{j<i} a_ij k_j``."""
    u_i = y0
    for j in range(i):
        if _A[i, j] != 0.0:
            u_i = u_i + _A[i, j] * ks[j]
    return u_i


def _stages(f: Callable, w_inv, f_t, t0, h, y0, w_solve: Callable | None = None):
    """The stage inputs ``u_i`` and stage values ``k_i`` of one step (module docstring);
    ``w_solve(v)`` replaces ``w_inv @ v`` where given."""
    w_solve = w_solve or (lambda v: w_inv @ v)
    us, ks = [], []
    for i in range(_STAGES):
        u_i = _stage_input(i, y0, ks)
        rhs = _D[i] * h * f_t
        for j in range(i):
            if _CC[i, j] != 0.0:
                rhs = rhs + (_CC[i, j] / h) * ks[j]
        us.append(u_i)
        ks.append(w_solve(f(t0 + _C[i] * h, u_i) + rhs))
    return us, ks


def rodas4_step(f: Callable, jac, f_t, t0, h, y0):
    """One Rodas4 step of size ``h`` from ``(t0, y0)``.

    Parameters
    ----------
    f
        ``f(t, y)``, the vector field.
    jac, f_t
        ``df/dy`` (n, n) and ``df/dt`` (n,) at ``(t0, y0)``.

    Returns
    -------
    y1, error
        The 4th-order solution and the embedded error estimate (the last stage).
    """
    y1, err, _ = rodas4_step_saving(f, jac, f_t, t0, h, y0)
    return y1, err


def rodas4_step_saving(f: Callable, jac, f_t, t0, h, y0):
    """:func:`rodas4_step`, also returning what :func:`rodas4_step_vjp` would recompute:
    ``saved = (w_inv (n, n), f_t (n,), ks (stages, n))``."""
    n = y0.shape[0]
    w = jnp.eye(n, dtype=y0.dtype) / (_GAMMA * h) - jac
    # An unrolled inverse beats LAPACK for n ~ 5-20 on CPU (IVORY, n = 13: 2.4 us without
    # pivoting, 7.1 us with, 4.7 us LAPACK): six stage solves become matrix-vector products
    w_inv = _inverse_fast(w)
    _, ks = _stages(f, w_inv, f_t, t0, h, y0)
    return _stage_input(_STAGES - 1, y0, ks) + ks[-1], ks[-1], (w_inv, f_t, jnp.stack(ks))


def rodas4_step_forward(field: Callable, args, t0, h, y0):
    """:func:`rodas4_step_saving` for forward-mode differentiation, to any order.

    JAX's own forward mode through a step differentiates the Jacobian ``J = df/dy``: ``n``
    second-order JVPs of the field per tangent, batched over the Jacobian's columns, which on
    the CPU costs 7-12x the step for the IVORY model (small batched operations, one kernel
    each). Here ``J`` and ``W^-1`` are computed once outside differentiation, and each stage
    solve ``x = W^-1 v`` carries its own JVP rule (:func:`_w_solve`): from ``W x = v``,

        dx = W^-1 (dv + dh / (gamma h^2) x + dJ x)

    where ``dJ x``, the derivative of ``J x`` along the tangent of ``t0``, ``y0`` and ``args``,
    is one directional second derivative of the field (not a batch of ``n``). The rule calls
    the same solve, so second and third derivatives follow the same route, and the result is
    the exact derivative of the same discrete step.

    Returns
    -------
    y1, error, saved
        As :func:`rodas4_step_saving`; ``saved`` is not differentiated (only the reverse pass
        reads it).
    """
    n = y0.shape[0]
    sg = jax.lax.stop_gradient
    t_c, y_c, args_c = sg(t0), sg(y0), jax.tree.map(sg, args)
    jac = jax.jacfwd(lambda yy: field(t_c, yy, args_c))(y_c)
    w_inv = _inverse_fast(jnp.eye(n, dtype=y0.dtype) / (_GAMMA * sg(h)) - jac)
    f = lambda tt, yy: field(tt, yy, args)  # noqa: E731
    _, f_t = jax.jvp(lambda tt: f(tt, y0), (t0,), (jnp.ones_like(t0),))
    _, ks = _stages(f, w_inv, f_t, t0, h, y0, w_solve=lambda v: _w_solve(field, w_inv, t0, h, y0, args, v))
    return _stage_input(_STAGES - 1, y0, ks) + ks[-1], ks[-1], sg((w_inv, f_t, jnp.stack(ks)))


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _w_solve(field, w_inv, t0, h, y0, args, v):
    """``W^-1 v`` with ``W = I/(gamma h) - J(t0, y0, args)`` and ``w_inv`` its inverse,
    computed outside differentiation: the JVP rule accounts for ``W``'s dependence on ``t0``,
    ``h``, ``y0`` and ``args`` (and ignores ``w_inv``'s tangent, which is zero)."""
    return w_inv @ v


@_w_solve.defjvp
def _w_solve_jvp(field, primals, tangents):
    w_inv, t0, h, y0, args, v = primals
    _, dt0, dh, dy0, dargs, dv = tangents
    x = _w_solve(field, w_inv, t0, h, y0, args, v)

    def j_times_x(t, y, a):
        return jax.jvp(lambda yy: field(t, yy, a), (y,), (x,))[1]

    dj_x = jax.jvp(j_times_x, (t0, y0, args), (dt0, dy0, dargs))[1]
    return x, _w_solve(field, w_inv, t0, h, y0, args, dv + dh / (_GAMMA * h**2) * x + dj_x)


def rodas4_step_vjp(field: Callable, args, t0, h, y0, y1_bar, saved=None):
    """The VJP of one Rodas4 step ``y1 = step(t0, h, y0; args)``, written out by hand.

    Reverse mode through :func:`rodas4_step` as JAX traces it differentiates the forward-mode
    Jacobian (``n`` JVPs) and the unrolled Gauss-Jordan inverse operation by operation; both
    are avoidable. With ``k_i = W^-1 r_i`` the cotangent of the stage right-hand side is
    ``rbar_i = W^-T kbar_i`` (the stored inverse, transposed: no second factorisation), and
    ``W = I/(gamma h) - J`` receives ``Wbar = -sum_i rbar_i k_i^T``. The Jacobian's share,
    ``sum_i rbar_i^T J k_i``, and that of ``f_t``, are directional second derivatives of
    the field: one reverse pass over seven forward directions (the six stages and ``t``),
    not a Jacobian of the Jacobian.

    Parameters
    ----------
    field
        ``field(t, y, args)``, the vector field.
    args
        A pytree of the field's other inputs (parameters, covariates, input rates).
    t0, h, y0
        The step's start time, size and start state.
    y1_bar
        The cotangent of the step's end state.
    saved
        ``(w_inv, f_t, ks)`` from :func:`rodas4_step_saving` of the same step, or ``None``
        to recompute them (the Jacobian, the inverse and the six stages).

    Returns
    -------
    t0_bar, h_bar, y0_bar, args_bar
        Cotangents of the step's inputs (the error estimate is not differentiated: a
        discrete adjoint holds the accepted step sizes fixed).
    """
    n = y0.shape[0]
    f = lambda tt, yy: field(tt, yy, args)  # noqa: E731
    if saved is None:
        jac = jax.jacfwd(lambda yy: f(t0, yy))(y0)
        _, f_t = jax.jvp(lambda tt: f(tt, y0), (t0,), (jnp.ones_like(t0),))
        _, _, saved = rodas4_step_saving(f, jac, f_t, t0, h, y0)
    w_inv, f_t, k_rows = saved
    ks = [k_rows[i] for i in range(_STAGES)]
    us = [_stage_input(i, y0, ks) for i in range(_STAGES)]
    # y1 = y0 + sum_{j<s-1} a_sj k_j + k_s
    k_bar = [_A[-1, j] * y1_bar for j in range(_STAGES - 1)] + [y1_bar]
    y_bar, t_bar, h_bar = y1_bar, jnp.zeros_like(t0), jnp.zeros_like(h)
    args_bar = jax.tree.map(jnp.zeros_like, args)
    f_t_bar = jnp.zeros_like(y0)
    r_bars = [None] * _STAGES
    for i in reversed(range(_STAGES)):
        r_bar = w_inv.T @ k_bar[i]
        r_bars[i] = r_bar
        _, pull = jax.vjp(field, t0 + _C[i] * h, us[i], args)
        tc_bar, u_bar, a_bar = pull(r_bar)
        t_bar = t_bar + tc_bar
        h_bar = h_bar + _C[i] * tc_bar + _D[i] * jnp.dot(r_bar, f_t)
        args_bar = jax.tree.map(jnp.add, args_bar, a_bar)
        f_t_bar = f_t_bar + _D[i] * h * r_bar
        y_bar = y_bar + u_bar
        for j in range(i):
            if _CC[i, j] != 0.0:
                k_bar[j] = k_bar[j] + (_CC[i, j] / h) * r_bar
                h_bar = h_bar - (_CC[i, j] / h**2) * jnp.dot(r_bar, ks[j])
            if _A[i, j] != 0.0:
                k_bar[j] = k_bar[j] + _A[i, j] * u_bar
    r_stack, k_stack = jnp.stack(r_bars), jnp.stack(ks)
    # W = I/(gamma h) - J:  Wbar = -sum_i rbar_i k_i^T, so trace(Wbar) reaches h
    h_bar = h_bar + jnp.sum(r_stack * k_stack) / (_GAMMA * h**2)
    # J's and f_t's share: d/d(t, y, args) of sum_i rbar_i.(J k_i) + f_t_bar.f_t
    dirs_t = jnp.concatenate([jnp.zeros(_STAGES, dtype=y0.dtype), jnp.ones(1, dtype=y0.dtype)])
    dirs_y = jnp.concatenate([k_stack, jnp.zeros((1, n), dtype=y0.dtype)])
    weights = jnp.concatenate([r_stack, f_t_bar[None, :]])

    def second_order(tt, yy, aa):
        tangent = jax.vmap(lambda dt, dy: jax.jvp(lambda t_, y_: field(t_, y_, aa), (tt, yy), (dt, dy))[1])(dirs_t, dirs_y)
        return jnp.sum(weights * tangent)

    t2, y2, a2 = jax.grad(second_order, argnums=(0, 1, 2))(t0, y0, args)
    return t_bar + t2, h_bar, y_bar + y2, jax.tree.map(jnp.add, args_bar, a2)


class Rodas4(diffrax.AbstractAdaptiveSolver):
    """Rodas4 (order 4, embedded order 3, L-stable, stiffly accurate) for ODE terms.

    The state must be a 1-D array. The Jacobian ``df/dy`` and the time derivative
    ``df/dt`` are taken by forward-mode autodiff of the vector field at the start of each
    step. Dense output is linear between steps (il2pkpd only reads the solution at event
    and observation times, where steps end).
    """

    jac: Callable | None = None
    """Optional ``jac(t, y, args) -> (df/dy, df/dt)`` (e.g. generated by sympy); autodiff otherwise."""

    term_structure: ClassVar = diffrax.AbstractTerm
    interpolation_cls: ClassVar[Callable[..., diffrax.LocalLinearInterpolation]] = diffrax.LocalLinearInterpolation

    def order(self, terms):
        return 4

    def error_order(self, terms):
        # The error estimate is the difference of the order-4 and order-3 solutions.
        return 4

    def init(self, terms, t0, t1, y0, args):
        return None

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        del solver_state, made_jump
        # Under vmap, finished subjects still run (masked) steps, possibly with h = 0: keep
        # those finite, or NaN leaks into the gradient through the masking `where`.
        live = t1 > t0
        h = jnp.where(live, t1 - t0, 1.0)
        f = lambda t, y: terms.vf(t, y, args)  # noqa: E731
        if self.jac is None:
            jac = jax.jacfwd(lambda y: f(t0, y))(y0)
            _, f_t = jax.jvp(lambda t: f(t, y0), (t0,), (jnp.ones_like(t0),))
        else:
            jac, f_t = self.jac(t0, y0, args)
        y_new, err = rodas4_step(f, jac, f_t, t0, h, y0)
        y1 = jnp.where(live, y_new, y0)
        y_error = jnp.where(live, err, 0.0)
        dense_info = dict(y0=y0, y1=y1)
        return y1, y_error, dense_info, None, diffrax.RESULTS.successful

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)
