"""The JAX solver: exact dose events, steady states, vmap over subjects.

One subject is integrated by a ``lax.scan`` over its events sorted by actual time; between
two events diffrax integrates the ODE with the current (piecewise-constant) infusion
input, so the solver always lands on event times and never smooths a dose. Boluses are
jumps, infusions change the input rate, resets restore the initial state, and steady-state
records (SS = 1/2) use precomputed periodic steady states. Failures become a status code
per subject (``throw=False`` semantics); :mod:`il2pkpd.simulate` raises when asked.
"""

from __future__ import annotations

import diffrax
import jax
import jax.numpy as jnp

from ..errors import OptionError
from ..solver_options import SOLVER_NAMES, SolverOptions
from ._config import subject_devices
from ._events import GHOSTS, Kind
from ._loop import make_subject_loop
from ._rosenbrock import Rodas4
from ._status import SolveStatus

__all__ = ["SolverOptions", "SolveStatus", "batch_function"]


_SOLVERS = {
    "tsit5": diffrax.Tsit5,
    "dopri5": diffrax.Dopri5,
    "dopri8": diffrax.Dopri8,
    "kvaerno5": diffrax.Kvaerno5,
    "rodas4": Rodas4,
}
assert tuple(_SOLVERS) == SOLVER_NAMES  # the names SolverOptions accepts are the solvers here


def resolve_batching(batching: str = "auto") -> str:
    """``"auto"``: subjects one after another (``"map"``) on CPU, where a vmapped batch waits
    for its slowest subject at every event (2-3x slower for the IVORY likelihood), in lockstep
    (``"vmap"``) on an accelerator; anything else is returned as given."""
    if batching != "auto":
        return batching
    return "map" if jax.default_backend() == "cpu" else "vmap"


def _safe_div(num, den, use):
    """num/den where ``use`` is true, 0 elsewhere, with no NaN leaking into gradients."""
    den_safe = jnp.where(use, den, 1.0)
    return jnp.where(use, num / den_safe, 0.0)


