"""``simulate()``: model x parameters x regimen (or dataset) x times.

This is the computation behind :func:`il2pkpd.simulate`, which also accepts a model by
name or path (:mod:`il2pkpd.io.entry` loads it): this layer takes a loaded
:class:`~il2pkpd.model.Model` and never opens a file.

Returns an :class:`xarray.Dataset` with named dimensions ``subject`` and ``time`` (and
``draw`` when population parameters come as draws), one variable per output and state
(unit in ``attrs``), the individual parameters, and a per-subject solver ``status``.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping, Sequence
from os import PathLike
from typing import Any

import numpy as np

from .dosing import Record, Records, Regimen, parse_regimen
from .errors import DataFormatError, Il2pkpdWarning, ModelSpecError, RegimenError, ShapeError, SolverError
from .model import Model
from .solve import SolverOptions, SolveStatus, build_events, record_covariates, solve_subjects
from .solver_options import DEFAULT_SOLVER_OPTIONS
from .units import UnitError, conversion_factor

__all__ = [
    "simulate", "individual_parameters", "solve_records", "add_residual_error", "check_model", "apply_iiv", "resolve_param_key",
    "raise_failures", "warn_missing_covariates",
]


def check_model(model: Any) -> Model:
    """``model`` itself when it is a :class:`~il2pkpd.model.Model`; otherwise a one-line error.

    Names and paths of model files are read at the edges (:func:`il2pkpd.load_model`, or
    :func:`il2pkpd.simulate`, which loads them): the numerical core never opens a file.
    """
    if isinstance(model, Model):
        return model
    hint = f" Load it first: il2pkpd.load_model({str(model)!r}), or call il2pkpd.simulate, which does." if isinstance(model, (str, PathLike)) else ""
    raise ModelSpecError(f"`model` must be a Model, got {model!r} ({type(model).__name__}).{hint}")


def apply_iiv(kind: str, pop, eta, xp=np):
    """Individual value from a population value and a random effect (broadcasting):
    lognormal ``pop exp(eta)``, normal ``pop + eta``, logit ``sigmoid(logit pop + eta)``;
    any other kind (no IIV) gives ``pop``. ``xp`` is the array module: NumPy (simulation),
    ``jax.numpy`` (the marginal and virtual-population likelihoods) or ``pytensor.tensor``
    (the PyMC model), so the transform is written once."""
    if kind == "lognormal":
        return pop * xp.exp(eta)
    if kind == "normal":
        return pop + eta
    if kind == "logit":
        q = xp.clip(pop, 1e-12, 1 - 1e-12)
        return 1.0 / (1.0 + xp.exp(-(xp.log(q) - xp.log1p(-q) + eta)))
    return xp.broadcast_to(pop, xp.broadcast_shapes(xp.shape(pop), xp.shape(eta)))


def resolve_param_key(model: Model, key: str) -> tuple[str, str]:
    """('param' | 'cov', canonical name) of a user key (name or label, any case)."""
    low = key.lower()
    for p in model.parameters:  # names first: a name never loses to another's label
        if p.name.lower() == low:
            return "param", p.name
    for c in model.covariates:
        if c.name.lower() == low:
            return "cov", c.name
    for p in model.parameters:
        if p.label and p.label.lower() == low:
            return "param", p.name
    for c in model.covariates:
        if c.label and c.label.lower() == low:
            return "cov", c.name
    raise ModelSpecError(
        f"`params` key {key!r} is not a parameter or covariate of model {model.name!r}; "
        f"parameters: {list(model.parameter_names)}, covariates: {list(model.covariate_names)}"
    )


def _table_columns(table: Any) -> dict[str, np.ndarray]:
    if hasattr(table, "columns") and hasattr(table, "__getitem__"):
        return {str(c): np.asarray(table[c]) for c in table.columns}
    if isinstance(table, Mapping):
        return {str(k): np.asarray(v) for k, v in table.items()}
    raise ShapeError(f"`subject_params` must be a table (DataFrame or mapping of columns), got {type(table).__name__}")


def _table_rows(table: Any) -> int:
    cols = _table_columns(table)
    if not cols:
        raise ShapeError("`subject_params` has no columns")
    return len(next(iter(cols.values())))


def _as_floats(model: Model, value: Any, name: str, what: str) -> np.ndarray:
    """``value`` as a float array, or a one-line error naming the key, the value and what it
    must be (a bare ``float('fast')`` ValueError names none of them)."""
    try:
        return np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        spec = next((p for p in model.parameters if p.name == name), None) or next((c for c in model.covariates if c.name == name), None)
        unit = f" {spec.unit}" if spec is not None and spec.unit not in ("", "1") else ""
        if spec is not None and hasattr(spec, "lower"):
            constraint = f" within [{spec.lower}, {spec.upper}]{unit}"
        else:
            constraint = f" (in{unit})" if unit else ""
        shown = repr(value)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        raise ModelSpecError(
            f"{what} `{name}` must be a number{constraint} or a 1-D array of numbers, got {shown} ({type(value).__name__})"
        ) from None


def _check_value(model: Model, name: str, value: np.ndarray, what: str) -> None:
    if not np.all(np.isfinite(value)):
        raise ModelSpecError(f"{what} `{name}` must be finite, got {float(value[~np.isfinite(value)].flat[0])!r}")
    for p in model.parameters:
        if p.name == name:
            bad = (value < p.lower) | (value > p.upper)
            if np.any(bad):
                raise ModelSpecError(
                    f"{what} `{name}` must lie within [{p.lower}, {p.upper}] {p.unit}, got {float(value[bad].flat[0])!r}"
                )


def individual_parameters(
    model: Model,
    n_subjects: int,
    *,
    params: Mapping[str, Any] | None = None,
    subject_params: Any = None,
    covariates: Mapping[str, Any] | None = None,
    iiv: bool | None = None,
    seed: int | None = None,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Individual parameters and covariates for a simulation.

    Parameters
    ----------
    model
        The model.
    n_subjects
        Number of subjects.
    params
        Population values by name or label: scalars override the typical value; 1-D
        arrays (all of one length) are draws, giving a ``draw`` dimension; ``omega_<name>``
        keys give the IIV standard deviation (per draw). A fit (:func:`il2pkpd.fit`,
        :func:`il2pkpd.io.fits.load_fit`) gives its posterior draws.
    subject_params
        One row per subject (DataFrame or mapping of columns): individual values, used
        as given (no IIV is added to them). Covariate columns are accepted too.
    covariates
        Covariate values: scalars or arrays with one value per subject.
    iiv
        Sample inter-individual variability (eta ~ N(0, omega^2)) for the parameters that
        declare it. Default: True when ``n_subjects > 1``.
    seed
        Seed of the random numbers (``numpy.random.default_rng``).

    Returns
    -------
    theta
        (n_draws, n_subjects, n_parameters) in declared units.
    cov
        (n_subjects, n_covariates).
    info
        ``{"n_draws": int or None}`` (None when no draws were given).
    """
    if params is not None and hasattr(params, "population_draws"):  # a Fit: posterior draws
        params = params.population_draws()
    names = list(model.parameter_names)
    typical = np.array([p.value for p in model.parameters], dtype=float)
    omega_draws: dict[str, np.ndarray] = {}
    n_draws: int | None = None
    pop = np.tile(typical, (1, 1))  # (draws, params)
    cov_vals = {c.name: np.full(n_subjects, c.value, dtype=float) for c in model.covariates}
    if params:
        draws = {}
        for key, val in params.items():
            if key.startswith("omega_") and key[6:] in names:  # IIV SD per draw (from a fit)
                omega_draws[key[6:]] = np.atleast_1d(_as_floats(model, val, key, "IIV SD"))
                continue
            kind, name = resolve_param_key(model, key)
            arr = _as_floats(model, val, name, "covariate" if kind == "cov" else "parameter")
            if kind == "cov":
                if arr.ndim > 1 or (arr.ndim == 1 and len(arr) != n_subjects):
                    raise ShapeError(f"covariate `{name}` in `params` must be a scalar or one value per subject", arr.shape, (n_subjects,))
                cov_vals[name] = np.broadcast_to(arr, (n_subjects,)).astype(float)
                continue
            _check_value(model, name, arr, "parameter")
            if arr.ndim == 0:
                pop[:, names.index(name)] = float(arr)
            elif arr.ndim == 1:
                draws[name] = arr
            else:
                raise ShapeError(f"`params[{key!r}]` must be a scalar or a 1-D array of draws", arr.shape, "() or (n_draws,)")
        lengths = {len(v) for v in draws.values()} | {len(v) for v in omega_draws.values() if len(v) > 1}
        if len(lengths) > 1:
            raise ShapeError("every drawn parameter in `params` must have the same number of draws",
                             {k: len(v) for k, v in {**draws, **omega_draws}.items()}, "equal lengths")
        if lengths:
            n_draws = lengths.pop()
            pop = np.tile(pop, (n_draws, 1))
            for name, arr in draws.items():
                pop[:, names.index(name)] = arr
    for key, val in (covariates or {}).items():
        kind, name = resolve_param_key(model, key)
        if kind != "cov":
            raise ModelSpecError(f"`covariates` key {key!r} is a parameter, not a covariate; pass it in `params`")
        arr = _as_floats(model, val, name, "covariate")
        if arr.ndim > 1 or (arr.ndim == 1 and len(arr) != n_subjects):
            raise ShapeError(f"covariate `{name}` must be a scalar or one value per subject", arr.shape, (n_subjects,))
        cov_vals[name] = np.broadcast_to(arr, (n_subjects,)).astype(float)

    nd = pop.shape[0]
    theta = np.broadcast_to(pop[:, None, :], (nd, n_subjects, len(names))).copy()
    given = np.zeros((n_subjects, len(names)), dtype=bool)
    if subject_params is not None:
        cols = _table_columns(subject_params)
        for key, arr in cols.items():
            if key.lower() in ("id", "subject"):
                continue
            kind, name = resolve_param_key(model, key)
            arr = _as_floats(model, arr, name, "subject covariate" if kind == "cov" else "subject parameter")
            if arr.shape != (n_subjects,):
                raise ShapeError(f"`subject_params` column {key!r} must have one value per subject", arr.shape, (n_subjects,))
            if kind == "cov":
                cov_vals[name] = arr
                continue
            _check_value(model, name, arr, "subject parameter")
            theta[:, :, names.index(name)] = arr
            given[:, names.index(name)] = True

    if iiv is None:
        iiv = n_subjects > 1
    if iiv:
        rng = np.random.default_rng(seed)
        z = rng.standard_normal((nd, n_subjects, len(names)))
        for j, p in enumerate(model.parameters):
            if p.iiv is None or (p.iiv.omega == 0 and p.name not in omega_draws):
                continue
            omega = omega_draws.get(p.name, np.array([p.iiv.omega]))
            eta = (omega[:, None] if omega.size > 1 else omega.reshape(1, 1)) * z[:, :, j]
            cur = theta[:, :, j]
            theta[:, :, j] = np.where(given[None, :, j], cur, apply_iiv(p.iiv.kind, cur, eta))
    cov = np.stack([cov_vals[c.name] for c in model.covariates], axis=-1) if model.covariates else np.zeros((n_subjects, 0))
    return theta, cov, {"n_draws": n_draws}


