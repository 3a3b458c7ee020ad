"""SciPy backend (``solve_ivp``): an independent implementation for cross-checks.

It expands the records itself (ADDL, lag, bioavailability, modelled rate/duration,
resets, SS = 1/2 for boluses and infusions shorter than II) and integrates segment by
segment between events with LSODA/BDF and the sympy Jacobian. It shares no event logic
with the JAX solver, so agreement between the two is evidence, not tautology. Slow by
design; never the fast path.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.integrate import solve_ivp

from ..dosing import Records
from ..errors import SolverError

__all__ = ["solve_scipy"]


def solve_scipy(model, records: Records, theta: Sequence[float], cov: Sequence[float] = (), times: Sequence[float] | None = None,
                *, method: str = "LSODA", rtol: float = 1e-10, atol: float = 1e-12) -> tuple[np.ndarray, np.ndarray]:
    """Solve one subject with :func:`scipy.integrate.solve_ivp`.

    Parameters
    ----------
    model
        The model.
    records
        The subject's dose (and reset) records; observation records are ignored.
    theta, cov
        Parameters and covariates in declared units.
    times
        Output times (model time unit). An output at a dose time sees the dose.
    method, rtol, atol
        ``solve_ivp`` settings.

    Returns
    -------
    outputs, states
        (n_times, n_outputs) and (n_times, n_states).
    """
    c = model.compiled
    th = np.asarray(theta, dtype=float)
    cv = np.asarray(cov, dtype=float)
    n = c.n_states
    f_all, lag_all, r_all, d_all = (np.asarray(a) for a in _dose_numpy(model, th, cv))
    y_init = np.asarray(_initial_numpy(model, th, cv), dtype=float)

    def rhs(t, y, rates):
        return np.asarray(c.rhs_numpy(t, y, th, cv), dtype=float) + rates

    def jac(t, y, rates):
        with np.errstate(all="ignore"):
            J = np.asarray(c.jacobian_numpy(t, y, th, cv), dtype=float)
        if np.all(np.isfinite(J)):
            return J
        # the symbolic form can be 0/0 where a state is exactly 0 (d/dC C^g = g C^g / C):
        # fall back to central differences there
        h = 1e-7 * (np.abs(y) + 1e-7)
        cols = [(rhs(t, y + h[i] * e, rates) - rhs(t, y - h[i] * e, rates)) / (2 * h[i]) for i, e in enumerate(np.eye(len(y)))]
        return np.array(cols).T

    def integrate(y, t0, t1, rates):
        if t1 <= t0:
            return y
        sol = solve_ivp(rhs, (t0, t1), y, method=method, rtol=rtol, atol=atol, args=(rates,), jac=jac, dense_output=False)
        if not sol.success:
            raise SolverError(f"SciPy {method} failed between t={t0} and t={t1}: {sol.message}")
        return sol.y[:, -1]

    # events: (time, order, kind, state, value, epoch); kinds: reset, bolus, rate, out
    events = []
    epoch = 0
    for r in records:
        if not r.is_dose and r.evid != 3:
            continue
        if r.evid == 3 or r.evid == 4 or r.ss == 1:
            epoch += 1
            events.append((r.time, r.row - 0.5, "reset", 0, 0.0, epoch))
        if not r.is_dose:
            continue
        s = model.state_for_cmt(r.cmt)
        amount = r.amt * f_all[s]
        if r.rate > 0:
            rate, dur = r.rate, amount / r.rate if r.rate else 0.0
        elif r.rate == -1:
            rate, dur = r_all[s], amount / r_all[s]
        elif r.rate == -2:
            dur, rate = d_all[s], amount / d_all[s]
        else:
            rate, dur = 0.0, 0.0
        if r.ss in (1, 2):
            events.append((r.time, r.row - 0.25, "ss", s, (amount, rate, dur, r.ii, lag_all[s], r.ss), epoch))
        if r.amt <= 0:
            continue
        for k in range(r.addl + 1):
            t = r.time + k * r.ii + lag_all[s]
            order = r.row if (k == 0 and lag_all[s] == 0) else -1
            if rate == 0:
                events.append((t, order, "bolus", s, amount, epoch))
            else:
                events.append((t, order, "rate", s, rate, epoch))
                events.append((t + dur, -2, "rate", s, -rate, epoch))
    t_out = np.asarray(times if times is not None else [], dtype=float)
    for i, t in enumerate(t_out):
        events.append((t, np.inf, "out", i, 0.0, None))  # outputs see every event at their time
    events.sort(key=lambda e: (e[0], e[1]))

    t_cur = min([e[0] for e in events] + [0.0])
    t_cur = min(t_cur, min((r.time for r in records), default=0.0))
    y, rates, cur_epoch = y_init.copy(), np.zeros(n), 0
    ys = np.zeros((len(t_out), n))
    for t, _, kind, s, val, ep in events:
        y = integrate(y, t_cur, t, rates)
        t_cur = max(t_cur, t)
        if kind == "out":
            ys[s] = y
        elif kind == "reset":
            y, rates, cur_epoch = y_init.copy(), np.zeros(n), ep
        elif ep != cur_epoch:
            continue
        elif kind == "bolus":
            y[s] += val
        elif kind == "rate":
            rates[s] += val
        elif kind == "ss":
            y_ss = _steady_state(integrate, y_init if val[5] == 1 else np.zeros(n), s, *val[:5], t, n)
            y = y_ss if val[5] == 1 else y + y_ss
    outs = np.array([c.outputs_numpy(t, ys[i], th, cv) for i, t in enumerate(t_out)]).reshape(len(t_out), -1)
    return outs, ys


def _steady_state(integrate, y0, s, amount, rate, dur, ii, lag, t, n, tol=1e-11, max_iter=5000):
    if ii <= 0:
        raise SolverError("the SciPy backend supports SS records with II > 0 only")
    if rate > 0 and dur > ii:
        raise SolverError("the SciPy backend supports SS infusions no longer than II only")
    e = np.zeros(n)
    e[s] = 1.0

    def period(y, length):
        if rate == 0:
            return integrate(y + amount * e, t - ii, t - ii + length, np.zeros(n))
        on = min(dur, length)
        y = integrate(y, t - ii, t - ii + on, rate * e)
        return integrate(y, t - ii + on, t - ii + length, np.zeros(n))

    y = y0.copy()
    for _ in range(max_iter):
        y_new = period(y, ii)
        if np.max(np.abs(y_new - y) - tol * (np.abs(y_new) + 1e-30)) <= 0:
            y = y_new
            break
        y = y_new
    else:
        raise SolverError("steady state not reached in the SciPy backend")
    lag_mod = lag % ii
    return period(y, ii - lag_mod) if lag_mod > 0 else y


def _dose_numpy(model, th, cv):
    return [np.asarray(a) for a in model.compiled.dose(th, cv)]


def _initial_numpy(model, th, cv):
    return np.asarray(model.compiled.initial(th, cv))
