"""What a sweep computes: regimens x parameter points (cells), each over posterior (or prior)
draws x virtual subjects, and the metrics and targets reported.

A :class:`SweepDesign` is a plain value. It comes from Python, from command-line flags
(:func:`regimens_from_flags`) or from a TOML file (:func:`design_from_toml`), and has a
fingerprint (:meth:`SweepDesign.fingerprint`) that an output folder records so that a changed
design is never mixed with an old one.

TOML design file (every key optional except ``model`` and ``regimens``)::

    model = "ivory"
    horizon = 365          # model time units (days for ivory)
    draws = 200            # population draws per cell
    subjects = 0           # virtual subjects per draw (0: the typical subject, no IIV)
    fit = "ivory-published"  # draws from a stored fit; or  prior = true  for prior draws
    seed = 1
    metrics = ["cmax(treg_fold)", "change(tbr, 60)", "risk(mi, 365)"]
    targets = ["cmax(treg_fold) >= 1.75 & cmax(nk_fold) < 1.5"]

    [regimens]
    IVORY = "1.5 MIU sc qd x5 then 1.5 MIU sc qw x7"
    placebo = "none"

    [params]               # a full grid: every combination is a cell
    ec50 = [0.5, 1.0]

    [lhs]                  # or a Latin hypercube over ranges (n points)
    n = 8
    ec50 = [0.3, 3.0]
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataFormatError, OptionError
from ..solver_options import DEFAULT_SOLVER_OPTIONS

__all__ = ["SweepDesign", "Cell", "regimens_from_flags", "flag_regimen", "design_from_toml", "IVORY_DEFAULT_METRICS"]

IVORY_DEFAULT_METRICS = (
    "cmax(conc)", "auc(conc)", "cmax(treg_fold)", "tmax(treg_fold)", "above(treg_fold, 1.3)", "cmax(nk_fold)",
    "cmax(cd25_fold)", "change(tbr, 60)", "risk(mi, 365)", "hr(mi, 365)",
)
_UNTREATED = ("none", "placebo", "untreated", "")


@dataclass(frozen=True)
class Cell:
    """One design cell: a regimen and a parameter point."""

    index: int
    regimen_label: str
    regimen: str | None
    params: tuple[tuple[str, float], ...]

    @property
    def key(self) -> str:
        return f"cell={self.index:05d}"


@dataclass(frozen=True)
class SweepDesign:
    """A dose-finding sweep.

    Parameters
    ----------
    model
        Model name (``models/``) or path to a model file.
    regimens
        (label, regimen text) pairs; text ``None`` (or "none") is the untreated arm.
    metrics
        Metric texts (see :mod:`il2pkpd.design.metrics`).
    targets
        Decision targets, e.g. ``"cmax(treg_fold) >= 1.75 & cmax(nk_fold) < 1.5"``; the
        summary reports the probability of each.
    horizon
        Simulated time from the first dose, model time units.
    params
        Parameter grid: (name, values) pairs; every combination is a cell.
    lhs
        Latin hypercube: (name, low, high) triples, ``lhs_n`` points (seeded).
    fit
        Name or folder of a stored fit: population draws come from its posterior.
    prior
        Population draws from the model file's priors (when there is no fit).
    draws
        Population draws per cell (thinned evenly from the fit; 1 = typical values).
    subjects
        Virtual subjects per draw with inter-individual variability (0: the typical subject).
    seed
        Seed of the prior draws, Latin hypercube and random effects.
    grid_step, dense_step
        Output steps (model time units) after and during treatment (+ 14 days); dense
        points follow every dose (see :func:`~il2pkpd.design.metrics.output_grid`).
    solver, rtol, atol
        Solver settings (default ``DEFAULT_SOLVER_OPTIONS["sweep"]``: Rodas4, the stiff
        follow-up after the last dose). The default rtol 1e-4 (atol 1e-7, in the states' units) is looser
        than :func:`~il2pkpd.simulate`'s because decision metrics need 3 digits, not 8: on
        the IVORY sweep (21 regimens x 100 prior draws, one year) every metric stays within
        3.4e-4 of its spread over the sweep from its rtol 1e-8 value (except a time of peak,
        an argmax that jumps between near-equal peaks in under 1% of draws at any
        tolerance; ``benchmarks/bench_sweep_tolerance.py``), and the 20-regimen x 1,000-draw
        benchmark runs 1.7-1.8x faster than at rtol 1e-6. Lower it for other models if their
        metrics need more.
    """

    model: str
    regimens: tuple[tuple[str, str | None], ...]
    metrics: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    horizon: float = 365.0
    params: tuple[tuple[str, tuple[float, ...]], ...] = ()
    lhs: tuple[tuple[str, float, float], ...] = ()
    lhs_n: int = 0
    fit: str | None = None
    prior: bool = False
    draws: int = 1
    subjects: int = 0
    seed: int = 0
    grid_step: float = 7.0
    dense_step: float = 1.0
    solver: str = DEFAULT_SOLVER_OPTIONS["sweep"].solver
    rtol: float = DEFAULT_SOLVER_OPTIONS["sweep"].rtol
    atol: float = DEFAULT_SOLVER_OPTIONS["sweep"].atol
    _extra: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        regs = tuple((str(label), None if r is None or str(r).strip().lower() in _UNTREATED else str(r)) for label, r in self.regimens)
        object.__setattr__(self, "regimens", regs)
        object.__setattr__(self, "metrics", tuple(str(m) for m in self.metrics))
        object.__setattr__(self, "targets", tuple(str(t) for t in self.targets))
        object.__setattr__(self, "params", tuple((str(k), tuple(float(x) for x in v)) for k, v in self.params))
        object.__setattr__(self, "lhs", tuple((str(k), float(lo), float(hi)) for k, lo, hi in self.lhs))
        if not regs:
            raise OptionError("a sweep needs at least one regimen")
        labels = [label for label, _ in regs]
        if len(set(labels)) != len(labels):
            raise OptionError(f"regimen labels must be unique, got {labels}")
        for name, value, rule in (("draws", self.draws, self.draws >= 1), ("subjects", self.subjects, self.subjects >= 0),
                                  ("lhs_n", self.lhs_n, self.lhs_n >= 0), ("seed", self.seed, self.seed >= 0)):
            if int(value) != value or not rule:
                raise OptionError(f"`{name}` must be an integer {'>= 1' if name == 'draws' else '>= 0'}, got {value!r}")
        for name, value in (("horizon", self.horizon), ("grid_step", self.grid_step), ("dense_step", self.dense_step), ("rtol", self.rtol),
                            ("atol", self.atol)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise OptionError(f"`{name}` must be a positive number, got {value!r}")
        if self.rtol >= 1:
            raise OptionError(f"`rtol` must be in (0, 1), got {self.rtol!r}")
        if self.fit and self.prior:
            raise OptionError("give either `fit` (posterior draws) or `prior` (prior draws), not both")
        if self.draws > 1 and not (self.fit or self.prior):
            raise OptionError(f"`draws` = {self.draws} needs population uncertainty to draw from: give `fit` or `prior`")
        if self.lhs and self.lhs_n < 1:
            raise OptionError("`lhs` ranges need `lhs_n` >= 1 points")
        for name, lo, hi in self.lhs:
            if not lo < hi:
                raise OptionError(f"lhs range of {name!r} must have low < high, got [{lo:g}, {hi:g}]")
        for name, values in self.params:
            if not values:
                raise OptionError(f"parameter grid {name!r} is empty")
        clash = {k for k, _ in self.params} & {k for k, _, _ in self.lhs}
        if clash:
            raise OptionError(f"parameters {sorted(clash)} are in both the grid and the Latin hypercube")

    # ------------------------------------------------------------------ cells
    def parameter_points(self) -> list[tuple[tuple[str, float], ...]]:
        """Every parameter point: the grid's combinations x the Latin hypercube's points."""
        grid = [tuple(zip([k for k, _ in self.params], combo, strict=True)) for combo in itertools.product(*[v for _, v in self.params])]
        if not self.lhs:
            return grid
        rng = np.random.default_rng([self.seed, 7919])
        n, d = self.lhs_n, len(self.lhs)
        u = (np.argsort(rng.random((d, n)), axis=1).T + rng.random((n, d))) / n  # one point per stratum
        lhs_points = [tuple((name, float(lo + (hi - lo) * u[i, j])) for j, (name, lo, hi) in enumerate(self.lhs)) for i in range(n)]
        return [g + p for g in grid for p in lhs_points]

    def needs_untreated(self) -> bool:
        return any(m.replace(" ", "").startswith("hr(") for m in self.all_metric_texts())

    def all_metric_texts(self) -> list[str]:
        """Metrics asked for plus those the targets name (in order, without repeats)."""
        out = list(self.metrics)
        for t in self.targets:
            for part in t.split("&"):
                m = re.match(r"^\s*(.+?\))\s*(>=|<=|>|<)", part)
                if m and m.group(1).strip() not in out:
                    out.append(m.group(1).strip())
        return out

    def regimen_list(self) -> list[tuple[str, str | None]]:
        """The regimens, plus the untreated arm when a hazard ratio needs it."""
        regs = list(self.regimens)
        if self.needs_untreated() and not any(r is None for _, r in regs):
            regs.append(("untreated", None))
        return regs

    def cells(self) -> list[Cell]:
        points = self.parameter_points()
        out = []
        for reg_label, reg in self.regimen_list():
            for point in points:
                out.append(Cell(len(out), reg_label, reg, point))
        return out

    def manifest_cells(self) -> list[dict]:
        """The cells as an output folder's manifest lists them."""
        return [{"cell": c.index, "regimen": c.regimen_label, "regimen_text": c.regimen, "params": dict(c.params)} for c in self.cells()]

    # ------------------------------------------------------------------ identity
    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("_extra", None)
        d["regimens"] = [list(r) for r in self.regimens]
        d["params"] = [[k, list(v)] for k, v in self.params]
        d["lhs"] = [list(x) for x in self.lhs]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SweepDesign:
        d = dict(d)
        d["regimens"] = tuple(tuple(r) for r in d.get("regimens", ()))
        d["params"] = tuple((k, tuple(v)) for k, v in d.get("params", ()))
        d["lhs"] = tuple(tuple(x) for x in d.get("lhs", ()))
        for k in ("metrics", "targets"):
            d[k] = tuple(d.get(k, ()))
        return cls(**d)

    def fingerprint(self, model_hash: str, fit_hash: str, dose_offsets) -> str:
        """SHA-256 of the design, the model's content, the fit's posterior file and the output
        grid's times after each dose (days; :data:`~il2pkpd.design.metrics.DEFAULT_DOSE_OFFSETS`):
        metrics on another grid are other numbers, so a folder swept on one is not resumed on
        another."""
        identity = {"design": self.to_dict(), "model": model_hash, "fit": fit_hash,
                    "dose_offsets": [round(float(x), 12) for x in dose_offsets]}
        text = json.dumps(identity, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


def _interval_token(text: str) -> tuple[float, str]:
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(h|d|w)\s*", str(text))
    if not m or float(m.group(1)) <= 0:
        raise OptionError(f"interval {text!r} must be a positive number with a unit h, d or w (e.g. 1d, 3d, 7d, 12h)")
    return float(m.group(1)), m.group(2)


def regimens_from_flags(doses, unit: str, intervals, *, induction: int = 0, duration: str = "8w", route: str = "sc") -> list[tuple[str, str]]:
    """Regimens from the CLI's flags: every dose x interval.

    With ``induction`` k > 0, k daily doses come first (as in IVORY), then doses every
    ``interval`` for as long as the first dose + ``duration`` allows; without, doses every
    ``interval`` from time 0 while inside ``duration``. ``1.5 MIU, 7d, induction 5, 8w`` is
    IVORY's ``1.5 MIU sc qd x5 then 1.5 MIU sc q7d x7``.
    """
    if int(induction) != induction or induction < 0:
        raise OptionError(f"`--induction` must be a whole number of daily doses >= 0, got {induction!r}")
    out = []
    for dose in doses:
        if not (math.isfinite(dose) and dose > 0):
            raise OptionError(f"dose {dose!r} must be a positive number")
        for iv in intervals:
            value, u = _interval_token(iv)
            out.append((f"{dose:g} {unit} q{value:g}{u}", flag_regimen(f"{dose:g} {unit}", iv, induction=induction, duration=duration, route=route)))
    return out


def flag_regimen(amount: str, interval: str, *, induction: int = 0, duration: str = "8w", route: str = "sc") -> str:
    """One regimen of :func:`regimens_from_flags`: ``amount`` (text: ``"1.5 MIU"``, or a
    template's ``"{dose}"``) every ``interval`` after ``induction`` daily doses, for as long as
    the first dose + ``duration`` allows."""
    dur_value, dur_unit = _interval_token(duration)
    days = {"h": 1 / 24, "d": 1.0, "w": 7.0}
    total = dur_value * days[dur_unit]
    if int(induction) != induction or induction < 0:
        raise OptionError(f"`--induction` must be a whole number of daily doses >= 0, got {induction!r}")
    value, u = _interval_token(interval)
    step = value * days[u]
    freq = f"q{value:g}{'wk' if u == 'w' else u}"
    if induction > 0:
        last = induction - 1.0
        n = 0
        while last + (n + 1) * step < total - 1e-9:
            n += 1
        text = f"{amount} {route} qd x{int(induction)}"
        if n > 0:
            text += f" then {amount} {route} {freq} x{n}"
        return text
    n = max(1, math.ceil(total / step - 1e-9))
    return f"{amount} {route} {freq} x{n}"


def design_from_toml(path: str | Path, **overrides) -> SweepDesign:
    """Read a TOML design file (see the module docstring); keyword overrides win."""
    import tomllib

    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise DataFormatError(f"design file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise DataFormatError(f"design file {str(path)!r} is not valid TOML: {exc}") from None
    known = {"model", "horizon", "draws", "subjects", "fit", "prior", "seed", "metrics", "targets", "regimens", "params", "lhs",
             "grid_step", "dense_step", "solver", "rtol", "atol"}
    unknown = set(raw) - known
    if unknown:
        raise DataFormatError(f"design file {str(path)!r}: unknown keys {sorted(unknown)} (known: {sorted(known)})")
    if "model" not in raw or "regimens" not in raw:
        raise DataFormatError(f"design file {str(path)!r} needs `model` and a [regimens] table")
    regs = raw.pop("regimens")
    if not isinstance(regs, dict):
        raise DataFormatError(f"design file {str(path)!r}: [regimens] must be a table of label = \"regimen\"")
    raw["regimens"] = tuple(regs.items())
    raw["params"] = tuple((k, tuple(v if isinstance(v, list) else [v])) for k, v in raw.pop("params", {}).items())
    lhs = dict(raw.pop("lhs", {}))
    raw["lhs_n"] = int(lhs.pop("n", 0))
    raw["lhs"] = tuple((k, v[0], v[1]) for k, v in lhs.items())
    raw.update({k: v for k, v in overrides.items() if v is not None})
    return SweepDesign(**raw)