def solve_records(model: Model, subjects: Sequence[Records], theta: np.ndarray, cov: np.ndarray, *, options: SolverOptions,
                  output_rows: str = "all", row_theta: dict[int, np.ndarray] | None = None, row_cov: dict[int, np.ndarray] | None = None):
    """Solve subjects given as NONMEM records; ``theta`` may carry a leading draw axis.

    ``row_theta`` maps a parameter index to values per dataset row (records' ``row``):
    dose parameters that change between records, evaluated at each dose record.

    ``row_cov`` maps a covariate index to values per dataset row: time-varying covariates,
    with NONMEM's rule ("next observation carried backward", mrgsolve's ``nocb``): the value
    on a record applies over the interval from the previous record up to and including that
    record's time, and after the last record its value stays. Initial states, steady states
    and dose parameters use the value of the subject's first record.

    Returns the :class:`~il2pkpd.solve.BatchSolution` with batch = draws x subjects.
    """
    built: dict[int, object] = {}
    events = []
    for r in subjects:  # subjects sharing one Records object share its events
        if id(r) not in built:
            built[id(r)] = build_events(r, model, output_rows=output_rows)
        events.append(built[id(r)])
    theta = np.asarray(theta, dtype=float)
    if theta.ndim == 2:
        theta = theta[None]
    nd, ns = theta.shape[0], len(subjects)
    ev_all = [events[i] for _ in range(nd) for i in range(ns)]
    cov_all = np.tile(cov, (nd, 1))
    ev_theta = None
    if row_theta:
        ev_theta = []
        for d in range(nd):
            for i in range(ns):
                ev = events[i]
                et = np.tile(theta[d, i], (ev.n_events, 1))
                rows = ev.arrays["row"]
                for j, vals in row_theta.items():
                    ok = rows >= 0
                    v = vals[rows[ok]]
                    et[ok, j] = np.where(np.isnan(v), theta[d, i, j], v)
                ev_theta.append(et)
    rec_cov = None
    if row_cov:
        rec_cov = record_covariates(subjects, cov, row_cov) * nd
        cov_all = np.array([rc[1][0] for rc in rec_cov])
    return solve_subjects(model, ev_all, theta.reshape(nd * ns, -1), cov_all, options, ev_theta=ev_theta, rec_cov=rec_cov)


