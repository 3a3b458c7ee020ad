"""Rodas4 (il2pkpd.solve._rosenbrock): convergence order against closed forms.

A mistyped tableau coefficient shows up as order loss, so the observed order on fixed
steps pins the coefficients (Hairer & Wanner's RODAS4 is order 4). Oracles: closed-form
solutions of a non-autonomous linear ODE (exercises the df/dt term), a nonlinear one, and a
stiff linear two-compartment system (matrix exponential).
"""

from __future__ import annotations

import diffrax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.linalg import expm

from il2pkpd.solve._config import configure_jax
from il2pkpd.solve._rosenbrock import Rodas4

configure_jax()

K = np.array([[-50.0, 0.4], [49.0, -0.5]])  # stiff (eigenvalues ~ -50 and ~ -0.1)

CASES = {
    "non-autonomous y' = -2ty": (lambda t, y, a: -2.0 * t * y, [1.0], 1.5, lambda: np.exp(-2.25)),
    "Riccati y' = y^2": (lambda t, y, a: y**2, [1.0], 0.5, lambda: 2.0),
    "stiff linear 2-cmt": (lambda t, y, a: jnp.asarray(K) @ y, [1.0, 0.0], 2.0, lambda: expm(K * 2.0) @ [1.0, 0.0]),
}


def _error(f, y0, t1, n):
    sol = diffrax.diffeqsolve(diffrax.ODETerm(f), Rodas4(), 0.0, t1, t1 / n, jnp.asarray(y0),
                              stepsize_controller=diffrax.ConstantStepSize(), max_steps=10_000)
    return sol.ys[-1]


@pytest.mark.parametrize("case", list(CASES))
def test_rodas4_is_fourth_order(case):
    f, y0, t1, exact = CASES[case]
    errs = [float(np.max(np.abs(np.asarray(_error(f, y0, t1, n)) - exact()))) for n in (20, 40, 80)]
    orders = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert orders[-1] >= 3.7, f"{case}: observed orders {orders} (errors {errs})"


def test_rodas4_is_l_stable_on_a_very_stiff_decay():
    # y' = -1e8 (y - 1): one step of length 1 must land on the equilibrium, not oscillate
    y = _error(lambda t, y, a: -1e8 * (y - 1.0), [0.0], 1.0, 1)
    assert abs(float(y[0]) - 1.0) < 1e-6


def test_rodas4_adaptive_matches_closed_form_at_tight_tolerance():
    sol = diffrax.diffeqsolve(diffrax.ODETerm(CASES["stiff linear 2-cmt"][0]), Rodas4(), 0.0, 2.0, None, jnp.array([1.0, 0.0]),
                              stepsize_controller=diffrax.PIDController(rtol=1e-9, atol=1e-12), max_steps=10_000)
    np.testing.assert_allclose(np.asarray(sol.ys[-1]), expm(K * 2.0) @ [1.0, 0.0], rtol=1e-7)


def test_hand_written_step_vjp_equals_reverse_mode_and_finite_differences():
    """rodas4_step_vjp (stage solves transposed, the Jacobian's share as second directional
    derivatives) against JAX reverse mode through the same step, and a central finite
    difference of one directional derivative. A non-autonomous, nonlinear field with a
    parameter pytree exercises every path: f_t, the Jacobian, the step size, the args."""
    import jax

    from il2pkpd.solve._rosenbrock import rodas4_step, rodas4_step_vjp

    def field(t, y, args):
        k, rates = args
        return jnp.array([-k[0] * y[0] * y[1] + jnp.sin(t), k[0] * y[0] * y[1] - k[1] * y[1] ** 2, k[1] * y[1] - 0.3 * t * y[2]]) + rates

    def step(t, h, y, args):
        f = lambda tt, yy: field(tt, yy, args)  # noqa: E731
        jac = jax.jacfwd(lambda yy: f(t, yy))(y)
        _, f_t = jax.jvp(lambda tt: f(tt, y), (t,), (jnp.ones_like(t),))
        return rodas4_step(f, jac, f_t, t, h, y)[0]

    t, h, y = jnp.asarray(0.7), jnp.asarray(0.15), jnp.array([1.2, 0.4, 0.9])
    args = (jnp.array([2.0, 0.8]), jnp.array([0.1, 0.0, -0.2]))
    y1_bar = jnp.array([0.3, -1.1, 0.7])
    ref = jax.vjp(step, t, h, y, args)[1](y1_bar)
    mine = rodas4_step_vjp(field, args, t, h, y, y1_bar)
    for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(mine), strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-11, atol=1e-13)
    # finite differences along one direction of every input
    rng = np.random.default_rng(3)
    d = [rng.normal(), rng.normal(), rng.normal(size=3), (rng.normal(size=2), rng.normal(size=3))]
    eps = 1e-6
    shift = lambda s: (t + s * d[0], h + s * d[1], y + s * d[2], (args[0] + s * d[3][0], args[1] + s * d[3][1]))  # noqa: E731
    fd = (np.dot(y1_bar, step(*shift(eps))) - np.dot(y1_bar, step(*shift(-eps)))) / (2 * eps)
    t_b, h_b, y_b, (k_b, r_b) = mine
    analytic = t_b * d[0] + h_b * d[1] + np.dot(y_b, d[2]) + np.dot(k_b, d[3][0]) + np.dot(r_b, d[3][1])
    np.testing.assert_allclose(float(analytic), float(fd), rtol=1e-7)
