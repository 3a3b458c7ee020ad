"""One subject's whole horizon as one Rodas4 loop, with its own discrete adjoint.

The event machinery of :mod:`._jax` (actual event times after lag, effective amounts and
rates, steady states) produces a sorted event list; this module integrates through it in a
single ``lax.while_loop``. Each iteration either applies the next event, when the clock has
reached it (a bolus jumps the state, an infusion changes the input rate, a reset or steady
state replaces the state, an output reads the state exactly), or takes one Rodas4 step
clipped to land on the next event time. One loop means one step-size history over the
horizon: no per-event solver start-up, no initial-step search at outputs, no nested
checkpointing loops.

Step size control: Hairer & Wanner's RODAS controller (safety 0.9, step ratio 0.2-6,
Gustafsson's predictive correction after accepted steps) on the RMS norm of the embedded
error scaled by ``atol + rtol*max(|y|, |y1|)``;
after a jump of the state or of an input the step restarts from Hairer's initial-step
estimate (a dose starts a fast phase the previous step size knows nothing about).

The adjoint (``jax.custom_vjp`` on the whole subject): the forward pass records every
accepted step (start time, step, state, input rates) and every applied event in a tape of
fixed length; the backward pass walks the tape in reverse, applying the VJP of one Rosenbrock
step (its step size held constant, as a discrete adjoint does) or of one event. A step that
was clipped to an event time passes its gradient to that event time, so lag times and dose
times stay differentiable. It is exactly the derivative of the discrete computation the
forward pass made (tests compare it with reverse mode through the same steps and with
finite differences).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from ._events import Kind
from ._rosenbrock import rodas4_step
from ._status import SolveStatus

__all__ = ["make_subject_loop"]

# Hairer & Wanner's RODAS defaults: safety 0.9, step ratio within [0.2, 6]
_SAFETY, _FAC_MIN, _FAC_MAX = 0.9, 0.2, 6.0
_ORDER = 4.0  # error order of Rodas4's embedded pair

# tape entry kinds
_STEP, _EVENT = 0, 1


def _apply_event(k, ev, y, rates, epoch, y_init, ss_y, ss_rate, n_states):
    """The state, input rates and epoch after event ``k``, and whether anything jumped."""
    kind = ev["kind"][k]
    live = ev["epoch"][k] == epoch
    onehot = jax.nn.one_hot(ev["state"][k], n_states, dtype=y.dtype)
    is_reset = kind == Kind.RESET
    y = jnp.where(is_reset, y_init, y)
    rates = jnp.where(is_reset, 0.0, rates)
    is_ss = kind == Kind.SS
    replace = ev["ss"][k] == 1
    yss, rss = ss_y[ev["slot"][k]], ss_rate[ev["slot"][k]]
    y = jnp.where(is_ss, jnp.where(replace, yss, y + yss), y)
    rates = jnp.where(is_ss, jnp.where(replace, rss, rates + rss), rates)
    epoch = jnp.where(is_reset | (is_ss & replace), ev["epoch"][k], epoch)
    bolus = jnp.where((kind == Kind.BOLUS) & live, ev["amount"][k], 0.0)
    drate = jnp.where(live, ev["drate"][k], 0.0)
    y = y + bolus * onehot
    rates = rates + drate * onehot
    jumped = is_reset | is_ss | (bolus != 0) | (drate != 0)
    return y, rates, epoch, jumped


def _sets_clock(kind):
    """Events whose time the trajectory depends on (all but outputs and padding)."""
    return (kind != Kind.OUTPUT) & (kind != Kind.NOOP)


def make_subject_loop(rhs: Callable, n_states: int, rtol: float, atol: float, max_steps: int,
                      tape_length: int, cov_at: Callable):
    """Build ``solve(diff, ints) -> (y_out, brk_out, status, fail_t)`` for one subject.

    Parameters
    ----------
    rhs
        ``rhs(t, y, theta, cov)`` of the model. Its Jacobian is taken by forward-mode
        autodiff (the sympy Jacobian of a Hill term ``c^h/(ec50^h + c^h)`` is written with
        ``c^h/c`` and is 0/0 at ``c = 0``, where every predose state sits).
    rtol, atol, max_steps
        Tolerances and the most solver steps (accepted and rejected) over the horizon.
    tape_length
        Entries (accepted steps plus events) the adjoint's tape holds.
    cov_at
        ``cov_at(diff, t) -> cov``: the covariates over a step ending at ``t``.

    ``diff`` holds the differentiable inputs: ``y_init`` (n,), ``theta`` (P,), ``cov``,
    ``t`` (E,) event times (sorted), ``amount`` (E,), ``drate`` (E,), ``ss_y``/``ss_rate``
    (S, n), ``t_start`` (), and ``rec_cov`` when covariates vary in time. ``ints`` holds
    ``kind``, ``state``, ``epoch``, ``ss``, ``slot``, ``out_index`` (E,) and ``n_out``
    (a static length, as a zero array of that length).
    """

    def field(t, y, rates, theta, cov):
        return rhs(t, y, theta, cov) + rates

    def step(t, h, y, rates, theta, cov):
        f = lambda tt, yy: field(tt, yy, rates, theta, cov)  # noqa: E731
        jac = jax.jacfwd(lambda yy: f(t, yy))(y)
        _, f_t = jax.jvp(lambda tt: f(tt, y), (t,), (jnp.ones_like(t),))
        return rodas4_step(f, jac, f_t, t, h, y)

    def error_norm(y, y1, err):
        scale = atol + rtol * jnp.maximum(jnp.abs(y), jnp.abs(y1))
        return jnp.sqrt(jnp.mean((err / scale) ** 2))

    def initial_step(t, y, rates, theta, cov, t_end):
        """Hairer & Wanner (II.4) starting step for a 4th-order method."""
        scale = atol + rtol * jnp.abs(y)
        f0 = field(t, y, rates, theta, cov)
        d0 = jnp.sqrt(jnp.mean((y / scale) ** 2))
        d1 = jnp.sqrt(jnp.mean((f0 / scale) ** 2))
        h0 = jnp.where((d0 < 1e-5) | (d1 < 1e-5), 1e-6, 0.01 * d0 / jnp.where(d1 > 0, d1, 1.0))
        f1 = field(t + h0, y + h0 * f0, rates, theta, cov)
        d2 = jnp.sqrt(jnp.mean(((f1 - f0) / scale) ** 2)) / h0
        dmax = jnp.maximum(d1, d2)
        h1 = jnp.where(dmax <= 1e-15, jnp.maximum(1e-6, h0 * 1e-3), (0.01 / jnp.where(dmax > 0, dmax, 1.0)) ** (1.0 / 5.0))
        h = jnp.minimum(100.0 * h0, h1)
        span = jnp.abs(t_end - t)
        return jax.lax.stop_gradient(jnp.where(span > 0, jnp.minimum(h, span), h))

    def run(diff, ints, record: bool):
        ev = {"t": diff["t"], "amount": diff["amount"], "drate": diff["drate"], **ints}
        theta, y_init, ss_y, ss_rate = diff["theta"], diff["y_init"], diff["ss_y"], diff["ss_rate"]
        n_ev = ev["kind"].shape[0]
        n_out = ints["n_out"].shape[0]
        t_last = diff["t"][n_ev - 1]
        t0 = diff["t_start"]
        dtype = y_init.dtype
        tape0 = {
            "kind": jnp.zeros(tape_length, jnp.int32), "k": jnp.zeros(tape_length, jnp.int32),
            "t": jnp.zeros(tape_length, dtype), "h": jnp.zeros(tape_length, dtype), "clipped": jnp.zeros(tape_length, bool),
            "y": jnp.zeros((tape_length, n_states), dtype), "rates": jnp.zeros((tape_length, n_states), dtype),
            "epoch": jnp.zeros(tape_length, jnp.int32),
        } if record else None

        def write(tape, n, **entry):
            if tape is None:
                return tape, n
            full = n >= tape_length
            idx = jnp.where(full, tape_length, n)  # out of range: dropped
            tape = {key: tape[key].at[idx].set(entry[key], mode="drop") for key in tape}
            return tape, n + 1

        def cond(c):
            return (c["k"] < n_ev) & (c["status"] == 0)

        def do_event(c):
            k = c["k"]
            y, rates, epoch, jumped = _apply_event(k, ev, c["y"], c["rates"], c["epoch"], y_init, ss_y, ss_rate, n_states)
            tape, n_tape = write(c["tape"], c["n_tape"], kind=_EVENT, k=k, t=c["t"], h=jnp.zeros((), dtype), clipped=False,
                                 y=c["y"], rates=c["rates"], epoch=c["epoch"])
            brk = c["brk"] | jumped
            o = ev["out_index"][k]
            slot = jnp.where(o >= 0, o, n_out)
            y_out = c["y_out"].at[slot].set(y, mode="drop")
            brk_out = c["brk_out"].at[slot].set(brk, mode="drop")
            written = c["written"].at[slot].set(True, mode="drop")
            brk = jnp.where(ev["kind"][k] == Kind.OUTPUT, False, brk)
            # an event that changes the state or an input sets the clock to its own time (the
            # same value), so that the time of a dose given at the clock's current time (a
            # lag of 0 at the start) still carries a gradient to the dose time
            t_now = jnp.where(_sets_clock(ev["kind"][k]) & (ev["t"][k] >= c["t"]), ev["t"][k], c["t"])
            nxt = jnp.minimum(k + 1, n_ev - 1)
            h_new = jax.lax.cond(jumped, lambda: jnp.minimum(c["h"], initial_step(t_now, y, rates, theta, cov_at(diff, ev["t"][nxt]), ev["t"][nxt])),
                                 lambda: c["h"])
            return {**c, "k": k + 1, "t": t_now, "y": y, "rates": rates, "epoch": epoch, "brk": brk, "y_out": y_out, "brk_out": brk_out,
                    "written": written, "h": h_new, "tape": tape, "n_tape": n_tape}

        def do_step(c):
            k, t, y = c["k"], c["t"], c["y"]
            target = ev["t"][k]
            cov = cov_at(diff, target)
            gap = target - t
            clipped = c["h"] >= gap
            h = jnp.where(clipped, gap, c["h"])
            y1, err_vec = step(t, h, y, c["rates"], theta, cov)
            err = error_norm(y, y1, err_vec)
            finite = jnp.isfinite(err) & jnp.all(jnp.isfinite(y1))
            err = jnp.where(finite, jnp.maximum(err, 1e-10), jnp.inf)
            accept = err <= 1.0
            # Hairer's RODAS step control: h / fac with fac = err^(1/4)/safety in [1/6, 5];
            # after an accepted step, Gustafsson's predictive factor when it is larger
            # (a step that just grew with a rising error is not grown again)
            fac = jnp.clip(err ** (1.0 / _ORDER) / _SAFETY, 1.0 / _FAC_MAX, 1.0 / _FAC_MIN)
            gus = (c["h_acc"] / h) * (err**2 / c["err_acc"]) ** (1.0 / _ORDER) / _SAFETY
            gus = jnp.where(c["h_acc"] > 0, jnp.clip(gus, 1.0 / _FAC_MAX, 1.0 / _FAC_MIN), 0.0)
            fac = jnp.where(accept, jnp.maximum(fac, gus), jnp.where(finite, fac, 1.0 / _FAC_MIN))
            h_next = h / fac
            h_next = jnp.where(accept & clipped, jnp.maximum(h_next, c["h"]), h_next)
            tape, n_tape = c["tape"], c["n_tape"]
            if record:
                new_tape, new_n = write(tape, n_tape, kind=_STEP, k=k, t=t, h=h, clipped=clipped, y=y, rates=c["rates"], epoch=c["epoch"])
                tape = jax.tree.map(lambda a, b: jnp.where(accept, a, b), new_tape, tape)
                n_tape = jnp.where(accept, new_n, n_tape)
            t_new = jnp.where(accept, jnp.where(clipped, target, t + h), t)
            y_new = jnp.where(accept, y1, y)
            n_steps = c["n_steps"] + 1
            too_small = ~accept & (h_next <= 1e-14 * jnp.maximum(1.0, jnp.abs(t)))
            status = jnp.where(too_small, jnp.where(finite, SolveStatus.SOLVER_FAILED, SolveStatus.NON_FINITE), SolveStatus.SUCCESS)
            status = jnp.where((status == SolveStatus.SUCCESS) & (n_steps >= max_steps), SolveStatus.MAX_STEPS, status)
            status = status.astype(jnp.int32)
            fail_t = jnp.where(status != 0, t, c["fail_t"])
            return {**c, "t": t_new, "y": y_new, "h": h_next, "h_acc": jnp.where(accept, h, c["h_acc"]),
                    "err_acc": jnp.where(accept, jnp.maximum(err, 1e-2), c["err_acc"]), "n_steps": n_steps,
                    "status": status, "fail_t": fail_t, "tape": tape, "n_tape": n_tape}

        def body(c):
            k = jnp.minimum(c["k"], n_ev - 1)
            at_event = (ev["kind"][k] == Kind.NOOP) | (ev["t"][k] <= c["t"])
            c = jax.lax.cond(at_event, do_event, do_step, {**c, "k": k})
            if record:
                c = {**c, "status": jnp.where((c["status"] == 0) & (c["n_tape"] > tape_length), SolveStatus.ADJOINT_TAPE_FULL, c["status"]).astype(jnp.int32)}
            return c

        carry0 = {
            "k": jnp.asarray(0, jnp.int32), "t": jnp.asarray(t0, dtype), "y": y_init, "rates": jnp.zeros(n_states, dtype),
            "epoch": jnp.asarray(0, jnp.int32), "brk": jnp.asarray(False),
            "h": initial_step(t0, y_init, jnp.zeros(n_states, dtype), theta, cov_at(diff, diff["t"][0]), jnp.maximum(t_last, t0 + 1.0)),
            "h_acc": jnp.zeros((), dtype), "err_acc": jnp.asarray(1e-2, dtype), "n_steps": jnp.asarray(0, jnp.int32), "status": jnp.asarray(0, jnp.int32),
            "fail_t": jnp.asarray(jnp.nan, dtype), "y_out": jnp.zeros((n_out, n_states), dtype), "brk_out": jnp.zeros(n_out, bool),
            "written": jnp.zeros(n_out, bool), "tape": tape0, "n_tape": jnp.asarray(0, jnp.int32),
        }
        c = jax.lax.while_loop(cond, body, carry0)
        # outputs a failed solve never reached hold its last state (the status says so);
        # padding slots of a batch (no event writes them) stay zero
        y_out = jnp.where(c["written"][:, None] | (c["status"] == 0), c["y_out"], c["y"][None, :])
        return (y_out, c["brk_out"], c["status"], c["fail_t"]), (c["tape"], c["n_tape"])

    def backward(diff, ints, tape, n_tape, y_out_bar):
        ev = {"t": diff["t"], "amount": diff["amount"], "drate": diff["drate"], **ints}
        theta, y_init, ss_y, ss_rate = diff["theta"], diff["y_init"], diff["ss_y"], diff["ss_rate"]
        zeros = jax.tree.map(jnp.zeros_like, diff)

        def step_entry(c, i):
            k, t, h, y, rates = tape["k"][i], tape["t"][i], tape["h"][i], tape["y"][i], tape["rates"][i]
            target = ev["t"][k]

            def fn(t_a, h_a, y_a, rates_a, theta_a, d):
                return step(t_a, h_a, y_a, rates_a, theta_a, cov_at(d, target))[0]

            _, pull = jax.vjp(fn, t, h, y, rates, theta, diff)
            t_bar, h_bar, y_bar, rates_bar, theta_bar, d_bar = pull(c["y_bar"])
            clipped = tape["clipped"][i]
            grads = jax.tree.map(jnp.add, c["grads"], d_bar)
            grads["theta"] = grads["theta"] + theta_bar
            # a clipped step ends at the event time: t_end = t_event, h = t_event - t_start
            grads["t"] = grads["t"].at[k].add(jnp.where(clipped, c["t_bar"] + h_bar, 0.0))
            t_carry = jnp.where(clipped, t_bar - h_bar, t_bar + c["t_bar"])
            return {**c, "y_bar": y_bar, "rates_bar": c["rates_bar"] + rates_bar, "t_bar": t_carry, "grads": grads}

        def event_entry(c, i):
            k, y, rates, epoch = tape["k"][i], tape["y"][i], tape["rates"][i], tape["epoch"][i]
            o = ev["out_index"][k]
            y_bar = c["y_bar"] + jnp.where(o >= 0, y_out_bar[jnp.maximum(o, 0)], 0.0)

            def fn(y_a, rates_a, d):
                e = {**ev, "t": d["t"], "amount": d["amount"], "drate": d["drate"]}
                y1, r1, _, _ = _apply_event(k, e, y_a, rates_a, epoch, d["y_init"], d["ss_y"], d["ss_rate"], n_states)
                return y1, r1

            _, pull = jax.vjp(fn, y, rates, diff)
            y_b, r_b, d_bar = pull((y_bar, c["rates_bar"]))
            grads = jax.tree.map(jnp.add, c["grads"], d_bar)
            set_clock = _sets_clock(ev["kind"][k]) & (ev["t"][k] >= tape["t"][i])
            grads["t"] = grads["t"].at[k].add(jnp.where(set_clock, c["t_bar"], 0.0))
            return {**c, "y_bar": y_b, "rates_bar": r_b, "grads": grads, "t_bar": jnp.where(set_clock, 0.0, c["t_bar"])}

        def body(c):
            i = c["i"]
            c = jax.lax.cond(tape["kind"][i] == _STEP, step_entry, event_entry, c, i)
            return {**c, "i": i - 1}

        c0 = {"i": n_tape - 1, "y_bar": jnp.zeros_like(y_init), "rates_bar": jnp.zeros_like(y_init), "t_bar": jnp.zeros((), y_init.dtype),
              "grads": zeros}
        c = jax.lax.while_loop(lambda c: c["i"] >= 0, body, c0)
        grads = c["grads"]
        grads["y_init"] = grads["y_init"] + c["y_bar"]  # the state at t_start is the initial state
        return grads

    @jax.custom_vjp
    def solve(diff, ints):
        return run(diff, ints, record=False)[0]

    def solve_fwd(diff, ints):
        out, (tape, n_tape) = run(diff, ints, record=True)
        return out, (diff, ints, tape, n_tape)

    def solve_bwd(res, cotangents):
        diff, ints, tape, n_tape = res
        y_out_bar = cotangents[0]
        grads = backward(diff, ints, tape, jnp.minimum(n_tape, tape_length), y_out_bar)
        int_zeros = jax.tree.map(lambda a: None, ints)
        return grads, int_zeros

    solve.defvjp(solve_fwd, solve_bwd)
    return solve, run