#: Hints of :class:`SolveStatus` codes in the command line's words (``SolveStatus.HINTS`` name
#: the Python options: ``solver='rodas4'``, ``max_steps``, ``ss_max_iter``).
_CLI_HINTS = {
    SolveStatus.MAX_STEPS: "Try --solver rodas4 (stiff), looser --rtol/--atol, or a larger --max-steps.",
    SolveStatus.SOLVER_FAILED: "Check parameter values (--param); try --solver rodas4 or looser --rtol/--atol.",
    SolveStatus.STEADY_STATE_NOT_REACHED: "The model may have no periodic steady state for this dose (e.g. an accumulating state); avoid SS records.",
    SolveStatus.TOO_MANY_OVERLAPPING_INFUSIONS: "Split the regimen into explicit doses instead of SS records.",
    SolveStatus.INVALID_DOSE_PARAMETER: "Set the model's F/ALAG/R/D parameters (--param, or dataset columns) to valid values.",
    SolveStatus.NON_FINITE: "Check parameter values (--param; e.g. negative volumes) and the model's expressions.",
}
_HINT_STYLES = ("python", "cli")


def warn_missing_covariates(model: Model, given) -> None:
    """Warn when a dataset gives no value for some of the model's covariates: they are then
    simulated at the model file's values, which the user must be told (a fit refuses this)."""
    missing = [c for c in model.covariates if c.name not in given]
    if missing:
        used = ", ".join(f"{c.name} = {c.value:g} {c.unit}" for c in missing)
        warnings.warn(f"the dataset has no column for covariate(s) {[c.label or c.name for c in missing]} of model {model.name!r}: "
                      f"every subject is simulated at the model file's value ({used}); add the column(s) or pass covariates=",
                      Il2pkpdWarning, stacklevel=3)


def raise_failures(status: np.ndarray, fail_time: np.ndarray, subject_ids: Sequence, time_unit: str, *,
                    hint_style: str = "python", n_draws: int | None = None) -> None:
    """Raise a :class:`SolverError` for the first failed batch member (draw-major order).

    ``hint_style`` words the hint for the caller: ``"python"`` names ``simulate()``'s
    keywords (``solver='rodas4'``, ``throw=False``), ``"cli"`` the command line's flags."""
    bad = np.flatnonzero(status.reshape(-1) != SolveStatus.SUCCESS)
    if len(bad) == 0:
        return
    i = int(bad[0])
    code = int(status.reshape(-1)[i])
    sid = subject_ids[i % len(subject_ids)]
    draw = f" (draw {i // len(subject_ids)})" if n_draws is not None else ""
    t = fail_time.reshape(-1)[i]
    near = f" near t={t:.6g} {time_unit}" if np.isfinite(t) else ""
    more = f" ({len(bad)} batch members failed in all)" if len(bad) > 1 else ""
    if hint_style == "cli":
        hint = _CLI_HINTS.get(code, "")
    else:
        hint = f"{SolveStatus.HINTS.get(code, '')} Pass throw=False to get a per-subject `status` instead."
    raise SolverError(f"solve failed for subject {sid!r}{draw}{near}: {SolveStatus.MESSAGES[code]}{more}. {hint}".rstrip())


