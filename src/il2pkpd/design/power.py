"""Power and assurance of a trial design: many virtual trials, each simulated from the model
and analysed as the trial would be (:mod:`~il2pkpd.design.analyses`), over a grid of sample
sizes.

* **Power** at fixed parameters (typical values, or one parameter point): the fraction of
  trials whose analysis is significant (two-sided ``p < alpha``).
* **Assurance** (O'Hagan, Stevens & Campbell 2005): power averaged over the posterior; trial
  ``k`` is simulated at posterior draw ``k mod D``, so the trials sample the prior predictive
  of the result. With one draw it is power.

Both carry their Monte Carlo standard error ``sqrt(p (1 - p) / trials)`` (trials are
independent), and the sample size reaching a target is read off the curve by linear
interpolation between the grid's sizes (labelled so).

Random numbers follow the sweep's scheme: trial ``k``'s random effects come from
``(seed, trial k, subject)`` (:func:`~il2pkpd.design.sweep.random_effects`), its event and
enrolment times from a NumPy stream seeded by ``(seed, 2, k)``, its dropout times from
``(seed, 3, k)`` and the residual error of each observation and day from its own stream
``(seed, 4, k, observation, day)``, so a trial is the same whatever chunk computes it and
whichever other analyses the run holds. Sample sizes are nested: the trial
of ``N`` subjects takes the first ``n_arm(N)`` subjects of each arm of the largest one
(common random numbers along the curve, which makes it smooth and monotone in expectation).

Event follow-up (days from each subject's first dose): the design's ``followup``; with
``accrual`` > 0, subjects enter uniformly over that many days and the trial stops
``followup`` days after the first entry, so a subject entering on day ``u`` is censored at
``followup - u`` (administrative censoring), on top of exponential dropout at
``dropout_per_year``. A subject's dropout time (its own stream, ``(seed, 3, k)``) also ends
its visits: an observation sampled after it is missed (NaN), which the analyses handle as
:mod:`~il2pkpd.design.analyses` says. Event times are drawn by inverting the model's
cumulative hazard on a ``grid_step``-day grid (linear between grid points), as in
:func:`~il2pkpd.design.simulate_trial`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from ..dosing import Records, parse_regimen
from ..errors import OptionError
from ..likelihood import individual_theta
from ..model import model_hash
from ..simulation import with_residual_error
from ..solve import BatchSolver, EventBatch, build_events
from ..solver_options import DEFAULT_SOLVER_OPTIONS, SolverOptions
from ..units import conversion_factor
from .analyses import ANALYSES, Analysis, parse_analysis
from .optimize import population_of
from .sweep import random_effects
from .trial import TrialDesign

__all__ = ["trial_power", "PowerResult", "PowerSpec", "arm_sizes"]


@dataclass(frozen=True)
class PowerSpec:
    """What a power run computes (its identity for a resumable output folder)."""

    design: dict
    analyses: tuple[str, ...]
    sample_sizes: tuple[int, ...]
    n_trials: int
    alpha: float
    seed: int
    grid_step: float
    solver: dict
    population_hash: str
    chunk_trials: int = 0  # trials per stored block: a folder's blocks are only resumed in the same size

    def to_dict(self) -> dict:
        return asdict(self)

    def fingerprint(self, model_hash: str = "") -> str:
        return hashlib.sha256(json.dumps({"spec": self.to_dict(), "model": model_hash}, sort_keys=True, default=str).encode()).hexdigest()

    def manifest_cells(self) -> list[dict]:
        return [{"cell": 0, "what": "every sample size, nested within each trial; files hold blocks of trials"}]


@dataclass
class PowerResult:
    """The result of :func:`trial_power`.

    Attributes
    ----------
    table
        One row per analysis, comparison and total sample size: ``quantity`` (``power`` or
        ``assurance``: the fraction of trials significant), its value, ``mc_se``, ``trials``
        (those whose solves all succeeded), and the effect
        estimate's median and 90% range over trials (order statistics; hazard ratios for
        log-rank, 0 or inf in a trial without events in one arm). ``failed``: trials left out
        because a solve failed; ``undefined``: trials whose test has no answer (no event at
        all), counted as not significant.
    trials
        One row per trial, analysis, comparison and sample size: draw, estimate, SE, p,
        significant.
    sample_size
        ``{(analysis, comparison): N}``: the total sample size at which the curve reaches
        ``target`` (linear interpolation between grid sizes; the smallest size when that
        already reaches it; ``None`` if it does not within the grid), when a target was given.
    sample_size_method
        ``{(analysis, comparison): how}``: ``interpolated``, ``at or below the smallest size``
        (the true N may be smaller than the grid reaches) or ``not reached``.
    settings
        Trials, draws, seed, alpha, the arms' sizes per N, wall time.
    """

    table: object
    trials: object
    sample_size: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    sample_size_method: dict = field(default_factory=dict)


def arm_sizes(design: TrialDesign, n_total: int) -> list[int]:
    """Subjects per arm for a total of ``n_total``, in the design's allocation ratio (largest
    remainder; at least 2 per arm)."""
    w = np.array([a.n for a in design.arms], dtype=float)
    raw = n_total * w / w.sum()
    n = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - n), kind="stable")[: n_total - n.sum()]:
        n[i] += 1
    if (n < 2).any():
        raise OptionError(f"sample size {n_total} gives arms of {n.tolist()} subjects in the allocation {w.astype(int).tolist()}; each needs >= 2")
    return n.tolist()


class _TrialSimulator:
    """The compiled simulation of blocks of trials (one program for every block)."""

    def __init__(self, model, design: TrialDesign, analyses: list[Analysis], n_max: list[int], theta_pop, omegas, seed, grid_step, options):
        self.model, self.design, self.analyses, self.n_max, self.seed = model, design, analyses, n_max, seed
        self.theta_pop, self.omegas = theta_pop, omegas
        obs = {o.name: o for o in model.observations}
        names = list(model.symbolic.output_names)
        # MMRM-lite reads every visit the design samples of its observation, not only its endpoint
        every_visit = {(s.observation, float(t)) for a in analyses if a.kind == "mmrm" for s in design.samples if s.observation == a.name
                       for t in s.times if t <= a.day}
        self.obs_days = sorted({(a.name, d) for a in analyses if not a.is_event for d in a.days} | every_visit)
        days = sorted({d for _, d in self.obs_days})
        self.events = sorted({a.name for a in analyses if a.is_event})
        self.grid = np.arange(0.0, design.followup + grid_step / 2, grid_step) if self.events else np.zeros(0)
        self.times = np.unique(np.concatenate([np.asarray(days, dtype=float), self.grid]))
        self.obs_cols = {(n, d): (names.index(obs[n].output), int(np.searchsorted(self.times, d))) for n, d in self.obs_days}
        self.obs_error = {n: obs[n].error for n, _ in self.obs_days}
        self.event_cols = {e: names.index(f"surv_{e}") for e in self.events}
        self.grid_idx = np.searchsorted(self.times, self.grid)
        to_model = conversion_factor("day", model.time_unit)
        arm_events = []
        for a in design.arms:
            doses = parse_regimen(a.regimen).to_records(model) if a.regimen else []
            arm_events.append(build_events(Records(doses, a.name).with_outputs(self.times * to_model, pre_dose=True), model, output_rows="obs"))
        self.arm_of = np.concatenate([np.full(n, i) for i, n in enumerate(n_max)])
        batch = EventBatch.stack([arm_events[i] for i in self.arm_of]).to_jax()
        self._cov = jnp.asarray([c.value for c in model.covariates], dtype=float)
        solve = BatchSolver(model.compiled, options)
        om = jnp.asarray(omegas)

        def run(theta_pop, z):  # theta_pop (T, P), z (T, S, P) -> outputs (T, S, O, n_outputs), status (T, S)
            theta = jax.vmap(lambda tp, zz: individual_theta(model, tp, om, zz))(theta_pop, z)
            t, s = z.shape[:2]
            theta = theta.reshape(t * s, -1)
            cov = jnp.broadcast_to(self._cov, (t * s, self._cov.shape[0]))
            outs, _, status, _ = solve(batch.tile(t), theta, cov)
            return outs.reshape(t, s, *outs.shape[1:]), status.reshape(t, s)

        self._run = jax.jit(run)

    def simulate(self, trials: np.ndarray, draw_of: np.ndarray) -> dict:
        """Trial data of ``trials``: observations with residual error ``{(obs, day): (T, S)}``,
        event ``(time, event)`` (T, S) days, ``ok`` (T, S) solves that succeeded."""
        s_total = len(self.arm_of)
        z = random_effects(self.seed, trials, s_total, self.theta_pop.shape[1])
        outs, status = (np.asarray(a) for a in self._run(jnp.asarray(self.theta_pop[draw_of]), jnp.asarray(z)))
        data: dict = {"ok": status == 0, "obs": {}, "event": {}}
        rngs = [np.random.default_rng([self.seed, 2, int(k)]) for k in trials]
        # residual errors: one stream per (trial, observation, day), so that the noise of one
        # visit does not depend on which other visits the run's analyses read
        eps = np.array([[np.random.default_rng([self.seed, 4, int(k), zlib.crc32(name.encode()), int(round(day * 1e6))]).standard_normal(s_total)
                         for k in trials] for name, day in self.obs_days]).reshape(len(self.obs_days), len(trials), s_total)  # (days, T, S)
        # one dropout time per subject (days), for its visits and its events alike
        rate = self.design.dropout_per_year / 365.25
        t_drop = (np.stack([np.random.default_rng([self.seed, 3, int(k)]).exponential(1.0 / rate, s_total) for k in trials])
                  if rate > 0 else np.full((len(trials), s_total), np.inf))
        for j, (name, day) in enumerate(self.obs_days):
            col, ti = self.obs_cols[(name, day)]
            y = with_residual_error(self.obs_error[name], outs[:, :, ti, col], eps[j])
            data["obs"][(name, day)] = np.where(day < t_drop, y, np.nan) if day > 0 else y  # a visit after dropout is missed
        if self.events:
            u = np.stack([r.uniform(size=(len(self.events), 3, s_total)) for r in rngs], axis=1)  # (events, T, 3, S)
            for j, e in enumerate(self.events):
                surv = outs[:, :, self.grid_idx, self.event_cols[e]]
                cumhaz = np.maximum.accumulate(-np.log(np.maximum(surv, 1e-300)), axis=-1)
                cumhaz = cumhaz - cumhaz[..., :1]
                t_event = _invert(self.grid, cumhaz, -np.log(u[j, :, 0]))
                t_end = self.design.followup - u[j, :, 2] * self.design.accrual  # entry on day U(0, accrual); the trial stops at followup
                time_ = np.minimum(np.minimum(t_event, t_drop), t_end)
                data["event"][e] = (time_, (t_event <= np.minimum(t_drop, t_end)).astype(float))
        return data


def _invert(grid: np.ndarray, cumhaz: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Times where the cumulative hazard (..., G) on ``grid`` reaches ``target`` (...): linear
    between grid points, ``inf`` beyond the grid."""
    i = np.sum(cumhaz < target[..., None], axis=-1)  # first grid index with H >= target
    inside = i < grid.size
    j = np.clip(i, 1, grid.size - 1)
    h0 = np.take_along_axis(cumhaz, (j - 1)[..., None], -1)[..., 0]
    h1 = np.take_along_axis(cumhaz, j[..., None], -1)[..., 0]
    frac = np.where(h1 > h0, (target - h0) / np.where(h1 > h0, h1 - h0, 1.0), 1.0)
    t = grid[j - 1] + frac * (grid[j] - grid[j - 1])
    return np.where(inside, np.where(i == 0, grid[0], t), np.inf)


