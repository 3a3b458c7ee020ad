"""Regimen optimisation under uncertainty: the regimen (in the regimen language) that
maximises or minimises a probability or expectation across population draws and virtual
subjects, subject to constraints of the same kind.

Every discrete combination of the space (lists, counts) is enumerated; over the continuous
variables (dose amounts, intervals, start times) the problem is solved by SciPy's SLSQP with
exact gradients from JAX through the ODE solver (the dose events are affine in those
variables: :class:`~il2pkpd.design.regimen_space.RegimenSpace`), starting from the best
point of a coarse scan. Probabilities are smoothed for the gradient (logistic of width
``temperature``, :mod:`~il2pkpd.design.criteria`), in a short continuation (4x, 2x, 1x the
temperature); the result reports the exact values at the optimum, whether each
constraint holds there, and which are active.

The virtual subjects are the same at every regimen (common random numbers from
``(seed, draw, subject)``, as in sweeps), so the objective is a deterministic function of the
regimen and regimens are compared on the same patients.

Metrics are computed on an output grid (every ``grid_step`` over the horizon, plus
``dose_offsets`` after every dose, which move with the doses): maxima are refined by a
parabola and areas are trapezoids, approximations whose error the grid controls
(:mod:`~il2pkpd.design.metrics`); give a finer grid where the answer must be finer.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import Il2pkpdWarning, OptionError
from ..likelihood import individual_theta
from ..solve import BatchSolver, EventBatch, Kind
from ..solver_options import DEFAULT_SOLVER_OPTIONS, SolverOptions
from ..units import conversion_factor
from .criteria import Constraint, Objective, parse_constraint, parse_objective
from .metrics import DEFAULT_DOSE_OFFSETS, MetricEvaluator
from .regimen_space import RegimenSpace, Structure, format_number
from .sweep import random_effects
from .sweep_run import select_draws

__all__ = ["optimize_regimen", "RegimenOptimum", "population_of"]

#: continuation of the smoothing temperature: multiples of the final one
TEMPERATURE_STEPS = (4.0, 2.0, 1.0)
#: rounds of tightening a smoothed constraint that the exact one misses at the optimum
REPAIRS = 3


@dataclass
class RegimenOptimum:
    """The result of :func:`optimize_regimen`.

    Attributes
    ----------
    regimen
        The optimal regimen in the regimen language (``None`` if no combination was feasible).
    values
        The optimal value of each space variable (text as pasted into the template).
    objective
        ``{"text", "value", "smoothed"}``: the exact objective at the optimum and the
        smoothed one the optimiser saw.
    constraints
        One dict per constraint: ``text``, ``value`` (exact), ``smoothed``, ``bound``,
        ``satisfied`` (the exact value within ten times the solver's ``rtol`` of its bound,
        relative: the values' own accuracy) and ``active`` (within ``1e-3`` relative of its bound, or
        its smoothed slack within 1e-6).
    quantities
        One dict per quantity (objective first): ``mean`` over every row, ``q05``/``median``/
        ``q95`` of the per-draw values (parameter uncertainty; the per-draw value is the
        probability or mean over that draw's virtual subjects) and ``mc_se``, the Monte Carlo
        standard error of the mean (between draws when there are several, else between
        subjects).
    feasible
        Whether every constraint holds exactly at the optimum.
    candidates
        The best point of every discrete combination (its regimen, exact objective,
        feasibility and the optimiser's record: iterations, evaluations, message, and
        ``converged``: whether SLSQP reported success at the final temperature; a warning
        says so when the chosen combination's did not).
    failed
        Solves that failed at the optimum (their rows are left out of the quantities).
    settings
        Draws, subjects, seed, temperature, grid, solver, wall time.
    """

    regimen: str | None
    values: dict
    objective: dict
    constraints: list[dict]
    quantities: list[dict]
    feasible: bool
    candidates: list[dict]
    failed: int
    settings: dict = field(default_factory=dict)

    def summary(self) -> str:
        """A few lines for people: the regimen, the objective and each constraint."""
        if self.regimen is None:
            return "no feasible regimen found"
        lines = [f"regimen: {self.regimen}", f"objective {self.objective['text']}: {self.objective['value']:.6g} (smoothed {self.objective['smoothed']:.6g})"]
        for c in self.constraints:
            state = "holds" if c["satisfied"] else "VIOLATED"
            lines.append(f"constraint {c['text']}: {c['value']:.6g} ({state}{', active' if c['active'] else ''})")
        return "\n".join(lines)


def population_of(model, params, draws: int | None):
    """Population draws ``{name: (D,)}`` and IIV SDs ``{name: omega}`` from ``params``:
    ``None`` (the model file's typical values, one draw), a mapping of names to values or
    draws (``omega_<name>`` keys give IIV SDs: the median of their draws), or anything with
    ``population_draws()`` (a fit). ``draws`` picks that many, evenly spaced."""
    if params is None:
        return {p.name: np.array([p.value]) for p in model.parameters}, {}
    if hasattr(params, "population_draws"):
        params = params.population_draws()
    if not isinstance(params, Mapping):
        raise OptionError(f"`params` must be None, a fit, or a mapping of parameter names to values or draws, got {type(params).__name__}")
    names = set(model.parameter_names)
    unknown = sorted(k for k in params if k not in names and not (k.startswith("omega_") and k[6:] in names))
    if unknown:
        raise OptionError(f"`params` names {unknown}, which are not parameters (or omega_<parameter>) of model {model.name!r}")
    arrays = {k: np.atleast_1d(np.asarray(v, dtype=float)).ravel() for k, v in params.items()}
    lengths = {len(v) for v in arrays.values() if len(v) > 1}
    if len(lengths) > 1:
        raise OptionError(f"`params` draws have different lengths {sorted(lengths)}; give one length (or scalars)")
    n = lengths.pop() if lengths else 1
    full = {k: (np.full(n, v[0]) if len(v) == 1 else v) for k, v in arrays.items()}
    pop = select_draws(full, draws if draws is not None else n, model, source="`params`")
    for p in model.parameters:
        pop.draws.setdefault(p.name, np.full(len(next(iter(pop.draws.values()))) if pop.draws else 1, p.value))
    return pop.draws, pop.omegas


class _Problem:
    """Compiled evaluation of the quantities at every combination (one program for all)."""

    def __init__(self, model, space: RegimenSpace, structures: list[Structure], quantities, metrics, horizon, grid, offsets,
                 theta, options):
        self.model, self.space, self.quantities = model, space, quantities
        self.horizon, self.rtol = float(horizon), float(options.rtol)
        m = len(space.continuous)
        fixed = np.unique(np.concatenate([grid, [self.horizon]]))
        combos = []
        for s in structures:
            dose = s.arrays["kind"] != Kind.NOOP
            rel_t = s.arrays["t0"][dose][:, None] + offsets[None, :]
            rel_d = np.repeat(s.d["t0"][dose], len(offsets), axis=0)  # a dose-relative time moves with its dose
            out_t = np.concatenate([fixed, rel_t.ravel()])
            out_d = np.concatenate([np.zeros((len(fixed), m)), rel_d])
            combos.append((s, out_t, out_d))
        n_out = max(len(c[1]) for c in combos)
        n_dose = max(len(c[0].arrays["kind"]) for c in combos)
        n_ev = n_dose + n_out
        fields = list(structures[0].arrays)
        arrays = {f: np.zeros((len(combos), n_ev), dtype=structures[0].arrays[f].dtype) for f in fields}
        arrays["out_index"][:] = -1
        arrays["row"][:] = -1
        d = {f: np.zeros((len(combos), n_ev, m)) for f in ("t0", "amt", "rate")}
        out_t = np.full((len(combos), n_out), self.horizon)
        out_d = np.zeros((len(combos), n_out, m))
        for c, (s, t, td) in enumerate(combos):
            k = len(s.arrays["kind"])
            for f in fields:
                arrays[f][c, :k] = s.arrays[f]
            arrays["seq"][c, k:n_dose] = np.inf  # padding, sorted last
            for f in d:
                d[f][c, :k] = s.d[f]
            out_t[c, : len(t)], out_d[c, : len(t)] = t, td
            # outputs: after any dose at the same time (post-dose values), in grid order
            sl = slice(n_dose, n_dose + n_out)
            arrays["kind"][c, sl] = Kind.OUTPUT
            arrays["out_index"][c, sl] = np.arange(n_out)
            arrays["seq"][c, sl] = 1e6 + np.arange(n_out)
        self.arrays = {f: jnp.asarray(v) for f, v in arrays.items()}
        self.d = {f: jnp.asarray(v) for f, v in d.items()}
        self.out_t, self.out_d, self.n_dose = jnp.asarray(out_t), jnp.asarray(out_d), n_dose
        self.x0 = jnp.asarray(np.stack([s.x0 for s in structures]) if m else np.zeros((len(structures), 0)))
        self.total = jnp.asarray([s.total for s in structures])
        self.dtotal = jnp.asarray(np.stack([s.dtotal for s in structures]) if m else np.zeros((len(structures), 0)))
        self.lower, self.width = jnp.asarray(space.lower), jnp.asarray(space.upper - space.lower)
        self.theta = jnp.asarray(theta)
        self.cov = jnp.broadcast_to(jnp.asarray([c.value for c in model.covariates], dtype=float), (theta.shape[0], len(model.covariates)))
        evaluator = MetricEvaluator(metrics, model)
        self.metric_names = evaluator.names

        def metrics_of(t, outs, brk):  # the moving grid is sorted here (ties keep grid order)
            idx = jnp.argsort(t, stable=True)
            return evaluator(t[idx], outs[idx], brk[idx])

        # the trajectories and their breaks leave the solver and the metrics are taken after
        # it, in one vmapped call. (Inside the subject loop, ``reduce``, their derivative with
        # respect to output times was NaN until the loop adjoint's bit-exact replay check was
        # relaxed; both placements now give the same Jacobian, equal to central differences on
        # the IVORY model, 2026-12-04, and the same speed.)
        self._metrics = jax.vmap(metrics_of)
        self._solve = BatchSolver(model.compiled, options, reduce=lambda t, outs, brk: (outs, brk))
        self._exact = jax.jit(self._values_fn)
        self._smooth = jax.jit(lambda z, c, temp: self._values_fn(z, c, temp)[0])
        self._jacobian = jax.jit(self._jacobian_fn)

    def _jacobian_fn(self, z, combo, temperature):
        """(Q, m) derivatives of the smoothed quantities: one forward solve and one reverse
        pass per quantity, in sequence. ``jax.jacrev`` gives the same Jacobian but batches the
        reverse passes with ``vmap``, which on CPU runs the subjects' ``lax.map`` in lockstep:
        3.4x slower on the IVORY model (1.61 s against 0.47 s for 2 quantities x 8 subjects,
        2026-12-04; it gave NaN before the loop adjoint's replay check was relaxed)."""
        values, pullback = jax.vjp(lambda zz: self._values_fn(zz, combo, temperature)[0], z)
        return jnp.stack([pullback(jnp.zeros_like(values).at[k].set(1.0))[0] for k in range(values.shape[0])])

    def x_of(self, z):
        return self.lower + z * self.width

    def _values_fn(self, z, combo, temperature=None):
        """Quantities (Q,) at scaled continuous values ``z`` (m,) of combination ``combo``;
        with ``temperature=None`` also the per-row values (R, Q) and the failed solves."""
        x = self.x_of(z)
        dx = x - self.x0[combo]
        ev = {f: a[combo] for f, a in self.arrays.items()}
        for f in ("t0", "amt", "rate"):
            ev[f] = ev[f] + self.d[f][combo] @ dx
        out_t = jnp.minimum(self.out_t[combo] + self.out_d[combo] @ dx, self.horizon)  # offsets past the horizon sit on it
        ev["t0"] = ev["t0"].at[self.n_dose:].set(out_t)
        b = self.theta.shape[0]
        events = EventBatch(ev, jnp.zeros(0, dtype=jnp.int32), out_t, jnp.zeros(()), jnp.asarray(out_t.shape[0]))
        (outs, brk), status, _ = self._solve(events.broadcast_to(b), self.theta, self.cov)
        values = self._metrics(jnp.broadcast_to(out_t, (b,) + out_t.shape), outs, brk)
        ok = status == 0
        cols = {name: jnp.where(ok, values[:, j], 0.0) for j, name in enumerate(self.metric_names)}
        total = self.total[combo] + self.dtotal[combo] @ dx
        n_ok = jnp.maximum(jnp.sum(ok), 1)
        rows, agg = [], []
        for q in self.quantities:
            if q.kind == "total_dose":
                r = jnp.broadcast_to(total, (b,))
                agg.append(total)
            else:
                r = q.rows(cols, temperature)
                agg.append(jnp.sum(jnp.where(ok, r, 0.0)) / n_ok)
            rows.append(r)
        return jnp.stack(agg), jnp.stack(rows, axis=1), jnp.sum(~ok)


def optimize_regimen(model, params=None, *, objective: str, constraints: Sequence[str] = (), space, regimen: str | None = None,
                     duration: str = "8w", horizon: float, draws: int | None = None, subjects: int = 0, seed: int = 0, temperature: float = 0.05,
                     grid_step: float | None = None, dose_offsets: Sequence[float] | None = None, scan: int = 5,
                     max_iter: int = 100, options: SolverOptions | None = None) -> RegimenOptimum:
    """Find the regimen that optimises ``objective`` subject to ``constraints``.

    Parameters
    ----------
    model
        The model (:func:`il2pkpd.load_model`).
    params
        Population parameters: ``None`` (the model file's typical values), a mapping of
        names to values or draws (``omega_<name>`` for IIV SDs), or a fit (its posterior or
        SIR draws).
    objective
        ``"maximise QUANTITY"`` or ``"minimise QUANTITY"`` (:mod:`~il2pkpd.design.criteria`).
    constraints
        ``"QUANTITY <= NUMBER"`` or ``">= NUMBER"`` each.
    space
        The variables: ``"dose=0.1..3; interval=1d,2d,3d,7d; induction=0..7"`` or a dict
        (:func:`~il2pkpd.design.regimen_space.parse_space`).
    regimen
        The regimen template with ``{name}`` placeholders, e.g.
        ``"{dose} MIU sc qd x{induction} then {dose} MIU sc q{interval} x7"``. Without one,
        the sweep's flag regimen over the space's ``dose`` (with its unit: ``dose=0.1..3 MIU``),
        ``interval`` (a list; default 7d), ``induction`` (daily doses first; default 0) and
        ``route`` (default sc): maintenance doses for as long as ``duration`` allows.
    duration
        Treatment duration of the default regimen (``8w``, ``56d``; only without ``regimen``).
    horizon
        End of the simulated period (model time units); metric times must lie within it.
    draws
        Population draws used (evenly spaced over ``params``' draws; default all of them).
    subjects
        Virtual subjects per draw (0: the typical subject of each draw, no IIV).
    seed
        Seed of the virtual subjects' random effects.
    temperature
        Relative width of the logistic that smooths each probability's indicator (> 0).
    grid_step
        Spacing of the fixed output grid (model time units; default one day).
    dose_offsets
        Output times after every dose (days; default :data:`~il2pkpd.design.metrics.DEFAULT_DOSE_OFFSETS`: every 10 min to 3 h, then 4-24 h):
        concentration peaks are sampled there.
    scan
        Points per continuous variable of the starting scan (capped at 64 points in all).
    max_iter
        SLSQP iterations per temperature step.
    options
        Solver settings (default ``DEFAULT_SOLVER_OPTIONS["optimize"]``: Rodas4, whose loop
        carries exact gradients with respect to dose amounts and times).

    Returns
    -------
    RegimenOptimum
    """
    t_start = time.perf_counter()
    if not (isinstance(temperature, (int, float)) and temperature > 0 and math.isfinite(temperature)):
        raise OptionError(f"`temperature` must be a positive number, got {temperature!r}")
    if not (isinstance(horizon, (int, float)) and horizon > 0 and math.isfinite(horizon)):
        raise OptionError(f"`horizon` must be a positive time (model units), got {horizon!r}")
    for name, v, lo in (("subjects", subjects, 0), ("scan", scan, 1), ("max_iter", max_iter, 1)):
        if not (isinstance(v, (int, np.integer)) and v >= lo):
            raise OptionError(f"`{name}` must be an integer >= {lo}, got {v!r}")
    if isinstance(constraints, str):
        constraints = [constraints]
    options = DEFAULT_SOLVER_OPTIONS["optimize"] if options is None else options
    obj: Objective = parse_objective(objective, model)
    cons: list[Constraint] = [parse_constraint(c, model) for c in constraints]
    quantities = [obj.quantity] + [c.quantity for c in cons]
    metrics = list({m.name: m for q in quantities for m in q.metrics()}.values())
    for mt in metrics:
        if any(t > horizon for t in mt.times()):
            raise OptionError(f"metric {mt.name} asks for time {max(mt.times()):g}, beyond the horizon {horizon:g} {model.time_unit}")
    if not metrics:
        raise OptionError("the objective and constraints read no metric of the model (only total_dose): nothing to simulate")
    space_ = RegimenSpace(regimen, space) if regimen is not None else _default_space(space, duration)
    structures = [space_.structure(model, choice) for choice in space_.combinations()]
    if any(q.kind == "total_dose" for q in quantities) and any(s.total_unit is None for s in structures):
        raise OptionError(f"total_dose needs every block of {regimen!r} in one dose unit")
    day = conversion_factor("day", model.time_unit)
    step = day if grid_step is None else float(grid_step)
    if not step > 0:
        raise OptionError(f"`grid_step` must be > 0, got {grid_step!r}")
    offsets = np.asarray(DEFAULT_DOSE_OFFSETS if dose_offsets is None else dose_offsets, dtype=float) * day
    extra = sorted({t for mt in metrics for t in mt.times()})
    grid = np.unique(np.concatenate([np.arange(0.0, horizon, step), extra]))

    pop, omegas = population_of(model, params, draws)
    names = model.parameter_names
    n_draws = len(pop[names[0]])
    theta_pop = np.stack([pop[n] for n in names], axis=1)
    om = np.array([omegas.get(p.name, p.iiv.omega if p.iiv is not None else 0.0) for p in model.parameters])
    n_sub = max(1, subjects)
    z = random_effects(seed, np.arange(n_draws), subjects, len(names))
    if subjects == 0:
        z = np.zeros_like(z)
    theta = np.asarray(jax.vmap(lambda tp, zz: individual_theta(model, tp, jnp.asarray(om), zz))(jnp.asarray(theta_pop), jnp.asarray(z)))
    theta = theta.reshape(n_draws * n_sub, len(names))

    problem = _Problem(model, space_, structures, quantities, metrics, horizon, grid, offsets, theta, options)
    m = len(space_.continuous)
    candidates = []
    for ci, s in enumerate(structures):
        record = {"choice": s.choice, "iterations": 0, "evaluations": 0, "messages": [], "converged": True}
        z_best = np.full(m, 0.5)
        if m:
            z_best = _scan(problem, ci, obj, cons, scan, seed)
            f_scale = max(abs(float(problem._smooth(jnp.asarray(z_best), ci, temperature)[0])), 1e-12)
            shift = np.zeros(len(cons))
            for mult in TEMPERATURE_STEPS:
                z_best = _slsqp(problem, ci, obj, cons, z_best, temperature * mult, shift, f_scale, max_iter, record)
            # the smoothed optimum can miss an exact (step-function) constraint: tighten the
            # smoothed bound by the miss and solve again (at most REPAIRS times)
            for _ in range(REPAIRS):
                exact = np.asarray(problem._exact(jnp.asarray(z_best), ci)[0])
                miss = np.array([max(0.0, -c.slack(exact[k + 1])) for k, c in enumerate(cons)])
                miss[miss <= _feasibility_tol(cons, options.rtol)] = 0.0
                if not (miss > 0).any():
                    break
                shift = shift + 1.5 * miss + 1e-6 * np.maximum(np.abs([c.bound for c in cons]), 1.0) * (miss > 0)
                record["messages"].append(f"exact constraint missed by {miss.tolist()}: smoothed bounds tightened by {shift.tolist()}")
                z_best = _slsqp(problem, ci, obj, cons, z_best, temperature, shift, f_scale, max_iter, record)
        exact, rows, failed = (np.asarray(a) for a in problem._exact(jnp.asarray(z_best), ci))
        smooth = np.asarray(problem._smooth(jnp.asarray(z_best), ci, temperature))
        x = np.asarray(problem.x_of(jnp.asarray(z_best)))
        feasible = bool(np.all([c.slack(exact[k + 1]) for k, c in enumerate(cons)] >= -_feasibility_tol(cons, options.rtol))) if cons else True
        candidates.append({"choice": s.choice, "x": x, "regimen": space_.text(s.choice, x), "objective": float(exact[0]),
                           "smoothed": float(smooth[0]), "feasible": bool(feasible), "exact": exact, "smooth": smooth, "rows": rows,
                           "failed": int(failed), "record": record})
    feasible = [c for c in candidates if c["feasible"]]
    best = max(feasible, key=lambda c: obj.sense * c["objective"]) if feasible else None
    settings = {"draws": n_draws, "subjects": subjects, "seed": seed, "temperature": temperature, "temperature_steps": TEMPERATURE_STEPS,
                "grid_step": step, "dose_offsets_days": list(offsets / day), "horizon": horizon, "solver": options.solver,
                "rtol": options.rtol, "atol": options.atol, "combinations": len(structures), "continuous": list(space_.continuous),
                "wall_time_s": time.perf_counter() - t_start}
    cand_out = [{"regimen": c["regimen"], **c["choice"], **{n: float(v) for n, v in zip(space_.continuous, c["x"])},
                 "objective": c["objective"], "feasible": c["feasible"], "failed": c["failed"], "converged": c["record"]["converged"],
                 "iterations": c["record"]["iterations"], "evaluations": c["record"]["evaluations"],
                 "message": "; ".join(c["record"]["messages"]) or "no continuous variable: evaluated"} for c in candidates]
    if best is None:
        warnings.warn("no combination of the space satisfies every constraint at its optimum; see `candidates`", Il2pkpdWarning, stacklevel=2)
        return RegimenOptimum(None, {}, {"text": obj.text, "value": math.nan, "smoothed": math.nan}, [], [], False, cand_out, 0, settings)
    if best["failed"]:
        warnings.warn(f"{best['failed']} of {theta.shape[0]} solves failed at the optimum; their rows are left out of every quantity",
                      Il2pkpdWarning, stacklevel=2)
    if not best["record"]["converged"]:
        warnings.warn(f"the search of the best combination ({best['regimen']}) did not converge at the final temperature "
                      f"({best['record']['messages'][-1]}): the regimen is the best point found, not a verified optimum "
                      "(a smoothed probability that is flat at 0 or 1 gives no gradient: try a larger temperature, more draws or "
                      "another starting scan)", Il2pkpdWarning, stacklevel=2)
    values = dict(best["choice"]) | {n: format_number(v) + space_.variables[n].unit for n, v in zip(space_.continuous, best["x"])}
    con_out = []
    for k, c in enumerate(cons):
        v, sv = float(best["exact"][k + 1]), float(best["smooth"][k + 1])
        active = abs(v - c.bound) <= 1e-3 * max(abs(c.bound), 1e-12) or abs(c.slack(sv)) <= 1e-6 * max(abs(c.bound), 1.0)
        con_out.append({"text": c.text, "value": v, "smoothed": sv, "bound": c.bound, "satisfied": bool(c.slack(v) >= -_feasibility_tol([c], options.rtol)[0]),
                        "active": bool(active)})
    quantities_out = _uncertainty(quantities, best["rows"], n_draws, n_sub, best["exact"])
    return RegimenOptimum(best["regimen"], values, {"text": obj.text, "value": float(best["exact"][0]), "smoothed": float(best["smooth"][0])},
                          con_out, quantities_out, True, cand_out, best["failed"], settings)


def _feasibility_tol(cons: list[Constraint], rtol: float) -> np.ndarray:
    """How far past its bound a constraint may be and still hold: ten times the solver's
    relative tolerance (the accuracy of the values themselves)."""
    return 10.0 * rtol * np.maximum(np.abs([c.bound for c in cons]), 1.0)


_DEFAULT_VARIABLES = ("dose", "interval", "induction", "route")


def _default_space(space, duration: str) -> RegimenSpace:
    """The regimen space without a template: :func:`~il2pkpd.design.sweep_design.flag_regimen`
    per combination of interval, induction and route, the dose continuous or a list."""
    from .regimen_space import Range, parse_space
    from .sweep_design import flag_regimen

    variables = parse_space(space)
    extra = sorted(set(variables) - set(_DEFAULT_VARIABLES))
    if "dose" not in variables or extra:
        raise OptionError(f"without a regimen template the space takes {list(_DEFAULT_VARIABLES)} (dose required), got {sorted(variables)}; "
                          "give `regimen` (--regimen) with {name} placeholders for others")
    if isinstance(variables.get("interval"), Range):
        raise OptionError("without a regimen template `interval` must be a list (e.g. 1d,3d,7d): the number of doses that fit the duration "
                          "changes with it; give `regimen` with a fixed count to optimise it continuously")
    flag_regimen("{dose}", "7d", duration=duration)  # checks the duration now

    def template(choice: dict) -> str:
        return flag_regimen("{dose}", choice.get("interval", "7d"), induction=int(choice.get("induction", 0)), duration=duration,
                            route=choice.get("route", "sc"))

    template.description = f"dose every interval after the induction's daily doses, for {duration}"
    return RegimenSpace(template, variables, counts=("induction",), consumes=tuple(n for n in ("interval", "induction", "route") if n in variables))


def _slsqp(problem: _Problem, ci: int, obj: Objective, cons: list[Constraint], z0: np.ndarray, temp: float, shift: np.ndarray,
           f_scale: float, max_iter: int, record: dict) -> np.ndarray:
    """SLSQP over the scaled continuous variables of combination ``ci`` at one temperature,
    each constraint's bound tightened by ``shift`` (in its own units); returns the new point
    (the start if SLSQP produced no finite point) and adds to ``record``."""
    from scipy.optimize import minimize

    cache: dict = {}

    def values(zz):
        key = tuple(np.asarray(zz, dtype=float).tolist())
        if key not in cache:
            cache.clear()
            cache[key] = np.asarray(problem._smooth(jnp.asarray(zz), ci, temp))
            record["evaluations"] += 1
        return cache[key]

    def jac(zz):
        return np.asarray(problem._jacobian(jnp.asarray(zz), ci, temp))

    scale = [max(abs(c.bound), 1e-12) for c in cons]
    sign = [1.0 if c.op == ">=" else -1.0 for c in cons]
    slsqp_cons = [{"type": "ineq",
                   "fun": (lambda zz, k=k, c=c: (c.slack(values(zz)[k + 1]) - shift[k]) / scale[k]),
                   "jac": (lambda zz, k=k: sign[k] * jac(zz)[k + 1] / scale[k])} for k, c in enumerate(cons)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = minimize(lambda zz: -obj.sense * values(zz)[0] / f_scale, z0, jac=lambda zz: -obj.sense * jac(zz)[0] / f_scale,
                       method="SLSQP", bounds=[(0.0, 1.0)] * len(z0), constraints=slsqp_cons, options={"maxiter": max_iter, "ftol": max(1e-10, problem.rtol)})  # no finer than the values
    record["iterations"] += int(res.nit)
    record["messages"].append(f"T={temp:g}: {res.message}")
    record["converged"] = bool(res.success)  # the last (coldest) step decides
    return np.clip(res.x, 0.0, 1.0) if np.all(np.isfinite(res.x)) else z0


def _scan(problem: _Problem, ci: int, obj: Objective, cons: list[Constraint], per_dim: int, seed: int) -> np.ndarray:
    """The best of a coarse grid of scaled points (at most 64): feasible first (exact
    constraints), then the best objective; among infeasible points, the least violation."""
    m = problem.x0.shape[1]
    axes = [np.linspace(0.0, 1.0, per_dim)] * m
    pts = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, m)
    if len(pts) > 64:
        pts = pts[np.random.default_rng(seed).choice(len(pts), 64, replace=False)]
    best, best_key = pts[0], None
    for p in pts:
        exact = np.asarray(problem._exact(jnp.asarray(p), ci)[0])
        violation = sum(max(0.0, -c.slack(exact[k + 1])) / max(abs(c.bound), 1e-12) for k, c in enumerate(cons))
        key = (violation, -obj.sense * exact[0]) if np.all(np.isfinite(exact)) else (math.inf, math.inf)
        if best_key is None or key < best_key:
            best, best_key = p, key
    return best


def _uncertainty(quantities, rows: np.ndarray, n_draws: int, n_sub: int, exact: np.ndarray) -> list[dict]:
    """Each quantity's mean, per-draw quantiles and Monte Carlo SE (see RegimenOptimum)."""
    out = []
    per_draw = rows.reshape(n_draws, n_sub, -1).mean(axis=1)  # (D, Q)
    for k, q in enumerate(quantities):
        d = per_draw[:, k]
        if n_draws > 1:
            se = float(np.std(d, ddof=1) / math.sqrt(n_draws))
        elif n_sub > 1:
            se = float(np.std(rows[:, k], ddof=1) / math.sqrt(n_sub))
        else:
            se = 0.0
        q05, q50, q95 = np.quantile(d, [0.05, 0.5, 0.95])
        out.append({"quantity": q.text, "mean": float(exact[k]), "q05": float(q05), "median": float(q50), "q95": float(q95), "mc_se": se})
    return out