def _solve_in_blocks(model, subjects, theta, cov, *, options, output_rows, row_theta, row_cov, tick, n_blocks: int = 20):
    """:func:`solve_records` over blocks of batch members (draw-major), calling ``tick(n)``
    after each block with the members done so far. Blocks have one size (the last is padded
    with copies of its last member, then trimmed): one compiled program on every backend."""
    from .solve import BatchSolution

    theta = np.asarray(theta, dtype=float)
    if theta.ndim == 2:
        theta = theta[None]
    nd, ns = theta.shape[0], len(subjects)
    total = nd * ns
    flat = theta.reshape(total, -1)
    size = max(1, -(-total // n_blocks))
    parts = []
    for a in range(0, total, size):
        idx = np.arange(a, a + size)
        idx = np.minimum(idx, total - 1)
        keep = min(size, total - a)
        sol = solve_records(model, [subjects[j % ns] for j in idx], flat[idx][None], cov[idx % ns], options=options,
                            output_rows=output_rows, row_theta=row_theta, row_cov=row_cov)
        parts.append(BatchSolution(sol.outputs[:keep], sol.states[:keep], sol.times[:keep], sol.n_times[:keep],
                                   sol.status[:keep], sol.fail_time[:keep]))
        tick(a + keep)
    width = max(p.outputs.shape[1] for p in parts)  # ragged datasets: pad to the longest block

    def cat(name):
        arrays = [getattr(p, name) for p in parts]
        if arrays[0].ndim >= 2:
            arrays = [np.pad(x, [(0, 0), (0, width - x.shape[1])] + [(0, 0)] * (x.ndim - 2), mode="edge") for x in arrays]
        return np.concatenate(arrays)

    return BatchSolution(*(cat(n) for n in ("outputs", "states", "times", "n_times", "status", "fail_time")))


# ---- exact extrema ------------------------------------------------------------------------
#: Samples per search window and zoom passes of :func:`_locate_extrema`. A window of 33 points
#: spans two of the previous spacings, so each pass shrinks the spacing 16-fold: three passes
#: take the 1-hour spacing after a dose to under a second before the final parabola.
_ZOOM_POINTS = 33
_ZOOM_PASSES = 3
#: The final parabola through the best sample and its neighbours is kept only when it moves
#: the extremum by less than this (relative): a smooth peak at the final spacing moves it by
#: ~1e-9 or less; a bolus jump or an infusion's kink would move it far more (never refined).
_PARABOLA_TOL = 1e-7


def _time_scale(model: Model) -> float:
    """Model time units per day (a model's time unit is checked to be a time when it loads)."""
    try:
        return conversion_factor("day", model.time_unit)
    except UnitError:
        return 1.0


def _dose_times(doses: Records) -> list[float]:
    out = []
    for r in doses:
        if r.is_dose:
            out.extend(r.time + k * r.ii for k in range(r.addl + 1))
    return out


#: Hours after each dose sampled by the first pass: where concentrations peak (s.c. IL-2 within
#: hours). Coarser than the sweep metrics' grid (``design.metrics.DEFAULT_DOSE_OFFSETS``, every
#: 10 min to 3 h), which has no second pass: here the first pass only has to bracket each peak,
#: and the zoom around it finds its value and time.
_DOSE_OFFSETS_H = (1, 2, 3, 4, 6, 8, 12, 24)


def _first_grid(model: Model, doses: Records, lo: float, hi: float) -> np.ndarray:
    """Times of the first pass within [lo, hi], like the sweep metrics' output grid: every dose +
    ``_DOSE_OFFSETS_H``; daily through the dosing and 14 days beyond (responses
    peak); weekly after (slow tails)."""
    scale = _time_scale(model)
    dose_t = [t for t in _dose_times(doses) if lo <= t <= hi]
    dense_end = min(hi, max(dose_t, default=lo) + 14.0 * scale)
    parts = [[lo, hi], np.arange(lo, dense_end, scale), np.arange(dense_end, hi, 7.0 * scale)]
    for t in dose_t:
        parts.append(t + np.asarray(_DOSE_OFFSETS_H, dtype=float) * scale / 24.0)
    g = np.unique(np.round(np.concatenate([np.asarray(x, dtype=float).ravel() for x in parts]), 12))
    return g[(g >= lo) & (g <= hi)]


@functools.lru_cache(maxsize=16)
def _batched_dose(compiled):
    """The model's dose parameters (F, ALAG, R, D per state) for a batch of members, jitted."""
    import jax

    return jax.jit(jax.vmap(compiled.dose))


def _dose_event_times(model: Model, doses: Sequence[Records], theta: np.ndarray, cov: np.ndarray) -> list[np.ndarray]:
    """Per batch member, the times at which its solution jumps or kinks: each dose's actual
    time (record time + lag) and a sample just before it (the pre-dose trough), and the end
    of each infusion (duration from RATE, or the modelled rate or duration, with F). The
    first pass samples them exactly, so that a trough before a bolus or a peak at the end of
    an infusion is not approached only to the zoom's final spacing."""
    n = len(doses)
    pad = _bucket(n) - n  # a few batch shapes: few compilations
    theta = np.concatenate([np.asarray(theta, float), np.repeat(np.asarray(theta, float)[-1:], pad, axis=0)])
    cov = np.concatenate([np.asarray(cov, float), np.repeat(np.asarray(cov, float)[-1:], pad, axis=0)])
    f, lag, r, d = (np.asarray(x)[:n] for x in _batched_dose(model.compiled)(theta, cov))
    eps = 1e-9 * _time_scale(model)  # 1e-9 day (86 us)
    out, cache = [], {}
    for b, recs in enumerate(doses):
        key = (id(recs), f[b].tobytes(), lag[b].tobytes(), r[b].tobytes(), d[b].tobytes())
        if key not in cache:
            times = []
            for rec in recs:
                if not rec.is_dose or rec.amt <= 0:
                    continue
                st = model.state_for_cmt(rec.cmt)
                amt = f[b, st] * rec.amt
                if rec.rate > 0:
                    dur = amt / rec.rate
                elif rec.rate == -1.0:
                    dur = amt / r[b, st] if r[b, st] > 0 else np.nan
                elif rec.rate == -2.0:
                    dur = d[b, st]
                else:
                    dur = 0.0
                for k in range(rec.addl + 1):
                    t = rec.time + k * rec.ii + lag[b, st]
                    times += [t - eps, t]
                    if dur > 0 and np.isfinite(dur):
                        times.append(t + dur)
            cache[key] = np.unique(np.asarray(times, dtype=float))
        out.append(cache[key])
    return out


def _template(model: Model, doses: Records, t_out: float):
    """Events of ``doses`` without outputs, and the event row of one output record, which
    :func:`_member_events` repeats at any times (building the events record by record for
    every window would cost more than solving them)."""
    from .solve import Kind

    last = max([r.time for r in doses], default=t_out)
    ev = build_events(Records(list(doses) + [Record(time=max(t_out, last), evid=2)], subject=doses.subject), model, output_rows="obs")
    is_out = ev.arrays["kind"] == Kind.OUTPUT
    (row,) = np.flatnonzero(is_out)
    base = {f: a[~is_out] for f, a in ev.arrays.items()}
    out = {f: a[row] for f, a in ev.arrays.items()}
    t_start = min([r.time for r in doses], default=np.inf)
    return base, out, t_start, ev.subject, bool(model.events)


def _member_events(template, times: np.ndarray):
    """The template's doses plus one output record at each of ``times`` (sorted). Each output
    comes after every dose at its time (an output at a dose time sees the dose, as in
    :meth:`Records.with_outputs`)."""
    from .solve import SubjectEvents

    base, out, t_start, subject, has_events = template
    n = len(times)
    arrays = {f: np.concatenate([base[f], np.full(n, out[f], dtype=base[f].dtype)]) for f in base}
    arrays["t0"][len(base["t0"]):] = times
    arrays["seq"][len(base["seq"]):] = 1e15 + np.arange(n)
    arrays["out_index"][len(base["out_index"]):] = np.arange(n)
    t_start = min(t_start, float(times[0]))
    if has_events:  # as build_events: a cumulative hazard counts from time 0
        t_start = min(t_start, 0.0)
    return SubjectEvents(arrays, np.asarray(times, dtype=float), t_start, subject)


def _bucket(n: int) -> int:
    """``n`` rounded up to 64 or 96 x a power of 2 (at most 50% padding): few shapes, so few
    compilations."""
    size = 64
    while size < n:
        size = size * 3 // 2 if size & (size - 1) == 0 else size * 4 // 3
    return size


def _vertex(t0, t1, t2, z0, z1, z2):
    """Vertex (time, value) of the parabola through three points (t0 < t1 < t2)."""
    h01, h12 = t1 - t0, t2 - t1
    d01, d12 = (z1 - z0) / h01, (z2 - z1) / h12
    a = (d12 - d01) / (h01 + h12)
    with np.errstate(divide="ignore", invalid="ignore"):
        tv = 0.5 * (t0 + t1) - d01 / (2 * a)
    zv = z0 + d01 * (tv - t0) + a * (tv - t0) * (tv - t1)
    return tv, zv, a


def _locate_extrema(model: Model, doses: Sequence[Records], theta: np.ndarray, cov: np.ndarray, options: SolverOptions,
                    lo: np.ndarray, hi: np.ndarray, first: Sequence[np.ndarray], cols: Sequence[int], *,
                    known: tuple[Sequence[np.ndarray], Sequence[np.ndarray]] | None = None, chunk: int = 64, tick=None):
    """Maximum and minimum of outputs ``cols`` over [lo, hi] of every batch member, located
    by the solver itself rather than read off an output grid.

    A first solve samples each member on ``first`` (the grid the sweep metrics use, dense
    after every dose, and the times its solution jumps or kinks: doses, just before them,
    infusion ends), added to the samples ``known`` already (per member, times (T,) and
    values (T, len(cols)): the output times). Then :data:`_ZOOM_PASSES` solves each sample
    a window of :data:`_ZOOM_POINTS` times around every current best time, two of the
    previous spacings wide, so each pass narrows the search 16-fold; a last parabola through
    the best sample and its neighbours is kept only where the curve is smooth there (a bolus
    jump or an infusion's kink is never smoothed over). Values right after a dose are the
    post-dose values; a trough just before a bolus is sampled 1e-9 day before it.

    A member's extrema are the best of all the times sampled: never worse than the output
    grid's, and exact up to the solver's tolerance for an extremum inside the basin the
    first pass finds (two near-equal peaks far apart are told apart by the first pass).

    Returns ``(vmax, tmax, vmin, tmin)`` each (B, len(cols)) in model units, and the
    members' worst solve status (B,).
    """
    from .solve import solve_subjects

    cols = np.asarray(cols, dtype=int)
    n_b, n_c = len(doses), len(cols)
    if tick is not None:  # about ten progress reports
        chunk = min(chunk, -(-n_b // 10))
    chunk = max(1, min(chunk, n_b))
    k = _ZOOM_POINTS
    templates: dict = {}

    def template_of(b):
        key = (id(doses[b]), float(hi[b]))
        if key not in templates:
            templates[key] = _template(model, doses[b], float(hi[b]))
        return templates[key]

    sign = np.array([1.0, -1.0])  # max, min
    best_v = np.full((n_b, 2, n_c), np.nan)
    best_t = np.full((n_b, 2, n_c), np.nan)
    status = np.zeros(n_b, dtype=int)
    offsets = np.linspace(-1.0, 1.0, k)  # odd k: the centre is sampled again
    done = 0
    for a in range(0, n_b, chunk):
        idx = np.arange(a, min(a + chunk, n_b))
        keep = len(idx)
        th, cv = theta[idx], cov[idx]
        lo_c, hi_c = lo[idx], hi[idx]

        def solve(grids):
            """Solve the chunk at ``grids`` (one sorted array per member), each padded in front
            with repeats of its first time to one bucketed length."""
            n_out = _bucket(max(len(g) for g in grids))
            events, shared = [], {}
            for j, b in enumerate(idx):
                key = (id(grids[j]), id(template_of(b)))
                if key not in shared:
                    g = grids[j]
                    shared[key] = _member_events(template_of(b), np.concatenate([np.full(n_out - len(g), g[0]), g]))
                events.append(shared[key])
            sol = solve_subjects(model, events, th, cv, options)
            status[idx[:keep]] = np.maximum(status[idx[:keep]], sol.status[:keep])
            return sol.times, sol.outputs[:, :, cols]

        def improve(t, y, bv, bt):
            for s in (0, 1):
                zs = np.where(np.isnan(y), -np.inf, sign[s] * y)  # (members, T, C)
                i = np.argmax(zs, axis=1)
                v = np.take_along_axis(zs, i[:, None, :], axis=1)[:, 0]
                better = v > bv[:, s]
                bv[:, s] = np.where(better, v, bv[:, s])
                bt[:, s] = np.where(better, np.take_along_axis(t, i, axis=1), bt[:, s])

        # pass 1: the samples already known (the output times) and the first grid
        bv = np.full((keep, 2, n_c), -np.inf)
        bt = np.zeros((keep, 2, n_c))
        if known is not None:
            for j, b in enumerate(idx):
                improve(known[0][b][None], known[1][b][None], bv[j: j + 1], bt[j: j + 1])
        improve(*solve([first[b] for b in idx]), bv, bt)
        half = np.empty((keep, 2, n_c))
        for j, b in enumerate(idx):  # the spacing around each best time on the member's own grid
            g = first[b] if known is None else np.union1d(first[b], known[0][b])
            pos = np.searchsorted(g, bt[j])
            half[j] = np.maximum(bt[j] - g[np.maximum(pos - 1, 0)], g[np.minimum(pos + 1, len(g) - 1)] - bt[j])
        # zoom passes: a window of k points, two spacings wide, around every best time
        for _ in range(_ZOOM_PASSES):
            grids = []
            for j in range(keep):
                # outputs peaking together (a concentration and its effects) share one window
                windows = np.unique(np.stack([bt[j].ravel(), half[j].ravel()], axis=1), axis=0)
                grids.append(np.unique(np.clip((windows[:, :1] + windows[:, 1:] * offsets).ravel(), lo_c[j], hi_c[j])))
            t, y = solve(grids)
            improve(t, y, bv, bt)
            half = half * 2.0 / (k - 1)
        # final parabola through the best sample and its nearest distinct neighbours
        for j in range(keep):
            ug, first_i = np.unique(t[j], return_index=True)
            if len(ug) < 3:
                continue
            for s in (0, 1):
                zu = sign[s] * y[j][first_i]  # (U, C)
                pos = np.clip(np.searchsorted(ug, bt[j, s]), 1, len(ug) - 2)
                cc = np.arange(n_c)
                t0, t1, t2 = ug[pos - 1], ug[pos], ug[pos + 1]
                z0, z1, z2 = zu[pos - 1, cc], zu[pos, cc], zu[pos + 1, cc]
                with np.errstate(divide="ignore", invalid="ignore"):
                    tv, zv, curv = _vertex(t0, t1, t2, z0, z1, z2)
                    gain = zv - z1
                    scale = np.maximum.reduce([np.abs(z0), np.abs(z1), np.abs(z2)])
                    ok = ((t1 == bt[j, s]) & (z1 >= z0) & (z1 >= z2) & (curv < 0) & np.isfinite(zv) & (tv >= t0) & (tv <= t2)
                          & (gain >= 0) & (gain <= _PARABOLA_TOL * scale))
                bv[j, s] = np.where(ok, zv, bv[j, s])
                bt[j, s] = np.where(ok, tv, bt[j, s])
        best_v[a: a + keep] = (sign[None, :, None] * bv)[:keep]
        best_t[a: a + keep] = bt[:keep]
        done += keep
        if tick is not None:
            tick(done)
    bad = status != SolveStatus.SUCCESS
    best_v[bad] = np.nan
    best_t[bad] = np.nan
    return best_v[:, 0], best_t[:, 0], best_v[:, 1], best_t[:, 1], status


def simulate(
    model: Model,
    regimen: str | Regimen | Sequence[Records] | Any = None,
    times: Sequence[float] | np.ndarray | None = None,
    *,
    params: Mapping[str, Any] | None = None,
    subject_params: Any = None,
    covariates: Mapping[str, Any] | None = None,
    n_subjects: int | None = None,
    iiv: bool | None = None,
    seed: int | None = None,
    time_unit: str | None = None,
    solver: str = DEFAULT_SOLVER_OPTIONS["simulate"].solver,
    rtol: float = DEFAULT_SOLVER_OPTIONS["simulate"].rtol,
    atol: float = DEFAULT_SOLVER_OPTIONS["simulate"].atol,
    max_steps: int = DEFAULT_SOLVER_OPTIONS["simulate"].max_steps,
    throw: bool = True,
    residual_error: bool = False,
    extrema: bool | Sequence[str] = False,
    progress: Any = None,
    hint_style: str = "python",
):
    """Simulate a model for a regimen or a dataset.

    **Main arguments**

    Parameters
    ----------
    model
        A :class:`~il2pkpd.model.Model`. :func:`il2pkpd.simulate` (the public entry point)
        also takes a model name (``"ivory"``) or a ``.toml`` path, and loads it.
    regimen
        A regimen string (``"1.5 MIU sc qd x5 then 1.5 MIU sc qw x7"``), a
        :class:`~il2pkpd.dosing.Regimen`, a dataset (an object with
        ``subject_records(model)``, e.g. :func:`il2pkpd.io.nonmem.read_nonmem_csv`) or a
        list of :class:`~il2pkpd.dosing.Records` (one per subject). ``None``: no doses.
    times
        Output times, in ``time_unit`` (default: the model's clock). Required with a
        regimen; with a dataset, defaults to the dataset's own record times.

    **Other arguments**

    params, subject_params, covariates, iiv, seed
        See :func:`individual_parameters`. ``n_subjects`` defaults to 1 (or the number
        of rows of ``subject_params``, or the dataset's subjects).
    time_unit
        Unit of ``times`` and of the returned ``time`` coordinate.
    solver, rtol, atol, max_steps
        Solver settings (:class:`~il2pkpd.solve.SolverOptions`).
    throw
        Raise :class:`~il2pkpd.errors.SolverError` when any subject fails; with
        ``False`` the failure is reported in the ``status`` variable.
    residual_error
        Also return, for each model observation ``X``, a variable ``X_obs``: its output
        plus residual error drawn from the observation's error model (seeded by ``seed``).
    extrema
        ``True`` (every output) or a list of output names: also return, for each output
        ``X``, ``X_max``, ``X_tmax``, ``X_min`` and ``X_tmin`` per subject (and draw): its
        maximum and minimum over the simulated interval (from the first to the last output
        time; with a dataset at its own records, the subject's first to last record) and
        when they occur, located by the solver between the output times (see
        :func:`_locate_extrema`), not read off the output grid: a daily grid reads the
        IVORY IL-2 peak as 0.47 pM, the solver finds 27.2 pM. Costs about four more solves
        per subject. A dataset whose parameters or covariates change between records gives
        the extrema over its records only (``attrs['located']`` says which).
    progress
        A callable, called as ``progress(done, total)`` (counting solves: one per subject and
        draw, four more with ``extrema``) as the work advances, e.g. to drive a progress bar
        (``il2pkpd simulate`` shows one); the batch is then solved in about 20 blocks.
    hint_style
        ``"python"`` (default) or ``"cli"``: whether error hints name ``simulate()``'s
        keywords or the command line's flags.

    Returns
    -------
    xarray.Dataset
        Dims ``(draw,) subject, time``. Variables: outputs and states (``attrs['unit']``),
        individual parameters (``subject`` or ``draw, subject``) and ``status``; with
        ``extrema``, ``X_max``/``X_tmax``/``X_min``/``X_tmin`` (``subject`` or ``draw, subject``).

    Raises
    ------
    RegimenError, ModelSpecError, DataFormatError, ShapeError
        On invalid input, naming the argument and value.
    SolverError
        When a solve fails and ``throw=True``.
    """
    model = check_model(model)
    if hint_style not in _HINT_STYLES:
        raise ModelSpecError(f"`hint_style` must be one of {list(_HINT_STYLES)}, got {hint_style!r}")
    if progress is not None and not callable(progress):
        raise ModelSpecError(f"`progress` must be a callable progress(done, total) or None, got {progress!r} ({type(progress).__name__})")
    options = SolverOptions(solver=solver, rtol=rtol, atol=atol, max_steps=max_steps)
    extrema_names = _extrema_names(model, extrema)
    tu = time_unit or model.time_unit
    try:
        to_model = conversion_factor(tu, model.time_unit)
    except UnitError as exc:
        raise ModelSpecError(f"`time_unit` {tu!r} is not a unit of time: {exc}") from None

    dataset_subjects = None
    row_theta = row_cov = None
    subject_ids: list
    from_data: dict = {}
    if regimen is None or isinstance(regimen, (str, Regimen)):
        reg = parse_regimen(regimen) if regimen is not None else None
        if n_subjects is None:
            n_subjects = _table_rows(subject_params) if subject_params is not None else 1
        if int(n_subjects) != n_subjects or n_subjects < 1:
            raise ShapeError(f"`n_subjects` must be an integer >= 1, got {n_subjects!r}")
        subject_ids = list(range(1, n_subjects + 1))
        if times is None:
            raise RegimenError("`times` must be given when simulating a regimen (e.g. numpy.arange(0, 365))")
    elif hasattr(regimen, "subject_records"):
        dataset_subjects = regimen.subject_records(model)
        per_row: dict = {}
        p_cols, c_cols = regimen.subject_values(model, per_row)
        if per_row and times is not None:
            raise DataFormatError(
                f"columns {sorted(per_row)} change between records; simulate such a dataset at its own record "
                "times (times=None), or make them constant within each subject"
            )
        names, cov_names = list(model.parameter_names), list(model.covariate_names)
        row_theta = {names.index(n): v for n, v in per_row.items() if n in names} or None
        row_cov = {cov_names.index(n): v for n, v in per_row.items() if n in cov_names} or None
        from_data = {**p_cols, **c_cols}
        warn_missing_covariates(model, set(c_cols) | {resolve_param_key(model, k)[1] for k in (covariates or {})}
                                | {k for k in (_table_columns(subject_params) if subject_params is not None else {})})
        subject_ids = [r.subject for r in dataset_subjects]
        n_subjects = len(subject_ids)
    elif isinstance(regimen, Sequence) and all(isinstance(r, Records) for r in regimen):
        dataset_subjects = list(regimen)
        subject_ids = [r.subject if r.subject is not None else i + 1 for i, r in enumerate(dataset_subjects)]
        n_subjects = len(subject_ids)
    else:
        raise RegimenError(f"`regimen` must be a regimen string, a Regimen, a dataset or a list of Records, got {type(regimen).__name__}")

    if from_data:
        sp_cols = dict(from_data)
        if subject_params is not None:
            sp_cols.update(_table_columns(subject_params))
        subject_params = sp_cols
    theta, cov, info = individual_parameters(
        model, n_subjects, params=params, subject_params=subject_params, covariates=covariates, iiv=iiv, seed=seed
    )

    if times is not None:
        t_user = np.asarray(times, dtype=float).reshape(-1)
        if t_user.size == 0 or not np.all(np.isfinite(t_user)):
            raise ShapeError("`times` must be a non-empty array of finite numbers", t_user.shape, "(n_times,)")
        if np.any(np.diff(t_user) < 0):
            raise ShapeError("`times` must be sorted (non-decreasing)")
        t_model = t_user * to_model
    if dataset_subjects is None:
        cov_names = list(model.covariate_names)
        if reg is None or all(b.per is None for b in reg.blocks):
            shared_doses = Records(reg.to_records(model) if reg is not None else [], subject=None)
            doses = [shared_doses] * n_subjects
        else:  # per-m2 / per-kg doses depend on each subject's covariates
            _check_dose_covariates(model, reg, cov, subject_ids)
            doses = [
                Records(reg.to_records(model, covariates=dict(zip(cov_names, cov[i]))), subject=subject_ids[i])
                for i in range(n_subjects)
            ]
        made: dict[int, Records] = {}
        subjects = []
        for d in doses:
            if id(d) not in made:
                made[id(d)] = d.with_outputs(t_model)
            subjects.append(made[id(d)])
        output_rows = "obs"
    else:
        doses = [Records([r for r in s if r.is_dose or r.evid == 3], subject=s.subject) for s in dataset_subjects]
        if times is not None:
            subjects = [s.with_outputs(t_model) for s in doses]
            output_rows = "obs"
        else:
            subjects = dataset_subjects
            output_rows = "all"

    nd = theta.shape[0]
    n_members = nd * n_subjects
    extra_solves = (1 + _ZOOM_PASSES) if extrema_names else 0
    total = n_members * (1 + extra_solves)
    report = progress
    if report is None:
        sol = solve_records(model, subjects, theta, cov, options=options, output_rows=output_rows, row_theta=row_theta, row_cov=row_cov)
    else:
        report(0, total)
        sol = _solve_in_blocks(model, subjects, theta, cov, options=options, output_rows=output_rows, row_theta=row_theta,
                               row_cov=row_cov, tick=lambda n: report(n, total))
    if throw:
        raise_failures(sol.status, sol.fail_time, subject_ids, model.time_unit, hint_style=hint_style, n_draws=info["n_draws"])
    ds = _to_dataset(model, sol, theta, cov, subject_ids, info["n_draws"], tu, to_model, times is None)
    if extrema_names:
        tick = None if report is None else (lambda n: report(n_members + n * extra_solves, total))
        ds = _add_extrema(model, ds, sol, extrema_names, doses, subjects, theta, cov, options, t_model if times is not None else None,
                          to_model, bool(row_theta or row_cov), info["n_draws"], tick)
    if residual_error:
        ds = add_residual_error(model, ds, seed=seed)
    return ds


def _extrema_names(model: Model, extrema) -> list[str]:
    outputs = list(model.symbolic.output_names)
    if extrema is None or extrema is False:
        return []
    if extrema is True:
        return outputs
    names = [extrema] if isinstance(extrema, str) else list(extrema)
    for name in names:
        if name not in outputs:
            raise ModelSpecError(f"`extrema` names {name!r}, which is not an output of model {model.name!r}; outputs: {outputs}")
    return names


def _check_dose_covariates(model: Model, reg: Regimen, cov: np.ndarray, subject_ids: Sequence) -> None:
    """Per-m2 / per-kg doses: the ``bsa`` / ``wt`` covariate must be a positive number (a
    negative one would otherwise surface as a negative AMT, blaming the dose)."""
    names = list(model.covariate_names)
    for b in reg.blocks:
        if b.per is None:
            continue
        key = "bsa" if b.per == "m2" else "wt"
        if key not in names:
            continue  # to_records names the missing covariate
        unit = next(c.unit for c in model.covariates if c.name == key)
        vals = cov[:, names.index(key)]
        bad = np.flatnonzero(~(np.isfinite(vals) & (vals > 0)))
        if len(bad):
            i = int(bad[0])
            raise ModelSpecError(
                f"covariate `{key}` must be a finite number > 0 ({unit}) to convert the per-{b.per} dose {b.describe()!r}, "
                f"got {float(vals[i])!r} (subject {subject_ids[i]!r})"
            )


def _add_extrema(model, ds, sol, names, doses, subjects, theta, cov, options, t_model, to_model, per_row, n_draws, tick):
    """Add ``X_max``, ``X_tmax``, ``X_min``, ``X_tmin`` to ``ds`` (see ``simulate(extrema=...)``)."""
    sym = model.symbolic
    cols = [list(sym.output_names).index(n) for n in names]
    nd, ns = theta.shape[0], len(subjects)
    status = sol.status.reshape(-1)
    if per_row:
        # values change between records: the solver cannot be asked for other times (the
        # dataset's rows carry them); the extrema over the records are labelled as such
        n_t = sol.n_times[:ns]
        vmax = np.full((nd * ns, len(cols)), np.nan)
        vmin, tmax, tmin = vmax.copy(), vmax.copy(), vmax.copy()
        for b in range(nd * ns):
            n = int(n_t[b % ns])
            y, t = sol.outputs[b, :n][:, cols], sol.times[b, :n]
            i, j = np.nanargmax(y, axis=0), np.nanargmin(y, axis=0)
            cc = np.arange(len(cols))
            vmax[b], tmax[b], vmin[b], tmin[b] = y[i, cc], t[i], y[j, cc], t[j]
        bad = status != SolveStatus.SUCCESS
        for a in (vmax, tmax, vmin, tmin):
            a[bad] = np.nan
        located = "on the dataset's records only (values change between records)"
        if tick is not None:
            tick(nd * ns)
    else:
        if t_model is not None:
            lo_s = np.full(ns, float(t_model[0]))
            hi_s = np.full(ns, float(t_model[-1]))
        else:  # a dataset at its own records: each subject's first to last record
            lo_s = np.array([min(r.time for r in s) for s in subjects], dtype=float)
            hi_s = np.array([max(r.time for r in s) for s in subjects], dtype=float)
        made: dict = {}
        common = []
        for i in range(ns):
            key = (id(doses[i]), lo_s[i], hi_s[i])
            if key not in made:
                made[key] = _first_grid(model, doses[i], lo_s[i], hi_s[i])
            common.append(made[key])
        members = [i for _ in range(nd) for i in range(ns)]
        theta_m, cov_m = theta.reshape(nd * ns, -1), cov[members]
        events = _dose_event_times(model, [doses[i] for i in members], theta_m, cov_m)
        first = []
        for b, i in enumerate(members):
            ev = events[b]
            ev = ev[(ev >= lo_s[i]) & (ev <= hi_s[i])]
            first.append(np.union1d(common[i], ev) if len(ev) else common[i])
        n_valid = [int(n) for n in sol.n_times[:ns]]  # the output times solved already
        known = ([sol.times[b, : n_valid[i]] for b, i in enumerate(members)],
                 [sol.outputs[b, : n_valid[i]][:, cols] for b, i in enumerate(members)])
        vmax, tmax, vmin, tmin, st = _locate_extrema(
            model, [doses[i] for i in members], theta_m, cov_m, options,
            lo_s[members], hi_s[members], first, cols, known=known, tick=tick,
        )
        bad = status != SolveStatus.SUCCESS
        for a in (vmax, tmax, vmin, tmin):
            a[bad] = np.nan
        located = ("by the solver between the output times (first pass: the output times, a grid dense after every dose "
                   f"and the times of doses and infusion ends; then {_ZOOM_PASSES} zoom passes of {_ZOOM_POINTS} points; "
                   "then a parabola where smooth)")
    dims = ("draw", "subject") if n_draws is not None else ("subject",)

    def shaped(a):
        a = a.reshape(nd, ns)
        return a if n_draws is not None else a[0]

    tu = ds.attrs["time_unit"]
    new = {}
    for j, name in enumerate(names):
        unit = sym.output_units[cols[j]]
        common = {"kind": "extremum", "output": name, "located": located}
        new[f"{name}_max"] = (dims, shaped(vmax[:, j]), {**common, "unit": unit, "description": f"maximum of {name}"})
        new[f"{name}_tmax"] = (dims, shaped(tmax[:, j] / to_model), {**common, "unit": tu, "description": f"time of the maximum of {name}"})
        new[f"{name}_min"] = (dims, shaped(vmin[:, j]), {**common, "unit": unit, "description": f"minimum of {name}"})
        new[f"{name}_tmin"] = (dims, shaped(tmin[:, j] / to_model), {**common, "unit": tu, "description": f"time of the minimum of {name}"})
    return ds.assign(new)


def with_residual_error(error, y: np.ndarray, eps: np.ndarray) -> np.ndarray:
    """Predictions ``y`` with residual error of an observation's error model (``error``:
    its ``ErrorModel``) for standard normals ``eps`` (see :func:`add_residual_error`)."""
    if error.model == "additive":
        return y + error.add * eps
    if error.model == "proportional":
        return y * (1 + error.prop * eps)
    if error.model == "combined":
        return y + np.sqrt(error.add**2 + (error.prop * y) ** 2) * eps
    return y * np.exp(error.sigma * eps)


def add_residual_error(model: Model, ds, *, seed: int | None = None):
    """Add ``<observation>_obs`` variables: outputs with residual error.

    Error models (epsilon ~ N(0, 1), independent per value): additive ``y + add*eps``;
    proportional ``y*(1 + prop*eps)``; combined ``y + sqrt(add^2 + prop^2 y^2)*eps`` (as
    nlmixr2's ``add() + prop()``); lognormal ``y*exp(sigma*eps)``.
    """
    rng = np.random.default_rng(None if seed is None else [seed, 1])  # a stream apart from IIV
    new = {}
    for obs in model.observations:
        y = ds[obs.output]
        e = obs.error
        v = with_residual_error(e, y.values, rng.standard_normal(y.shape))
        new[f"{obs.name}_obs"] = (y.dims, v, {"unit": y.attrs.get("unit", ""), "kind": "simulated observation", "error_model": e.model, "dvid": obs.dvid})
    return ds.assign(new)


def _to_dataset(model, sol, theta, cov, subject_ids, n_draws, tu, to_model, ragged):
    import xarray as xr

    sym = model.symbolic
    ns = len(subject_ids)
    nd = theta.shape[0]
    n_t = sol.outputs.shape[1]
    shape = (nd, ns, n_t)
    dims = ("draw", "subject", "time") if n_draws is not None else ("subject", "time")

    def shaped(a):
        a = a.reshape(shape + a.shape[2:])
        return a if n_draws is not None else a[0]

    if ragged:
        time_coord = np.arange(n_t)
        dims = dims[:-1] + ("record",)
    else:
        time_coord = sol.times[0] / to_model
    data_vars = {}
    for j, name in enumerate(sym.output_names):
        desc = next((o.description for o in model.outputs if o.name == name), "")
        data_vars[name] = (dims, shaped(sol.outputs[:, :, j]), {"unit": sym.output_units[j], "kind": "output", "description": desc})
    for j, name in enumerate(sym.state_names):
        data_vars[name] = (dims, shaped(sol.states[:, :, j]), {"unit": sym.state_units[j], "kind": "state"})
    pdims = dims[:-1]
    for j, p in enumerate(model.parameters):
        vals = theta[:, :, j] if n_draws is not None else theta[0, :, j]
        data_vars[p.name] = (pdims, vals, {"unit": p.unit, "kind": "parameter", "description": p.description})
    for j, c in enumerate(model.covariates):
        data_vars[c.name] = (("subject",), cov[:, j], {"unit": c.unit, "kind": "covariate"})
    status = sol.status.reshape(nd, ns)
    data_vars["status"] = (pdims, status if n_draws is not None else status[0], {"meaning": "; ".join(f"{k}: {v}" for k, v in SolveStatus.MESSAGES.items())})
    coords = {"subject": subject_ids}
    if ragged:
        coords["record_time"] = (("subject", "record"), sol.times[:ns] / to_model)
    else:
        coords["time"] = ("time", time_coord, {"unit": tu})
    if n_draws is not None:
        coords["draw"] = np.arange(n_draws)
    from . import __version__

    return xr.Dataset(data_vars, coords=coords, attrs={"model": model.name, "time_unit": tu, "il2pkpd_version": __version__, "simulated": "yes: model predictions, not observed data"})