def _analyse(analysis: Analysis, data: dict, take: np.ndarray, arm: np.ndarray):
    """Run one analysis on the subjects ``take`` (indices into the trial's subjects) with arm
    indicator ``arm`` (1 treated) -> estimate, SE, p (T,) with NaN where a solve failed."""
    ok = data["ok"][:, take].all(axis=1)
    arm2 = np.broadcast_to(arm, (len(ok), len(take)))
    fn = ANALYSES[analysis.kind]
    if analysis.kind == "logrank":
        t, e = (a[:, take] for a in data["event"][analysis.name])
        est, se, p = fn(t, e, arm2)
    elif analysis.kind == "ancova":
        est, se, p = fn(data["obs"][(analysis.name, 0.0)][:, take], data["obs"][(analysis.name, analysis.day)][:, take], arm2)
    elif analysis.kind == "mmrm":
        days = sorted(d for (name, d) in data["obs"] if name == analysis.name and 0 < d <= analysis.day)  # not visits other analyses added
        y = np.stack([data["obs"][(analysis.name, d)][:, take] for d in days], axis=-1)
        est, se, p = fn(data["obs"][(analysis.name, 0.0)][:, take], y, arm2, days.index(analysis.day))
    elif analysis.kind == "change":
        y = data["obs"][(analysis.name, analysis.day)][:, take] - data["obs"][(analysis.name, 0.0)][:, take]
        est, se, p = fn(y, arm2)
    else:
        est, se, p = fn(data["obs"][(analysis.name, analysis.day)][:, take], arm2)
    bad = ~ok | ~np.isfinite(p)
    return np.where(bad, np.nan, est), np.where(bad, np.nan, se), np.where(bad, np.nan, p), ~ok


