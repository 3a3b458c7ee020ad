"""The computing half of a sweep: one chunk (a design cell x a block of draws) -> a table of
metrics per (draw, subject), and the summaries over subjects and draws.

Everything here is deterministic given the design: population draws are passed in, random
effects are derived from ``(seed, draw, subject)`` only (:func:`random_effects`), so a cell's
numbers do not depend on how the sweep is split into chunks or spread over workers. The same
virtual subjects are used in every cell (common random numbers): regimens are compared on the
same patients, as in a crossover, which removes between-patient noise from the contrasts.

Chunks, workers and Dask live in :mod:`il2pkpd.design.sweep_run`; the output folder in
:mod:`il2pkpd.io.sweep_store`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from ..dosing import Record, Records, parse_regimen
from ..errors import OptionError
from ..likelihood import individual_theta
from ..solve import BatchSolver, EventBatch, SolverOptions, build_events
from .metrics import MetricEvaluator, Target, output_grid, parse_metric, parse_target
from .sweep_design import Cell, SweepDesign

__all__ = ["CellRunner", "random_effects", "summarise", "hr_name"]

_DAY = {"day": 1.0, "d": 1.0, "h": 24.0, "hour": 24.0, "min": 1440.0, "week": 1 / 7.0}


def hr_name(metric_name: str) -> str:
    """Per-row column of an ``hr(...)`` metric: the cumulative hazard ``cumhaz(...)``."""
    return "cumhaz" + metric_name[2:] if metric_name.startswith("hr(") else metric_name


@jax.jit
def _normals(seed, draws, subjects, n_params_template):
    key = jax.random.key(seed)

    def one(d, s):
        return jax.random.normal(jax.random.fold_in(jax.random.fold_in(key, d), s), n_params_template.shape)

    return jax.vmap(lambda d: jax.vmap(lambda s: one(d, s))(subjects))(draws)


def random_effects(seed: int, draws: np.ndarray, subjects: int, n_params: int) -> np.ndarray:
    """Standard normals (len(draws), subjects, n_params), each (draw, subject) row from its own
    key ``fold_in(fold_in(key(seed), draw), subject)``: independent of chunking."""
    if subjects == 0:
        return np.zeros((len(draws), 1, n_params))
    z = _normals(int(seed), jnp.asarray(draws, dtype=jnp.uint32), jnp.arange(subjects, dtype=jnp.uint32), jnp.zeros(n_params))
    return np.asarray(z, dtype=float)


class CellRunner:
    """Compiled metrics of a design's cells (one compiled program for every cell).

    Parameters
    ----------
    design
        The sweep design.
    model
        The model (already loaded).
    population
        Population draws: parameter name -> (D,) values (missing parameters: the model's
        typical value). ``D`` must be at least ``design.draws``.
    omegas
        IIV SDs by parameter name (default: the model file's).
    """

    def __init__(self, design: SweepDesign, model, population: Mapping[str, np.ndarray] | None = None,
                 omegas: Mapping[str, float] | None = None):
        self.design, self.model = design, model
        names = model.parameter_names
        unknown = set(population or {}) - set(names)
        if unknown:
            raise OptionError(f"population draws name parameters {sorted(unknown)} that model {model.name!r} lacks")
        for k in [k for k, _ in design.params] + [k for k, _, _ in design.lhs]:
            if k not in names:
                raise OptionError(f"swept parameter {k!r} is not a parameter of model {model.name!r} (has {names})")
        self.cells = design.cells()
        base = np.array([p.value for p in model.parameters], dtype=float)
        n_draws = design.draws
        self.theta_pop = np.tile(base, (n_draws, 1))
        for k, v in (population or {}).items():
            v = np.asarray(v, dtype=float).ravel()
            if len(v) < n_draws:
                raise OptionError(f"population draws of {k!r}: {len(v)} values, the design asks for {n_draws} draws")
            self.theta_pop[:, names.index(k)] = v[:n_draws]
        om = {p.name: (p.iiv.omega if p.iiv is not None else 0.0) for p in model.parameters}
        om.update({k: float(v) for k, v in (omegas or {}).items()})
        self.omegas = np.array([om[n] for n in names])
        self.metrics = [parse_metric(t, model) for t in design.all_metric_texts()]
        self.targets: list[Target] = [parse_target(t, model) for t in design.targets]
        self.columns = [hr_name(m.name) for m in self.metrics]
        scale = _DAY.get(model.time_unit)
        if scale is None:
            raise OptionError(f"sweeps need a model time unit of hours or days, got {model.time_unit!r}")
        extra = sorted({x for m in self.metrics for x in m.times() if x <= design.horizon})
        for m in self.metrics:
            if any(x > design.horizon for x in m.times()):
                raise OptionError(f"metric {m.name} asks for time {max(m.times()):g}, beyond the horizon {design.horizon:g} {model.time_unit}")
        regs = design.regimen_list()
        self.regimen_index = {label: i for i, (label, _) in enumerate(regs)}
        subjects = []
        self.grids = []
        for label, text in regs:
            doses = list(parse_regimen(text).to_records(model)) if text else []
            # doses after the horizon cannot change any metric (all metric times are <= horizon)
            doses = [r for r in doses if r.time <= design.horizon]
            grid = output_grid([r.time for r in doses], design.horizon, step=design.grid_step, dense_step=design.dense_step, extra=extra,
                               time_scale=scale)
            recs = doses + [Record(time=float(t), evid=2, row=10_000_000 + i) for i, t in enumerate(grid)]
            recs.sort(key=lambda r: r.time)
            recs = [dataclasses.replace(r, row=i) for i, r in enumerate(recs)]
            subjects.append(build_events(Records(recs, subject=label), model, output_rows="obs"))
            self.grids.append(grid)
        self._batch = EventBatch.stack(subjects)
        self._cov = np.array([c.value for c in model.covariates], dtype=float)
        options = SolverOptions(rtol=design.rtol, atol=design.atol, solver=design.solver)
        solve = BatchSolver(model.compiled, options, reduce=MetricEvaluator(self.metrics, model))

        def run(events: EventBatch, theta_pop, z):  # one regimen's events (no subject axis)
            theta = jax.vmap(lambda tp, zz: individual_theta(model, tp, jnp.asarray(self.omegas), zz))(theta_pop, z)
            theta = theta.reshape(-1, theta.shape[-1])
            b = theta.shape[0]
            cov = jnp.broadcast_to(jnp.asarray(self._cov), (b, self._cov.shape[0]))
            return solve(events.broadcast_to(b), theta, cov)

        self._run = jax.jit(run)

    def run(self, cell: Cell, draws: np.ndarray):
        """Metrics of ``cell`` for population draws ``draws`` (indices): a dict of columns
        (``draw``, ``subject``, ``status``, one per metric), rows ordered by draw then subject."""
        draws = np.asarray(draws, dtype=int)
        names = self.model.parameter_names
        theta_pop = self.theta_pop[draws].copy()
        for k, v in cell.params:
            theta_pop[:, names.index(k)] = v
        n_sub = max(1, self.design.subjects)
        z = random_effects(self.design.seed, draws, self.design.subjects, len(names))
        r = self.regimen_index[cell.regimen_label]
        values, status, _ = self._run(self._batch.take(r).to_jax(), jnp.asarray(theta_pop), jnp.asarray(z))
        values, status = np.asarray(values), np.asarray(status)
        values = np.where((status == 0)[:, None], values, np.nan)  # a failed solve gives no metric, never a wrong one
        out = {"draw": np.repeat(draws, n_sub), "subject": np.tile(np.arange(n_sub), len(draws)), "status": status.astype(np.int32)}
        for j, col in enumerate(self.columns):
            out[col] = values[:, j]
        return out


def summarise(table, design: SweepDesign, model, quantiles=(0.05, 0.5, 0.95)):
    """Summaries per cell: for every metric the mean and quantiles over all (draw, subject)
    rows; for ``hr(...)`` the per-draw ratio of mean cumulative hazards to the untreated arm
    at the same parameter point, summarised over draws; for each target the probability
    that it holds (over all rows); and the number of failed solves.

    ``table`` is a pandas DataFrame with ``cell``, ``draw``, ``subject`` and metric columns.
    Returns a DataFrame with one row per cell.
    """
    import pandas as pd

    metrics = [parse_metric(t, model) for t in design.all_metric_texts()]
    targets = [parse_target(t, model) for t in design.targets]
    cells = design.cells()
    untreated = {c.params: c.index for c in cells if c.regimen is None}
    rows = []
    by_cell = {k: g for k, g in table.groupby("cell", sort=True)}
    for c in cells:
        g = by_cell.get(c.index)
        if g is None:
            continue
        row = {"cell": c.index, "regimen": c.regimen_label, "regimen_text": c.regimen or "untreated"}
        row.update({k: v for k, v in c.params})
        row["n"] = len(g)
        row["failed"] = int((g["status"] != 0).sum())
        for m in metrics:
            if m.kind == "hr":
                ref = by_cell.get(untreated.get(c.params, -1))
                col = hr_name(m.name)
                if ref is None:
                    row[f"{m.name} median"] = np.nan
                    continue
                num = g.groupby("draw")[col].mean()
                den = ref.groupby("draw")[col].mean()
                hr = (num / den).to_numpy()
                for q in quantiles:
                    row[f"{m.name} {_qname(q)}"] = float(np.nanquantile(hr, q)) if np.isfinite(hr).any() else np.nan
                continue
            x = g[m.name].to_numpy(dtype=float)
            row[f"{m.name} mean"] = float(np.nanmean(x)) if np.isfinite(x).any() else np.nan
            for q in quantiles:
                row[f"{m.name} {_qname(q)}"] = float(np.nanquantile(x, q)) if np.isfinite(x).any() else np.nan
        for t in targets:
            ok = t.holds({m.name: g[m.name].to_numpy(dtype=float) for m, _, _ in t.clauses})
            valid = np.all([np.isfinite(g[m.name].to_numpy(dtype=float)) for m, _, _ in t.clauses], axis=0)
            row[f"P({t.text})"] = float(ok[valid].mean()) if valid.any() else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def _qname(q: float) -> str:
    return "median" if q == 0.5 else f"q{round(100 * q):02d}"
