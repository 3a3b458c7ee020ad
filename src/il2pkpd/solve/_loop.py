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

The adjoint (``jax.custom_vjp`` on the whole subject) is the exact derivative of the discrete
computation the forward pass made: the backward pass walks the accepted steps and applied
events in reverse, applying the VJP of one Rosenbrock step (its step size held constant, as a
discrete adjoint does; :func:`._rosenbrock.rodas4_step_vjp`) or of one event. A step that was
clipped to an event time passes its gradient to that event time, so lag times and dose
times stay differentiable. Tests compare it with reverse mode through the same steps and with
finite differences.

Memory: two-level checkpointing. A tape of every step (state, time, step size) would be
sized for the longest solve allowed and, under ``lax.map`` over subjects, kept for every
subject: for IVORY that was 4 MB per subject, and copying it cost more than the steps.
Instead the forward pass stores the loop's small state every ``chunk`` entries (accepted
steps plus events); the backward pass goes through the chunks last to first, re-runs each
one from its checkpoint while recording a tape of ``chunk`` entries (cache-sized), and walks
that tape back. Cost: one more forward pass; memory: ``~2 sqrt(N)`` states for ``N``
entries; no length limit beyond ``max_steps``. The re-run repeats the forward pass's
arithmetic exactly (same operations on the same inputs); a chunk that does not end where the
forward pass's next checkpoint begins makes the gradient NaN rather than wrong.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from ._events import Kind
from ._rosenbrock import _STAGES, rodas4_step_forward, rodas4_step_saving, rodas4_step_vjp
from ._status import SolveStatus

__all__ = ["make_subject_loop"]

# Hairer & Wanner's RODAS defaults: safety 0.9, step ratio within [0.2, 6]
_SAFETY, _FAC_MIN, _FAC_MAX = 0.9, 0.2, 6.0
_ORDER = 4.0  # error order of Rodas4's embedded pair

#: the entries of ``diff`` a ``cov_at`` may read
_COV_KEYS = ("cov", "rec_cov", "rec_time")

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


#: how far (relative) a re-run chunk of the adjoint may end from the forward pass's next
#: checkpoint and still count as the same path: far above round-off (~1e-13), far below what a
#: different accepted-step sequence gives (a step, or a local error of ~rtol)
_REPLAY_RTOL = 1e-8


def _sets_clock(kind):
    """Events whose time the trajectory depends on (all but outputs and padding)."""
    return (kind != Kind.OUTPUT) & (kind != Kind.NOOP)


