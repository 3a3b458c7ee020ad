"""The public ``simulate()``: model x parameters x regimen (or dataset) x times.

Returns an :class:`xarray.Dataset` with named dimensions ``subject`` and ``time`` (and
``draw`` when population parameters come as draws), one variable per output and state
(unit in ``attrs``), the individual parameters, and a per-subject solver ``status``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .dosing import Record, Records, Regimen, parse_regimen
from .errors import DataFormatError, ModelSpecError, RegimenError, ShapeError, SolverError
from .model import Model
from .solve import SolverOptions, SolveStatus, build_events, solve_subjects
from .units import UnitError, conversion_factor

__all__ = ["simulate", "individual_parameters", "solve_records", "add_residual_error"]


def _as_model(model) -> Model:
    if isinstance(model, Model):
        return model
    from .io.model_file import load_model

    return load_model(model)


def _param_key(model: Model, key: str) -> tuple[str, str]:
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
                omega_draws[key[6:]] = np.atleast_1d(np.asarray(val, dtype=float))
                continue
            kind, name = _param_key(model, key)
            arr = np.asarray(val, dtype=float)
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
        kind, name = _param_key(model, key)
        if kind != "cov":
            raise ModelSpecError(f"`covariates` key {key!r} is a parameter, not a covariate; pass it in `params`")
        arr = np.asarray(val, dtype=float)
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
            kind, name = _param_key(model, key)
            arr = np.asarray(arr, dtype=float)
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
            if p.iiv.kind == "lognormal":
                new = cur * np.exp(eta)
            elif p.iiv.kind == "normal":
                new = cur + eta
            else:
                logit = np.log(cur / (1 - cur)) + eta
                new = 1 / (1 + np.exp(-logit))
            theta[:, :, j] = np.where(given[None, :, j], cur, new)
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
        rec_cov = []
        for _ in range(nd):
            for i, recs in enumerate(subjects):
                rows = np.array([r.row for r in recs])
                times = np.array([r.time for r in recs], dtype=float)
                values = np.tile(cov[i], (len(recs), 1))
                for j, vals in row_cov.items():
                    values[:, j] = vals[rows]
                rec_cov.append((times, values))
        cov_all = np.array([rc[1][0] for rc in rec_cov])
    return solve_subjects(model, ev_all, theta.reshape(nd * ns, -1), cov_all, options, ev_theta=ev_theta, rec_cov=rec_cov)


def _raise_failures(status: np.ndarray, fail_time: np.ndarray, subject_ids: Sequence, time_unit: str) -> None:
    bad = np.flatnonzero(status.reshape(-1) != SolveStatus.SUCCESS)
    if len(bad) == 0:
        return
    i = int(bad[0])
    code = int(status.reshape(-1)[i])
    sid = subject_ids[i % len(subject_ids)]
    t = fail_time.reshape(-1)[i]
    near = f" near t={t:.6g} {time_unit}" if np.isfinite(t) else ""
    more = f" ({len(bad)} batch members failed in all)" if len(bad) > 1 else ""
    raise SolverError(
        f"solve failed for subject {sid!r}{near}: {SolveStatus.MESSAGES[code]}{more}. "
        f"{SolveStatus.HINTS.get(code, '')} Pass throw=False to get a per-subject `status` instead."
    )


def simulate(
    model: Model | str,
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
    solver: str = "tsit5",
    rtol: float = 1e-8,
    atol: float = 1e-12,
    max_steps: int = 100_000,
    throw: bool = True,
    residual_error: bool = False,
):
    """Simulate a model for a regimen or a dataset.

    **Main arguments**

    Parameters
    ----------
    model
        A :class:`~il2pkpd.model.Model`, a model name (``"ivory"``) or a ``.toml`` path.
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

    Returns
    -------
    xarray.Dataset
        Dims ``(draw,) subject, time``. Variables: outputs and states (``attrs['unit']``),
        individual parameters (``subject`` or ``draw, subject``) and ``status``.

    Raises
    ------
    RegimenError, ModelSpecError, DataFormatError, ShapeError
        On invalid input, naming the argument and value.
    SolverError
        When a solve fails and ``throw=True``.
    """
    model = _as_model(model)
    options = SolverOptions(solver=solver, rtol=rtol, atol=atol, max_steps=max_steps)
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
            shared = _with_outputs(reg.to_records(model) if reg is not None else [], t_model, None)
            subjects = [shared] * n_subjects
        else:  # per-m2 / per-kg doses depend on each subject's covariates
            subjects = [
                _with_outputs(reg.to_records(model, covariates=dict(zip(cov_names, cov[i]))), t_model, subject_ids[i])
                for i in range(n_subjects)
            ]
        output_rows = "obs"
    else:
        subjects = dataset_subjects if times is None else [
            Records([r for r in s if r.is_dose or r.evid == 3] , subject=s.subject) for s in dataset_subjects
        ]
        if times is not None:
            subjects = [_with_outputs(list(s), t_model, s.subject) for s in subjects]
            output_rows = "obs"
        else:
            output_rows = "all"

    sol = solve_records(model, subjects, theta, cov, options=options, output_rows=output_rows, row_theta=row_theta, row_cov=row_cov)
    if throw:
        _raise_failures(sol.status, sol.fail_time, subject_ids, model.time_unit)
    ds = _to_dataset(model, sol, theta, cov, subject_ids, info["n_draws"], tu, to_model, times is None)
    if residual_error:
        ds = add_residual_error(model, ds, seed=seed)
    return ds


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
        eps = rng.standard_normal(y.shape)
        e = obs.error
        if e.model == "additive":
            v = y.values + e.add * eps
        elif e.model == "proportional":
            v = y.values * (1 + e.prop * eps)
        elif e.model == "combined":
            v = y.values + np.sqrt(e.add**2 + (e.prop * y.values) ** 2) * eps
        else:
            v = y.values * np.exp(e.sigma * eps)
        new[f"{obs.name}_obs"] = (y.dims, v, {"unit": y.attrs.get("unit", ""), "kind": "simulated observation", "error_model": e.model, "dvid": obs.dvid})
    return ds.assign(new)


def _with_outputs(doses: list, t_model: np.ndarray, subject) -> Records:
    """Dose records plus one EVID 2 output record per time, merged in time order
    (an output at a dose time sees the dose)."""
    recs = [(r.time, 0, r) for r in doses] + [(t, 1, Record(time=float(t), evid=2)) for t in t_model]
    recs.sort(key=lambda x: (x[0], x[1]))
    rows = []
    for i, (_, _, r) in enumerate(recs):
        rows.append(Record(r.time, r.evid, r.amt, r.cmt, r.rate, r.ii, r.addl, r.ss, r.dvid, i))
    return Records(rows, subject=subject)


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
