"""Virtual trials: simulate a study design on a model, with measurement error, events,
dropout and administrative censoring. Everything produced here is SYNTHETIC: a model's
prediction plus random noise, never trial data; the returned table says so in its attrs
and in a ``SIMULATED`` column.

The output is a NONMEM-style table (one row per record, data order within subject):

* dose rows: ``EVID 1``, ``AMT`` (in the dosed state's unit), ``CMT``;
* observation rows: ``EVID 0``, ``DVID`` (the model's observation), ``DV`` (with residual
  error), ``IPRED`` (the noise-free individual prediction, kept for method checks);
* one time-to-event row per subject and event: ``EVID 0``, ``DVID 0``, ``EVENT`` (name),
  ``DV`` 1 = event at ``TIME``, 0 = censored at ``TIME`` (``CENS_REASON``: dropout or end of
  follow-up);
* subject columns ``ARM`` and ``ARMN``; the model's covariates; ``SIMULATED = 1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..dosing import parse_regimen
from ..errors import ShapeError
from ..simulation import add_residual_error, check_model, simulate

__all__ = ["Arm", "Sample", "TrialDesign", "simulate_trial"]


@dataclass(frozen=True)
class Arm:
    """A trial arm: a regimen in the regimen language (``None`` = placebo) and its size."""

    name: str
    regimen: str | None
    n: int

    def __post_init__(self):
        if int(self.n) != self.n or self.n < 1:
            raise ShapeError(f"`n` of arm {self.name!r} must be an integer >= 1, got {self.n!r}")
        if self.regimen is not None:
            parse_regimen(self.regimen)  # raises RegimenError quoting the text


@dataclass(frozen=True)
class Sample:
    """Which observation (a name from the model's ``[observations]``) is measured when
    (times in days from the first dose)."""

    observation: str
    times: tuple[float, ...]


@dataclass(frozen=True)
class TrialDesign:
    """A study design.

    Attributes
    ----------
    name
        Design name.
    arms
        The arms (placebo: regimen ``None``).
    samples
        What is measured and when (days from the first dose).
    followup
        Follow-up for events, days from the first dose (0: no events simulated).
    events
        Event names (the model's ``[events]``) followed up.
    dropout_per_year
        Exponential dropout hazard (per year): a subject's dropout time ends its event
        follow-up (censored) and its visits (those after it are missed).
    accrual
        Days over which subjects enter (uniformly). The trial then stops ``followup`` days
        after the first entry, so a subject entering on day ``u`` is followed for
        ``followup - u`` days (at least ``followup - accrual``). 0: every subject is followed
        for ``followup`` days.
    randomisation
        ``"blocked"`` (arms in shuffled blocks, as usual in trials) or ``"sequential"``.
    source
        BRIEF source ids the design follows.
    notes
        Free text (what was inferred).
    """

    name: str
    arms: tuple[Arm, ...]
    samples: tuple[Sample, ...]
    followup: float = 0.0
    events: tuple[str, ...] = ()
    dropout_per_year: float = 0.0
    accrual: float = 0.0
    randomisation: str = "blocked"
    source: str = ""
    notes: str = ""
    covariates: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if not self.arms:
            raise ShapeError(f"design {self.name!r} needs at least one arm")
        if self.randomisation not in ("blocked", "sequential"):
            raise ShapeError(f"`randomisation` must be 'blocked' or 'sequential', got {self.randomisation!r}")
        if self.followup < 0 or self.dropout_per_year < 0 or self.accrual < 0:
            raise ShapeError(f"`followup`, `dropout_per_year` and `accrual` must be >= 0, got {self.followup!r}, {self.dropout_per_year!r} and {self.accrual!r}")
        if self.accrual and not self.accrual < self.followup:
            raise ShapeError(f"design {self.name!r}: `accrual` ({self.accrual!r} days) must be shorter than `followup` ({self.followup!r} days), "
                             "the study's length from the first entry")
        if self.events and not self.followup > 0:
            raise ShapeError(f"design {self.name!r} follows events {self.events} but `followup` is {self.followup!r}")

    @property
    def n(self) -> int:
        return sum(a.n for a in self.arms)


def _allocation(design: TrialDesign, rng: np.random.Generator) -> list[int]:
    """Arm index of each subject, in enrolment order."""
    labels = [i for i, a in enumerate(design.arms) for _ in range(a.n)]
    if design.randomisation == "sequential":
        return labels
    # permuted blocks: each block holds arms in proportion to their sizes (smallest arm = 1)
    sizes = np.array([a.n for a in design.arms])
    unit = np.gcd.reduce(sizes)
    block = [i for i, a in enumerate(design.arms) for _ in range(a.n // unit)]
    out: list[int] = []
    for _ in range(unit):
        b = list(block)
        rng.shuffle(b)
        out.extend(b)
    return out


def simulate_trial(design: TrialDesign, model, params: dict | None = None, seed: int = 0, *, grid_step: float = 1.0):
    """Simulate a virtual trial; returns a NONMEM-style :class:`pandas.DataFrame` (SYNTHETIC).

    Parameters
    ----------
    design
        The :class:`TrialDesign`.
    model
        The :class:`~il2pkpd.model.Model` (must declare the designs' observations and
        events); read a model file first with :func:`il2pkpd.load_model`.
    params
        Population parameter overrides (as in :func:`il2pkpd.simulate`).
    seed
        Seed; the same seed gives the same trial.
    grid_step
        Spacing (days) of the survival grid used to draw event times (linear
        interpolation of the cumulative hazard between grid points).

    Returns
    -------
    pandas.DataFrame
        The records (see the module docstring); ``attrs`` hold ``synthetic``, the design,
        model, seed and il2pkpd version.
    """
    import pandas as pd

    from .. import __version__

    model = check_model(model)
    obs_by_name = {o.name: o for o in model.observations}
    for s in design.samples:
        if s.observation not in obs_by_name:
            raise ShapeError(f"design {design.name!r} samples {s.observation!r}, which is not an observation of model {model.name!r}: {sorted(obs_by_name)}")
    for e in design.events:
        if e not in {ev.name for ev in model.events}:
            raise ShapeError(f"design {design.name!r} follows event {e!r}, which model {model.name!r} does not declare")
    days_to_model = _days_to(model)
    rng = np.random.default_rng([seed, 7])
    allocation = _allocation(design, rng)
    sample_times = sorted({t for s in design.samples for t in s.times})
    grid = np.arange(0.0, design.followup + grid_step / 2, grid_step) if design.events else np.array([])
    times_days = np.unique(np.concatenate([np.asarray(sample_times, dtype=float), grid]))

    rows: list[dict] = []
    subject = 0
    for arm_index, arm in enumerate(design.arms):
        ids = [i + 1 for i, a in enumerate(allocation) if a == arm_index]
        ds = simulate(model, arm.regimen, times_days * days_to_model, params=params, n_subjects=arm.n,
                      seed=int(rng.integers(2**31)), covariates=design.covariates or None)
        ds = add_residual_error(model, ds, seed=int(rng.integers(2**31)))
        doses = parse_regimen(arm.regimen).to_records(model) if arm.regimen else []
        for k, sid in enumerate(ids):
            subject += 1
            base = {"ID": sid, "ARM": arm.name, "ARMN": arm_index, "SIMULATED": 1}
            for c in model.covariates:
                base[c.label or c.name.upper()] = float(ds[c.name].values[k])
            recs = []
            # one dropout time per subject: it ends the visits after it and the event follow-up
            t_drop = rng.exponential(365.25 / design.dropout_per_year) if design.dropout_per_year > 0 else np.inf
            for d in doses:
                recs.append((d.time, 0, {**base, "TIME": d.time, "EVID": 1, "AMT": d.amt, "CMT": d.cmt, "RATE": d.rate, "DVID": 0, "MDV": 1}))
            for s in design.samples:
                o = obs_by_name[s.observation]
                for t in s.times:
                    if t > 0 and t >= t_drop:
                        continue  # a visit after dropout is missed
                    j = int(np.searchsorted(times_days, t))
                    recs.append((t * days_to_model, -1, {
                        **base, "TIME": t * days_to_model, "EVID": 0, "AMT": 0.0, "CMT": 0, "RATE": 0.0, "DVID": o.dvid, "MDV": 0,
                        "DV": float(ds[f"{o.name}_obs"].values[k, j]), "IPRED": float(ds[o.output].values[k, j]),
                    }))
            for e in design.events:
                h = ds[f"cumhaz_{e}"].values[k]
                t_event = _draw_event_time(times_days, h, rng)
                # entry on day u ~ U(0, accrual): the trial stops followup days after the first entry
                t_admin = design.followup - rng.uniform(0.0, design.accrual) if design.accrual > 0 else design.followup
                t_end = min(t_event, t_drop, t_admin)
                reason = "event" if t_end == t_event else ("dropout" if t_end == t_drop else "end of follow-up")
                recs.append((t_end * days_to_model, 1, {
                    **base, "TIME": t_end * days_to_model, "EVID": 0, "AMT": 0.0, "CMT": 0, "RATE": 0.0, "DVID": 0, "MDV": 0,
                    "EVENT": e, "DV": 1.0 if reason == "event" else 0.0, "CENS_REASON": "" if reason == "event" else reason,
                }))
            # observations before doses at the same time (pre-dose samples), events last
            recs.sort(key=lambda r: (r[0], r[1]))
            rows.extend(r[2] for r in recs)
    table = pd.DataFrame(rows).sort_values(["ID", "TIME"], kind="stable").reset_index(drop=True)
    for col in ("DV", "IPRED", "EVENT", "CENS_REASON"):
        if col not in table:
            table[col] = np.nan
    table.attrs.update({
        "synthetic": "SIMULATED virtual trial: model predictions plus random noise, not trial data",
        "design": design.name, "model": model.name, "seed": seed, "il2pkpd_version": __version__,
        "design_source": design.source,
    })
    return table


def _draw_event_time(t: np.ndarray, cumhaz: np.ndarray, rng: np.random.Generator) -> float:
    """Inverse-transform draw: the time at which H(t) reaches -log(U) (inf if not by the end)."""
    target = -np.log(rng.uniform())
    h = np.maximum.accumulate(cumhaz - cumhaz[0])
    if target > h[-1]:
        return np.inf
    i = int(np.searchsorted(h, target))
    if i == 0:
        return float(t[0])
    frac = (target - h[i - 1]) / (h[i] - h[i - 1])
    return float(t[i - 1] + frac * (t[i] - t[i - 1]))


def _days_to(model) -> float:
    from ..units import conversion_factor

    return conversion_factor("day", model.time_unit)