def make_subject_loop(rhs: Callable, n_states: int, rtol: float, atol: float, max_steps: int,
                      cov_at: Callable, n_events: int, chunk: int | None = None, differentiation: str = "reverse") -> Callable:
    """Build ``solve(diff, ints) -> (y_out, brk_out, status, fail_t)`` for one subject.

    Parameters
    ----------
    rhs
        ``rhs(t, y, theta, cov)`` of the model. Its Jacobian is taken by forward-mode
        autodiff (the sympy Jacobian of a Hill term ``c^h/(ec50^h + c^h)`` is written with
        ``c^h/c`` and is 0/0 at ``c = 0``, where every predose state sits).
    rtol, atol, max_steps
        Tolerances and the most solver steps (accepted and rejected) over the horizon.
    cov_at
        ``cov_at(diff, t) -> cov``: the covariates over a step ending at ``t``; it may read
        ``diff["cov"]``, ``diff["rec_cov"]`` and ``diff["rec_time"]`` only.
    n_events
        Length of the (padded) event list: with ``max_steps`` it bounds the entries.
    chunk
        Entries between the adjoint's checkpoints (default ``sqrt`` of the most entries).
    differentiation
        ``"reverse"``: the solve carries its own discrete adjoint (``jax.custom_vjp``), and
        JAX's forward mode is refused. ``"forward"``: the plain loop, which JAX differentiates
        in forward mode (``jvp``, nested to any order) and not in reverse: the conditional
        modes and sensitivities of FOCE/Laplace estimation need derivatives with respect to
        the random effects and, for their gradient, second derivatives. Either way the step
        sizes are held fixed (only a step clipped to an event time follows that time), so
        both give the derivative of the same discrete solution.

    ``diff`` holds the differentiable inputs: ``y_init`` (n,), ``theta`` (P,), ``cov``,
    ``t`` (E,) event times (sorted), ``amount`` (E,), ``drate`` (E,), ``ss_y``/``ss_rate``
    (S, n), ``t_start`` (), and ``rec_cov`` when covariates vary in time. ``ints`` holds
    ``kind``, ``state``, ``epoch``, ``ss``, ``slot``, ``out_index`` (E,) and ``n_out``
    (a static length, as a zero array of that length).
    """
    most_entries = max_steps + n_events
    chunk = int(chunk or max(64, math.isqrt(most_entries) + 1))
    n_checkpoints = most_entries // chunk + 1

    def field(t, y, args):
        """The vector field with the input rates; ``args = (rates, theta, cov)``."""
        rates, theta, cov = args
        return rhs(t, y, theta, cov) + rates

    def step(t, h, y, rates, theta, cov):
        if differentiation == "forward":
            return rodas4_step_forward(field, (rates, theta, cov), t, h, y)
        f = lambda tt, yy: field(tt, yy, (rates, theta, cov))  # noqa: E731
        jac = jax.jacfwd(lambda yy: f(t, yy))(y)
        _, f_t = jax.jvp(lambda tt: f(tt, y), (t,), (jnp.ones_like(t),))
        return rodas4_step_saving(f, jac, f_t, t, h, y)

    def error_norm(y, y1, err):
        scale = atol + rtol * jnp.maximum(jnp.abs(y), jnp.abs(y1))
        return jnp.sqrt(jnp.mean((err / scale) ** 2))

    def initial_step(t, y, rates, theta, cov, t_end):
        """Hairer & Wanner (II.4) starting step for a 4th-order method."""
        scale = atol + rtol * jnp.abs(y)
        f0 = field(t, y, (rates, theta, cov))
        d0 = jnp.sqrt(jnp.mean((y / scale) ** 2))
        d1 = jnp.sqrt(jnp.mean((f0 / scale) ** 2))
        h0 = jnp.where((d0 < 1e-5) | (d1 < 1e-5), 1e-6, 0.01 * d0 / jnp.where(d1 > 0, d1, 1.0))
        f1 = field(t + h0, y + h0 * f0, (rates, theta, cov))
        d2 = jnp.sqrt(jnp.mean(((f1 - f0) / scale) ** 2)) / h0
        dmax = jnp.maximum(d1, d2)
        h1 = jnp.where(dmax <= 1e-15, jnp.maximum(1e-6, h0 * 1e-3), (0.01 / jnp.where(dmax > 0, dmax, 1.0)) ** (1.0 / 5.0))
        h = jnp.minimum(100.0 * h0, h1)
        span = jnp.abs(t_end - t)
        return jax.lax.stop_gradient(jnp.where(span > 0, jnp.minimum(h, span), h))

    def events_of(diff, ints):
        return {"t": diff["t"], "amount": diff["amount"], "drate": diff["drate"], **ints}

    def start(diff, ints):
        """The loop's state before the first entry."""
        t0, y_init, dtype = diff["t_start"], diff["y_init"], diff["y_init"].dtype
        t_last = diff["t"][n_events - 1]
        zero_rates = jnp.zeros(n_states, dtype)
        return {
            "k": jnp.asarray(0, jnp.int32), "t": jnp.asarray(t0, dtype), "y": y_init, "rates": zero_rates,
            "epoch": jnp.asarray(0, jnp.int32), "brk": jnp.asarray(False),
            "h": initial_step(t0, y_init, zero_rates, diff["theta"], cov_at(diff, diff["t"][0]), jnp.maximum(t_last, t0 + 1.0)),
            "h_acc": jnp.zeros((), dtype), "err_acc": jnp.asarray(1e-2, dtype), "n_steps": jnp.asarray(0, jnp.int32),
            "status": jnp.asarray(0, jnp.int32), "fail_t": jnp.asarray(jnp.nan, dtype),
        }

    def advance(s, diff, ev):
        """One iteration: apply the next event or try one step. Returns the new state and
        the entry made (``accepted`` is false for a rejected step, which makes none)."""
        theta, y_init = diff["theta"], diff["y_init"]
        dtype = y_init.dtype
        k = jnp.minimum(s["k"], n_events - 1)
        no_saved = (jnp.zeros((n_states, n_states), dtype), jnp.zeros(n_states, dtype), jnp.zeros((_STAGES, n_states), dtype))

        def do_event(s):
            y, rates, epoch, jumped = _apply_event(k, ev, s["y"], s["rates"], s["epoch"], y_init, diff["ss_y"], diff["ss_rate"], n_states)
            brk = s["brk"] | jumped
            out = {"brk": brk, "y": y}
            # an event that changes the state or an input sets the clock to its own time (the
            # same value), so that the time of a dose given at the clock's current time (a
            # lag of 0 at the start) still carries a gradient to the dose time
            t_now = jnp.where(_sets_clock(ev["kind"][k]) & (ev["t"][k] >= s["t"]), ev["t"][k], s["t"])
            nxt = jnp.minimum(k + 1, n_events - 1)
            h_new = jax.lax.cond(jumped, lambda: jnp.minimum(s["h"], initial_step(t_now, y, rates, theta, cov_at(diff, ev["t"][nxt]), ev["t"][nxt])),
                                 lambda: s["h"])
            entry = {"accepted": jnp.asarray(True), "kind": jnp.asarray(_EVENT, jnp.int32), "h": jnp.zeros((), dtype), "clipped": jnp.asarray(False),
                     "saved": no_saved}
            new = {**s, "k": k + 1, "t": t_now, "y": y, "rates": rates, "epoch": epoch,
                   "brk": jnp.where(ev["kind"][k] == Kind.OUTPUT, False, brk), "h": h_new}
            return new, entry, out

        def do_step(s):
            t, y = s["t"], s["y"]
            target = ev["t"][k]
            gap = target - t
            clipped = s["h"] >= gap
            h = jnp.where(clipped, gap, s["h"])
            y1, err_vec, saved = step(t, h, y, s["rates"], theta, cov_at(diff, target))
            err = error_norm(y, y1, err_vec)
            finite = jnp.isfinite(err) & jnp.all(jnp.isfinite(y1))
            err = jnp.where(finite, jnp.maximum(err, 1e-10), jnp.inf)
            accept = err <= 1.0
            # Hairer's RODAS step control: h / fac with fac = err^(1/4)/safety in [1/6, 5];
            # after an accepted step, Gustafsson's predictive factor when it is larger
            # (a step that just grew with a rising error is not grown again)
            fac = jnp.clip(err ** (1.0 / _ORDER) / _SAFETY, 1.0 / _FAC_MAX, 1.0 / _FAC_MIN)
            gus = (s["h_acc"] / h) * (err**2 / s["err_acc"]) ** (1.0 / _ORDER) / _SAFETY
            gus = jnp.where(s["h_acc"] > 0, jnp.clip(gus, 1.0 / _FAC_MAX, 1.0 / _FAC_MIN), 0.0)
            fac = jnp.where(accept, jnp.maximum(fac, gus), jnp.where(finite, fac, 1.0 / _FAC_MIN))
            h_next = jax.lax.stop_gradient(h / fac)  # step sizes are not differentiated (see above)
            h_next = jnp.where(accept & clipped, jnp.maximum(h_next, s["h"]), h_next)
            n_steps = s["n_steps"] + 1
            too_small = ~accept & (h_next <= 1e-14 * jnp.maximum(1.0, jnp.abs(t)))
            status = jnp.where(too_small, jnp.where(finite, SolveStatus.SOLVER_FAILED, SolveStatus.NON_FINITE), SolveStatus.SUCCESS)
            status = jnp.where((status == SolveStatus.SUCCESS) & (n_steps >= max_steps), SolveStatus.MAX_STEPS, status)
            status = status.astype(jnp.int32)
            entry = {"accepted": accept, "kind": jnp.asarray(_STEP, jnp.int32), "h": h, "clipped": clipped, "saved": saved}
            new = {**s, "k": k, "t": jnp.where(accept, jnp.where(clipped, target, t + h), t), "y": jnp.where(accept, y1, y),
                   "h": h_next, "h_acc": jnp.where(accept, h, s["h_acc"]), "err_acc": jnp.where(accept, jnp.maximum(err, 1e-2), s["err_acc"]),
                   "n_steps": n_steps, "status": status, "fail_t": jnp.where(status != 0, t, s["fail_t"])}
            return new, entry, {"brk": s["brk"], "y": y}

        at_event = (ev["kind"][k] == Kind.NOOP) | (ev["t"][k] <= s["t"])
        new, entry, out = jax.lax.cond(at_event, do_event, do_step, {**s, "k": k})
        # the entry records the state it started from (what the backward pass differentiates at)
        entry = {**entry, "k": k, "t": s["t"], "y": s["y"], "rates": s["rates"], "epoch": s["epoch"]}
        out_index = jnp.where(at_event, ev["out_index"][k], -1)
        return new, entry, out, out_index

    def running(s):
        return (s["k"] < n_events) & (s["status"] == 0)

    def forward(diff, ints, checkpoints: bool):
        """The solve; with ``checkpoints``, also the state every ``chunk`` entries."""
        ev = events_of(diff, ints)
        n_out = ints["n_out"].shape[0]
        s0 = start(diff, ints)
        extra0 = {"y_out": jnp.zeros((n_out, n_states), s0["y"].dtype), "brk_out": jnp.zeros(n_out, bool),
                  "written": jnp.zeros(n_out, bool), "n": jnp.asarray(0, jnp.int32)}
        if checkpoints:
            extra0["ckpt"] = jax.tree.map(lambda a: jnp.zeros((n_checkpoints, *a.shape), a.dtype), s0)

        def body(carry):
            s, x = carry
            if checkpoints:  # the state before entry n, when n is a multiple of chunk (the last write wins)
                slot = jnp.where(x["n"] % chunk == 0, x["n"] // chunk, n_checkpoints)
                x = {**x, "ckpt": jax.tree.map(lambda buf, v: buf.at[slot].set(v, mode="drop"), x["ckpt"], s)}
            s, entry, out, o = advance(s, diff, ev)
            slot = jnp.where(o >= 0, o, n_out)
            x = {**x, "y_out": x["y_out"].at[slot].set(out["y"], mode="drop"), "brk_out": x["brk_out"].at[slot].set(out["brk"], mode="drop"),
                 "written": x["written"].at[slot].set(True, mode="drop"), "n": x["n"] + entry["accepted"].astype(jnp.int32)}
            return s, x

        s, x = jax.lax.while_loop(lambda c: running(c[0]), body, (s0, extra0))
        # outputs a failed solve never reached hold its last state (the status says so);
        # padding slots of a batch (no event writes them) stay zero
        y_out = jnp.where(x["written"][:, None] | (s["status"] == 0), x["y_out"], s["y"][None, :])
        return (y_out, x["brk_out"], s["status"], s["fail_t"]), (x.get("ckpt"), x["n"])

    def replay(diff, ev, s0, n_entries):
        """Re-run from checkpoint state ``s0`` for ``n_entries`` (<= chunk) entries, recording them."""
        tape0 = {"kind": jnp.zeros(chunk, jnp.int32), "k": jnp.zeros(chunk, jnp.int32), "t": jnp.zeros(chunk, s0["t"].dtype),
                 "h": jnp.zeros(chunk, s0["t"].dtype), "clipped": jnp.zeros(chunk, bool), "y": jnp.zeros((chunk, n_states), s0["y"].dtype),
                 "rates": jnp.zeros((chunk, n_states), s0["y"].dtype), "epoch": jnp.zeros(chunk, jnp.int32),
                 # the step's inverse, f_t and stages: the step VJP need not recompute them
                 "saved": (jnp.zeros((chunk, n_states, n_states), s0["y"].dtype), jnp.zeros((chunk, n_states), s0["y"].dtype),
                           jnp.zeros((chunk, _STAGES, n_states), s0["y"].dtype))}

        def body(carry):
            s, tape, n = carry
            s, entry, _, _ = advance(s, diff, ev)
            # written in the next free slot either way; a rejected step's entry is overwritten
            tape = jax.tree.map(lambda buf, v: buf.at[n].set(v), tape, {key: entry[key] for key in tape})
            return s, tape, n + entry["accepted"].astype(jnp.int32)

        s, tape, n = jax.lax.while_loop(lambda c: running(c[0]) & (c[2] < n_entries), body, (s0, tape0, jnp.asarray(0, jnp.int32)))
        return s, tape

    def backward(diff, ints, ckpt, n_total, y_out_bar):
        ev = events_of(diff, ints)
        y_init = diff["y_init"]

        def step_entry(c, tape, i):
            k, t, h, y, rates = tape["k"][i], tape["t"][i], tape["h"][i], tape["y"][i], tape["rates"][i]
            target = ev["t"][k]
            # covariates reach the step through cov_at; only the entries it reads get a cotangent
            cov_in = {key: diff[key] for key in _COV_KEYS if key in diff}
            cov, cov_pull = jax.vjp(lambda d: cov_at(d, target), cov_in)
            saved = jax.tree.map(lambda buf: buf[i], tape["saved"])
            t_bar, h_bar, y_bar, (rates_bar, theta_bar, cov_bar) = rodas4_step_vjp(
                field, (rates, diff["theta"], cov), t, h, y, c["y_bar"], saved)
            clipped = tape["clipped"][i]
            grads = dict(c["grads"])
            for key, value in cov_pull(cov_bar)[0].items():
                grads[key] = grads[key] + value
            grads["theta"] = grads["theta"] + theta_bar
            # a clipped step ends at the event time: t_end = t_event, h = t_event - t_start
            grads["t"] = grads["t"].at[k].add(jnp.where(clipped, c["t_bar"] + h_bar, 0.0))
            t_carry = jnp.where(clipped, t_bar - h_bar, t_bar + c["t_bar"])
            return {**c, "y_bar": y_bar, "rates_bar": c["rates_bar"] + rates_bar, "t_bar": t_carry, "grads": grads}

        def event_entry(c, tape, i):
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

        def chunk_body(c):
            j = c["j"]
            s0 = jax.tree.map(lambda buf: buf[j], ckpt)
            n_entries = jnp.minimum(chunk, n_total - j * chunk)
            s_end, tape = replay(diff, ev, s0, n_entries)
            # the re-run must end where the forward pass's next chunk began: at the same event
            # index, and at the same time and state up to round-off. Not bit for bit: the
            # re-run is compiled in another context than the forward pass (XLA fuses and
            # contracts differently), and its round-off moves the step sizes by ~1e-12
            # relative; a re-run that took another path (a step accepted that was rejected)
            # ends O(h) away. Bit-exact comparison made the IVORY calibration's gradient NaN.
            nxt = jax.tree.map(lambda buf: buf[jnp.minimum(j + 1, n_checkpoints - 1)], ckpt)
            last = (j + 1) * chunk >= n_total
            t_close = jnp.abs(s_end["t"] - nxt["t"]) <= _REPLAY_RTOL * jnp.maximum(1.0, jnp.abs(nxt["t"]))
            y_close = jnp.all(jnp.abs(s_end["y"] - nxt["y"]) <= _REPLAY_RTOL * (jnp.abs(nxt["y"]) + atol / rtol))
            same = last | ((s_end["k"] == nxt["k"]) & t_close & y_close)

            def entry_body(e):
                i = e["i"]
                e = jax.lax.cond(tape["kind"][i] == _STEP, step_entry, event_entry, e, tape, i)
                return {**e, "i": i - 1}

            c = jax.lax.while_loop(lambda e: e["i"] >= 0, entry_body, {**c, "i": n_entries - 1})
            return {**c, "j": j - 1, "same": c["same"] & same}

        c0 = {"j": (n_total - 1) // chunk, "i": jnp.asarray(0, jnp.int32), "same": jnp.asarray(True),
              "y_bar": jnp.zeros_like(y_init), "rates_bar": jnp.zeros_like(y_init), "t_bar": jnp.zeros((), y_init.dtype),
              "grads": jax.tree.map(jnp.zeros_like, diff)}
        c = jax.lax.while_loop(lambda c: c["j"] >= 0, chunk_body, c0)
        grads = c["grads"]
        grads["y_init"] = grads["y_init"] + c["y_bar"]  # the state at t_start is the initial state
        # a re-run that left the forward pass's path would give the gradient of another
        # computation: say so with NaN rather than return it
        return jax.tree.map(lambda g: jnp.where(c["same"], g, jnp.nan), grads)

    if differentiation == "forward":
        return lambda diff, ints: forward(diff, ints, checkpoints=False)[0]

    @jax.custom_vjp
    def solve(diff, ints):
        return forward(diff, ints, checkpoints=False)[0]

    def solve_fwd(diff, ints):
        out, (ckpt, n_total) = forward(diff, ints, checkpoints=True)
        return out, (diff, ints, ckpt, n_total)

    def solve_bwd(res, cotangents):
        diff, ints, ckpt, n_total = res
        grads = backward(diff, ints, ckpt, n_total, cotangents[0])
        return grads, jax.tree.map(lambda a: None, ints)

    solve.defvjp(solve_fwd, solve_bwd)
    return solve