def trial_power(model, design: TrialDesign, analyses: Sequence[str], sample_sizes: Sequence[int], *, n_trials: int = 1000,
                params=None, draws: int | None = None, alpha: float = 0.05, target: float | None = None, seed: int = 0,
                grid_step: float = 1.0, chunk_trials: int | None = None, store=None, options: SolverOptions | None = None,
                workers: int = 0, scheduler: str | None = None, progress: Callable[[int, int], None] | None = None) -> PowerResult:
    """Power (fixed parameters) or assurance (posterior draws) of ``design`` over sample sizes.

    Parameters
    ----------
    model
        The model.
    design
        The :class:`~il2pkpd.design.TrialDesign`: arms (the placebo arm, regimen ``None``, is
        the control; without one, the first arm), allocation (the arms' ``n`` as a ratio),
        samples (the analyses' days must be sampled), follow-up, dropout and accrual.
    analyses
        Analysis texts (:mod:`~il2pkpd.design.analyses`), e.g. ``["ancova(tbr, 60)", "logrank(mi)"]``.
    sample_sizes
        Total sample sizes (all arms together) of the curve.
    n_trials
        Virtual trials per sample size (the same trials, nested).
    params
        ``None`` (typical values: power), a mapping of values or draws, or a fit: with
        several draws, assurance.
    draws
        Posterior draws used (evenly spaced; default all).
    alpha
        Two-sided significance level.
    target
        Power/assurance whose sample size is wanted (read off the curve).
    seed
        Seed of every random number (see the module docstring).
    grid_step
        Days between the points of the cumulative-hazard grid for event times.
    chunk_trials
        Trials per compiled block (default: up to 4,096 simulated subjects per block).
    store
        A :class:`~il2pkpd.design.sweep_run.ChunkStore` (an output folder): finished blocks are
        written there and skipped when the same run is repeated (resume).
    options
        Solver settings (default ``DEFAULT_SOLVER_OPTIONS["sweep"]``).
    workers, scheduler
        0 (default): blocks run in this process; N >= 1: on a Dask LocalCluster of N worker
        processes; or the address of a running Dask scheduler (as for sweeps). The results do
        not depend on it.
    progress
        Called with (blocks done, blocks in all).
    """
    import pandas as pd

    t_start = time.perf_counter()
    if not isinstance(design, TrialDesign):
        raise OptionError(f"`design` must be a TrialDesign, got {type(design).__name__}")
    if isinstance(analyses, str):
        analyses = [analyses]
    parsed = [parse_analysis(a, model) for a in analyses]
    if not parsed:
        raise OptionError("`analyses` is empty: give at least one, e.g. 'ancova(tbr, 60)'")
    sampled = {(s.observation, float(t)) for s in design.samples for t in s.times}
    for a in parsed:
        if a.is_event:
            if a.name not in design.events:
                raise OptionError(f"analysis {a.text}: design {design.name!r} does not follow event {a.name!r} (follows {list(design.events)})")
        else:
            missing = [d for d in a.days if (a.name, d) not in sampled]
            if missing:
                raise OptionError(f"analysis {a.text}: design {design.name!r} does not sample {a.name} on day(s) {missing}")
    sizes = sorted({int(n) for n in sample_sizes})
    if not sizes or any(int(n) != n or n < 4 for n in sample_sizes):
        raise OptionError(f"`sample_sizes` must be integers >= 4, got {list(sample_sizes)}")
    if not (isinstance(n_trials, (int, np.integer)) and n_trials >= 2):
        raise OptionError(f"`n_trials` must be an integer >= 2, got {n_trials!r}")
    if not 0 < alpha < 1:
        raise OptionError(f"`alpha` must be in (0, 1), got {alpha!r}")
    if target is not None and not 0 < target < 1:
        raise OptionError(f"`target` must be in (0, 1), got {target!r}")
    if not grid_step > 0:
        raise OptionError(f"`grid_step` must be > 0 days, got {grid_step!r}")
    if not (isinstance(workers, (int, np.integer)) and workers >= 0):
        raise OptionError(f"`workers` must be an integer >= 0, got {workers!r}")
    per_size = {n: arm_sizes(design, n) for n in sizes}
    n_max = np.max(np.array(list(per_size.values())), axis=0).tolist()
    control = next((i for i, a in enumerate(design.arms) if a.regimen is None), 0)
    comparisons = [i for i in range(len(design.arms)) if i != control]
    if not comparisons:
        raise OptionError(f"design {design.name!r} has one arm: a comparison needs a second")
    options = DEFAULT_SOLVER_OPTIONS["sweep"] if options is None else options
    pop, omegas = population_of(model, params, draws)
    names = model.parameter_names
    theta_pop = np.stack([pop[n] for n in names], axis=1)
    n_draws = theta_pop.shape[0]
    om = np.array([omegas.get(p.name, p.iiv.omega if p.iiv is not None else 0.0) for p in model.parameters])
    chunk = int(chunk_trials or max(1, min(n_trials, 4096 // sum(n_max))))
    blocks = [(a, min(a + chunk, n_trials)) for a in range(0, n_trials, chunk)]
    spec = PowerSpec(_design_dict(design), tuple(a.text for a in parsed), tuple(sizes), int(n_trials), float(alpha), int(seed), float(grid_step),
                     options.identity(), hashlib.sha256(json.dumps(theta_pop.tolist() + om.tolist()).encode()).hexdigest(), chunk)
    mhash = model_hash(model)
    if store is not None:
        store.claim(spec, spec.fingerprint(mhash), mhash, spec.population_hash)
    payload = {"key": spec.fingerprint(mhash), "model": dataclasses.replace(model), "design": design, "analyses": [a.text for a in parsed],
               "n_max": n_max, "theta_pop": theta_pop, "omegas": om, "seed": int(seed), "grid_step": float(grid_step), "options": options,
               "sizes": sizes, "per_size": per_size, "control": control, "comparisons": comparisons, "chunk": chunk}
    todo = [(a, b) for a, b in blocks if store is None or not store.has_chunk(0, a)]
    skipped = len(blocks) - len(todo)
    say = progress or (lambda done, total: None)
    say(skipped, len(blocks))
    if scheduler is None and workers == 0:
        tables = []
        for k, (a, b) in enumerate(todo, start=1):
            tables.append(_power_block(payload, a, b, store))
            say(skipped + k, len(blocks))
    else:
        from .sweep_run import run_on_dask

        tables = run_on_dask(_power_block, [(payload, a, b, store) for a, b in todo], workers, scheduler, lambda k: say(skipped + k, len(blocks)))
    trials_table = store.read().drop(columns="cell") if store is not None else pd.concat(tables, ignore_index=True).sort_values("trial", kind="stable")
    # a trial whose test has no answer (no event at all) did not show an effect: not significant;
    # a trial with a failed solve has no result at all and is left out (and counted)
    trials_table["significant"] = np.where(trials_table["solve_failed"], np.nan, (trials_table["p"] < alpha).astype(float))
    summary = _summarise(trials_table, "assurance" if n_draws > 1 else "power")
    result = PowerResult(summary, trials_table, settings={
        "trials": n_trials, "draws": n_draws, "seed": seed, "alpha": alpha, "arms": {n: per_size[n] for n in sizes},
        "control": design.arms[control].name, "grid_step_days": grid_step, "solver": options.solver, "rtol": options.rtol,
        "wall_time_s": time.perf_counter() - t_start})
    if target is not None:
        for key, g in summary.groupby(["analysis", "comparison"], sort=False):
            n, value = g["n_total"].to_numpy(), g["value"].to_numpy()
            result.sample_size[key], result.sample_size_method[key] = _crossing(n, value, target), _crossing_method(n, value, target)
    return result


#: simulators built in this process (a Dask worker builds its own once), by run fingerprint
_SIMULATORS: dict = {}


def _power_block(payload: dict, a: int, b: int, store):
    """Simulate and analyse trials ``a`` .. ``b - 1`` (in this process or a Dask worker): the
    table of every analysis, comparison and size, written to ``store`` when there is one."""
    import pandas as pd

    sim = _SIMULATORS.get(payload["key"])
    model, design = payload["model"], payload["design"]
    parsed = [parse_analysis(t, model) for t in payload["analyses"]]
    if sim is None:
        sim = _TrialSimulator(model, design, parsed, payload["n_max"], payload["theta_pop"], payload["omegas"], payload["seed"],
                              payload["grid_step"], payload["options"])
        _SIMULATORS.clear()
        _SIMULATORS[payload["key"]] = sim
    n_draws, control = payload["theta_pop"].shape[0], payload["control"]
    offsets = np.concatenate([[0], np.cumsum(payload["n_max"])])
    trials = np.arange(a, a + payload["chunk"])  # padded to one block shape (one compiled program); extra trials dropped
    data = sim.simulate(trials, trials % n_draws)
    keep = b - a
    rows = []
    for n in payload["sizes"]:
        n_arm = payload["per_size"][n]
        for k in payload["comparisons"]:
            take = np.concatenate([offsets[control] + np.arange(n_arm[control]), offsets[k] + np.arange(n_arm[k])])
            arm = np.concatenate([np.zeros(n_arm[control]), np.ones(n_arm[k])])
            for an in parsed:
                est, se, p, failed = _analyse(an, data, take, arm)
                rows.append(pd.DataFrame({"trial": trials[:keep], "draw": (trials % n_draws)[:keep], "n_total": n, "analysis": an.text,
                                          "comparison": f"{design.arms[k].name} vs {design.arms[control].name}", "estimate": est[:keep],
                                          "se": se[:keep], "p": p[:keep], "solve_failed": failed[:keep]}))
    table = pd.concat(rows, ignore_index=True)
    if store is not None:
        store.write_chunk(0, a, table)
        return None
    return table


def _summarise(trials, quantity: str):
    import pandas as pd

    rows = []
    for (an, comp, n), g in trials.groupby(["analysis", "comparison", "n_total"], sort=False):
        valid = ~g["solve_failed"].to_numpy(dtype=bool)
        k = int(valid.sum())
        value = float(np.mean(g.loc[valid, "significant"].astype(float))) if k else math.nan
        est = g.loc[valid & g["p"].notna(), "estimate"].to_numpy()
        est = est[~np.isnan(est)]  # a hazard ratio with no event in an arm is 0 or inf, kept; none at all: left out
        if an.startswith("logrank"):
            est = np.exp(est)
        # order statistics, not interpolation: a hazard ratio of 0 or inf has no midpoint with another
        q05, med, q95 = np.quantile(est, [0.05, 0.5, 0.95], method="inverted_cdf") if est.size else (math.nan,) * 3
        failed = int(g["solve_failed"].sum())
        rows.append({"analysis": an, "comparison": comp, "n_total": int(n), "quantity": quantity, "value": value,
                     "mc_se": math.sqrt(value * (1 - value) / k) if k else math.nan, "trials": k, "failed": failed,
                     "undefined": int((valid & g["p"].isna()).sum()),
                     "estimate": "hazard ratio" if an.startswith("logrank") else "difference", "estimate_median": med,
                     "estimate_q05": q05, "estimate_q95": q95})
    return pd.DataFrame(rows)


def _crossing(n: np.ndarray, value: np.ndarray, target: float) -> float | None:
    """Smallest N where the curve reaches ``target``: linear interpolation between the grid
    sizes around its first crossing (the first size if it is already there; None if never)."""
    order = np.argsort(n)
    n, value = n[order].astype(float), value[order]
    hit = np.flatnonzero(value >= target)
    if hit.size == 0:
        return None
    i = hit[0]
    if i == 0:
        return float(n[0])
    return float(n[i - 1] + (target - value[i - 1]) / (value[i] - value[i - 1]) * (n[i] - n[i - 1]))


def _crossing_method(n: np.ndarray, value: np.ndarray, target: float) -> str:
    """How :func:`_crossing` found its N: ``interpolated`` between two grid sizes, ``at or
    below the smallest size`` (the grid's first size already reaches the target: the true N
    may be smaller) or ``not reached`` within the grid."""
    order = np.argsort(n)
    hit = np.flatnonzero(value[order] >= target)
    if hit.size == 0:
        return "not reached"
    return "at or below the smallest size" if hit[0] == 0 else "interpolated"


def _design_dict(design: TrialDesign) -> dict:
    d = asdict(design)
    d["arms"] = [asdict(a) for a in design.arms]
    d["samples"] = [asdict(s) for s in design.samples]
    return json.loads(json.dumps(d, default=str))