def batch_function(compiled, options: SolverOptions, reduce=None, differentiation: str = "reverse"):
    """The jitted ``solve(batch, theta, cov)`` over an :class:`~il2pkpd.solve.EventBatch`
    (used through :class:`~il2pkpd.solve.BatchSolver`, which documents it).

    Shapes: theta (B, P), cov (B, C). Returns ``(outputs (B, O, n_outputs), states (B, O,
    n_states), status (B,), fail_time (B,))``, or with ``reduce`` ``(reduce(...) (B, ...),
    status, fail_time)``. The batch's optional fields are seen at trace time: ``theta``
    (B, E, P) evaluates dose parameters (F, ALAG, R, D) with each event's own parameters;
    ``rec_time``/``rec_cov`` apply covariates by record (each integration segment (t, t1]
    uses the covariates of the first record at or after t1: NONMEM's next observation
    carried backward).
    """
    batching = options.batching
    if differentiation not in ("reverse", "forward"):
        raise OptionError(f"`differentiation` must be 'reverse' or 'forward', got {differentiation!r}")
    if differentiation == "forward" and not options.single_loop:
        raise OptionError(f"forward-mode derivatives need the Rodas4 loop (solver='rodas4'), got solver={options.solver!r}, path={options.path!r}")
    batching = resolve_batching(batching)
    n_states = compiled.n_states
    solver = _SOLVERS[options.solver]()
    controller = diffrax.PIDController(rtol=options.rtol, atol=options.atol)

    def vector_field(t, y, args):
        theta, cov, rates = args
        return compiled.rhs(t, y, theta, cov) + rates

    term = diffrax.ODETerm(vector_field)

    if options.single_loop:
        def loop_cov_at(diff, tt):
            if "rec_cov" not in diff:
                return diff["cov"]
            # the covariates of the first record at or after the step's end (NOCB)
            return diff["rec_cov"][jnp.minimum(jnp.searchsorted(diff["rec_time"], tt, side="left"), diff["rec_cov"].shape[0] - 1)]

        def subject_loop(diff, ints):  # built at trace time: the checkpoint count needs the event count
            solve = make_subject_loop(compiled.rhs, n_states, options.rtol, options.atol, options.max_steps, loop_cov_at,
                                      n_events=diff["t"].shape[0], chunk=options.adjoint_chunk,
                                      differentiation=differentiation)
            return solve(diff, ints)

    def integrate(y0, t0, t1, rates, theta, cov):
        sol = diffrax.diffeqsolve(
            term, solver, t0, t1, None, y0, args=(theta, cov, rates),
            stepsize_controller=controller, saveat=diffrax.SaveAt(t1=True),
            max_steps=options.max_steps, throw=False,
        )
        ok = sol.result == diffrax.RESULTS.successful
        code = jnp.where(ok, SolveStatus.SUCCESS,
                         jnp.where(sol.result == diffrax.RESULTS.max_steps_reached, SolveStatus.MAX_STEPS, SolveStatus.SOLVER_FAILED))
        return sol.ys[0], code

    def solve_one(ev, ss_pos, out_times, t_start, theta, cov):
        per_event_theta, time_varying_cov = "theta" in ev, "rec_cov" in ev  # static: the batch's fields
        n_out = out_times.shape[0]
        y_init = compiled.initial(theta, cov)
        kind, state = ev["kind"], ev["state"]
        if per_event_theta:
            pick = lambda a: jnp.take_along_axis(a, state[:, None], axis=1)[:, 0]  # noqa: E731
            f_e, lag_e, r_e, d_e = jax.vmap(lambda th: compiled.dose(th, cov))(ev["theta"])
            f, lag, r_state, d_state = pick(f_e), pick(lag_e), pick(r_e), pick(d_e)
        else:
            f_all, lag_all, r_all, d_all = compiled.dose(theta, cov)
            f, lag, r_state, d_state = f_all[state], lag_all[state], r_all[state], d_all[state]
        amt_eff = ev["amt"] * f
        rate_raw = ev["rate"]
        fixed, modelled_rate, modelled_dur = rate_raw > 0, rate_raw == -1.0, rate_raw == -2.0
        r_eff = jnp.where(fixed, rate_raw, jnp.where(modelled_rate, r_state, _safe_div(amt_eff, d_state, modelled_dur)))
        d_eff = jnp.where(fixed, _safe_div(amt_eff, rate_raw, fixed),
                          jnp.where(modelled_rate, _safe_div(amt_eff, r_state, modelled_rate), d_state))
        is_dose = (kind == Kind.BOLUS) | (kind == Kind.INF_START) | (kind == Kind.INF_END) | (kind == Kind.GHOST_END) | (kind == Kind.SS)
        infusion_kind = (kind == Kind.INF_START) | (kind == Kind.INF_END) | (kind == Kind.GHOST_END) | ((kind == Kind.SS) & (rate_raw != 0))
        bad = is_dose & ((f < 0) | (lag < 0) | (infusion_kind & ~((r_eff > 0) & (d_eff > 0)) & (ev["amt"] > 0)))
        status0 = jnp.where(jnp.any(bad), SolveStatus.INVALID_DOSE_PARAMETER, SolveStatus.SUCCESS)

        ii = ev["ii"]
        lag_mod = jnp.where(ii > 0, jnp.mod(lag, jnp.where(ii > 0, ii, 1.0)), 0.0)
        ghost_end = ev["t0"] + lag_mod + d_eff - ev["ghost_k"] * ii
        ghost_active = (kind == Kind.GHOST_END) & (ghost_end > ev["t0"])
        t_act = jnp.select(
            [(kind == Kind.BOLUS) | (kind == Kind.INF_START), kind == Kind.INF_END, ghost_active],
            [ev["t0"] + lag, ev["t0"] + lag + d_eff, ghost_end],
            ev["t0"],
        )
        drate = jnp.select(
            [kind == Kind.INF_START, kind == Kind.INF_END, ghost_active],
            [r_eff, -r_eff, -r_eff],
            0.0,
        )
        seq = jnp.where(((kind == Kind.BOLUS) | (kind == Kind.INF_START)) & (lag > 0), -1.0, ev["seq"])
        order = jnp.lexsort((seq, t_act))

        # ---- steady states (SS records), computed before the scan -------------------------
        n_ss = ss_pos.shape[0]
        if n_ss:
            p = jnp.maximum(ss_pos, 0)
            ss_y, ss_rate, ss_code = jax.vmap(
                lambda pi: _steady_state(pi, kind, state, amt_eff, r_eff, d_eff, ii, lag_mod, ev, y_init, theta, cov)
            )(p)
            ss_code = jnp.where(ss_pos >= 0, ss_code, SolveStatus.SUCCESS)
            status0 = jnp.maximum(status0, jnp.max(ss_code))
            slot = jnp.zeros(kind.shape[0], dtype=jnp.int32).at[jnp.where(ss_pos >= 0, ss_pos, kind.shape[0])].set(
                jnp.arange(n_ss, dtype=jnp.int32), mode="drop")
        else:
            ss_y = jnp.zeros((1, n_states))
            ss_rate = jnp.zeros((1, n_states))
            slot = jnp.zeros(kind.shape[0], dtype=jnp.int32)

        xs = {
            "t": t_act[order], "kind": kind[order], "state": state[order], "amount": amt_eff[order],
            "drate": drate[order], "epoch": ev["epoch"][order], "ss": ev["ss"][order],
            "slot": slot[order], "out_index": ev["out_index"][order],
        }

        def cov_at(tt):
            if not time_varying_cov:
                return cov
            rt = ev["rec_time"]
            return ev["rec_cov"][jnp.minimum(jnp.searchsorted(rt, tt, side="left"), rt.shape[0] - 1)]

        if options.single_loop:
            diff = {"y_init": y_init, "theta": theta, "cov": cov, "t": xs["t"], "amount": xs["amount"], "drate": xs["drate"],
                    "ss_y": ss_y, "ss_rate": ss_rate, "t_start": jnp.asarray(t_start, dtype=y_init.dtype)}
            if time_varying_cov:  # record times ride along with the values (their cotangent is zero)
                diff["rec_cov"], diff["rec_time"] = ev["rec_cov"], ev["rec_time"]
            ints = {"kind": xs["kind"], "state": xs["state"], "epoch": xs["epoch"], "ss": xs["ss"], "slot": xs["slot"],
                    "out_index": xs["out_index"], "n_out": jnp.zeros(n_out, dtype=jnp.int32)}
            y_out, brk_out, status, fail_t = subject_loop(diff, ints)
            status = jnp.where(status0 != SolveStatus.SUCCESS, status0, status)
            outs = jax.vmap(lambda tt, yy: compiled.outputs(tt, yy, theta, cov_at(tt)))(out_times, y_out)
            return outs, y_out, status, fail_t, brk_out

        def body(carry, x):
            t, y, rates, epoch, status, fail_t, brk = carry
            t1 = jnp.where(x["kind"] == Kind.NOOP, t, jnp.maximum(x["t"], t))
            y1, code = integrate(y, t, t1, rates, theta, cov_at(t1))
            code = jnp.where(jnp.all(jnp.isfinite(y1)) | (code != SolveStatus.SUCCESS), code, SolveStatus.NON_FINITE)
            new_fail = (status == SolveStatus.SUCCESS) & (code != SolveStatus.SUCCESS)
            fail_t = jnp.where(new_fail, t, fail_t)
            status = jnp.where(status == SolveStatus.SUCCESS, code, status)
            k = x["kind"]
            live = x["epoch"] == epoch
            onehot = jax.nn.one_hot(x["state"], n_states, dtype=y1.dtype)
            # reset (EVID 3/4)
            is_reset = k == Kind.RESET
            y1 = jnp.where(is_reset, y_init, y1)
            rates = jnp.where(is_reset, 0.0, rates)
            # steady state (SS 1 replaces, SS 2 adds)
            is_ss = k == Kind.SS
            yss, rss = ss_y[x["slot"]], ss_rate[x["slot"]]
            y1 = jnp.where(is_ss, jnp.where(x["ss"] == 1, yss, y1 + yss), y1)
            rates = jnp.where(is_ss, jnp.where(x["ss"] == 1, rss, rates + rss), rates)
            epoch = jnp.where(is_reset | (is_ss & (x["ss"] == 1)), x["epoch"], epoch)
            # doses of the current epoch (older ones were cancelled by a reset)
            y1 = y1 + jnp.where((k == Kind.BOLUS) & live, x["amount"], 0.0) * onehot
            rates = rates + jnp.where(live, x["drate"], 0.0) * onehot
            # a jump of the state or of an input since the previous output (for metrics that
            # interpolate between outputs: a parabola must not straddle a bolus)
            brk = brk | is_reset | is_ss | (live & (((k == Kind.BOLUS) & jnp.any(x["amount"] != 0)) | jnp.any(x["drate"] != 0)))
            brk_out = brk
            brk = jnp.where(k == Kind.OUTPUT, False, brk)
            return (t1, y1, rates, epoch, status, fail_t, brk), (y1, brk_out)

        carry0 = (t_start, y_init, jnp.zeros(n_states), jnp.asarray(0, dtype=jnp.int32), status0, jnp.asarray(jnp.nan), jnp.asarray(False))
        (_, _, _, _, status, fail_t, _), (ys, brks) = jax.lax.scan(body, carry0, xs)
        slot = jnp.where(xs["out_index"] >= 0, xs["out_index"], n_out)
        y_out = jnp.zeros((n_out, n_states)).at[slot].set(ys, mode="drop")
        brk_out = jnp.zeros(n_out, dtype=bool).at[slot].set(brks, mode="drop")
        outs = jax.vmap(lambda tt, yy: compiled.outputs(tt, yy, theta, cov_at(tt)))(out_times, y_out)
        return outs, y_out, status, fail_t, brk_out

    def _steady_state(pi, kind, state, amt_eff, r_eff, d_eff, ii, lag_mod, ev, y_init, theta, cov):
        s = state[pi]
        onehot = jax.nn.one_hot(s, n_states)
        a, r, d, per, lm = amt_eff[pi], r_eff[pi], d_eff[pi], ii[pi], lag_mod[pi]
        is_inf = ev["rate"][pi] != 0
        ss_flag = ev["ss"][pi]
        t_rec = ev["t0"][pi]
        y0 = jnp.where(ss_flag == 1, y_init, 0.0)
        constant = per <= 0
        per_safe = jnp.where(constant, 1.0, per)
        n_full = jnp.where(is_inf & ~constant, jnp.floor(d / per_safe), 0.0)
        rem = jnp.where(is_inf & ~constant, d - n_full * per_safe, 0.0)

        def propagate(y, length):
            """From just before a dose (phase 0) over ``length`` of the periodic regimen."""
            y = y + jnp.where(is_inf, 0.0, a) * onehot
            seg1 = jnp.minimum(rem, length)
            t_a = t_rec - per_safe
            y, c1 = integrate(y, t_a, t_a + seg1, (n_full + 1.0) * r * onehot * is_inf, theta, cov)
            y, c2 = integrate(y, t_a + seg1, t_a + length, n_full * r * onehot * is_inf, theta, cov)
            return y, jnp.maximum(c1, c2)

        tol_r, tol_a = 10 * options.rtol, 10 * options.atol

        def cond(c):
            _, _, it, done, code = c
            return (~done) & (it < options.ss_max_iter) & (code == 0)

        def step(c):
            y, _, it, _, _ = c
            y_new, code = propagate(y, per_safe)
            done = jnp.max(jnp.abs(y_new - y) - (tol_r * jnp.abs(y_new) + tol_a)) <= 0
            return y_new, y, it + 1, done, code

        y_star, _, _, done, code = jax.lax.while_loop(cond, step, (y0, y0, 0, jnp.asarray(False), jnp.asarray(0)))
        code = jnp.where(constant, 0, jnp.where(done | (code != 0), code, SolveStatus.STEADY_STATE_NOT_REACHED))

        # constant infusion to steady state (II = 0): Newton on rhs(y) + r = 0
        def newton(_, y):
            jac = compiled.jacobian(t_rec, y, theta, cov)
            res = compiled.rhs(t_rec, y, theta, cov) + r * onehot
            return y - jnp.linalg.solve(jac, res)

        y_const = jax.lax.fori_loop(0, 50, newton, y0)
        y_at, c3 = propagate(y_star, per_safe - lm)
        y_rec = jnp.where(constant, y_const, jnp.where(lm > 0, y_at, y_star))
        code = jnp.where(constant, 0, jnp.maximum(code, jnp.where(lm > 0, c3, 0)))
        # infusions from earlier intervals still running at the record time
        n_active = jnp.where(is_inf & ~constant, jnp.maximum(jnp.ceil((lm + d) / per_safe) - 1.0, 0.0), 0.0)
        code = jnp.where(n_active > GHOSTS, SolveStatus.TOO_MANY_OVERLAPPING_INFUSIONS, code)
        return y_rec, n_active * r * onehot, code

    def member(batch, theta, cov):
        out_times = batch.out_times
        outs, y_out, status, fail_t, breaks = solve_one(batch.events, batch.ss_pos, out_times, batch.t_start, theta, cov)
        return (reduce(out_times, outs, breaks), status, fail_t) if reduce is not None else (outs, y_out, status, fail_t)

    if batching == "map":
        def batched(*arrays):
            return jax.lax.map(lambda a: member(*a), arrays)
        # only the Rodas4 loop is split: diffrax's checkpointed adjoint fails to transpose
        # inside shard_map (equinox's closure conversion sees a traced RESULTS; found when a
        # process inherited PyMC's 100 forced devices), so the other solvers stay on one device
        devices = subject_devices() if options.single_loop else []
        if devices:
            batched = _sharded(batched, devices)
    else:
        batched = jax.vmap(member)
    return jax.jit(batched)


def _sharded(batched, devices):
    """``batched`` with the subjects split over host devices, each running its share.

    XLA runs one program on one core; with ``IL2PKPD_CPU_DEVICES`` (see :mod:`._config`) the
    host's cores are separate devices and each gets a contiguous block of subjects. The batch
    is padded to a multiple of the device count by repeating its last subject, whose extra
    results are dropped (their cotangents are zero).
    """
    mesh = jax.make_mesh((len(devices),), ("subjects",), axis_types=(jax.sharding.AxisType.Auto,), devices=devices)
    spec = jax.sharding.PartitionSpec("subjects")
    per_device = jax.shard_map(batched, mesh=mesh, in_specs=spec, out_specs=spec, check_vma=False)

    def run(*arrays):
        n = jax.tree.leaves(arrays)[0].shape[0]
        pad = -n % len(devices)
        if pad:
            arrays = jax.tree.map(lambda a: jnp.concatenate([a, jnp.repeat(a[-1:], pad, axis=0)]), arrays)
        return jax.tree.map(lambda o: o[:n], per_device(*arrays))

    return run
