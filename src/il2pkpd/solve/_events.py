"""Turn NONMEM records into the static event arrays the solvers consume.

The structure of a subject's events (which kinds, in which compartments, from which
record) is fixed by the data and built here with NumPy; everything that depends on
parameters (lag times, bioavailability, modelled rates and durations, hence the actual
event times and their order) is computed inside the solver, so it stays differentiable.

Event kinds
-----------
NOOP (padding), OUTPUT (a record whose prediction is wanted), BOLUS, INF_START, INF_END,
RESET (EVID 3 and 4), SS (reset to / add a steady state; SS = 1, 2), GHOST_END (the end of
an infusion given before an SS record that is still running when the record starts).

Ordering of simultaneous events follows NONMEM: a record's own events come in data order
(a dose row before an observation row at the same time is seen by the observation, an
observation row before it is not); doses from ADDL or shifted by a lag time come before
any observation at their time; infusion ends come first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ..dosing import Records
from ..errors import RegimenError

__all__ = ["Kind", "SubjectEvents", "EventBatch", "build_events", "GHOSTS"]

#: Number of overlapping infusions an SS=1/2 infusion record may have running when it
#: starts (II < duration); more is reported as a status, not silently dropped.
GHOSTS = 4


class Kind:
    NOOP = 0
    OUTPUT = 1
    BOLUS = 2
    INF_START = 3
    INF_END = 4
    RESET = 5
    SS = 6
    GHOST_END = 7


FIELDS = ("kind", "state", "t0", "amt", "rate", "ii", "ss", "seq", "epoch", "ghost_k", "out_index", "row")
_INT_FIELDS = {"kind", "state", "ss", "epoch", "ghost_k", "out_index", "row"}


@dataclass
class SubjectEvents:
    """Event arrays of one subject (all the same length) plus its output times."""

    arrays: dict[str, np.ndarray]
    out_times: np.ndarray
    t_start: float
    subject: object = None

    @property
    def n_events(self) -> int:
        return len(self.arrays["kind"])

    @property
    def n_ss(self) -> int:
        return int(np.sum(self.arrays["kind"] == Kind.SS))


def build_events(records: Records, model, output_rows: str = "all") -> SubjectEvents:
    """Build the event arrays of one subject.

    Parameters
    ----------
    records
        The subject's records in data order (validated here).
    model
        The model (for the CMT -> state mapping).
    output_rows
        ``"all"``: every record gets an output (NONMEM's table of predictions);
        ``"obs"``: only EVID 0 and 2 records.
    """
    dose_cmts = [s.cmt for s in model.states if s.dose]
    records.validate(dose_cmts)
    rows: list[dict] = []
    epoch = 0
    out_times: list[float] = []

    def add(**kw):
        ev = {"kind": Kind.NOOP, "state": 0, "t0": 0.0, "amt": 0.0, "rate": 0.0, "ii": 0.0, "ss": 0, "seq": 0.0, "epoch": epoch, "ghost_k": 0, "out_index": -1, "row": rec.row}
        ev.update(kw)
        rows.append(ev)

    for rec in records:
        r = float(rec.row if rec.row >= 0 else len(rows))
        if rec.is_dose:
            state = model.state_for_cmt(rec.cmt)
            if not model.states[state].dose:
                raise RegimenError(f"`CMT` {rec.cmt} (state `{model.states[state].name}`) does not accept doses (subject {records.subject!r}, row {rec.row + 1})")
            if rec.evid == 4 and rec.ss != 1:
                epoch += 1
                add(kind=Kind.RESET, t0=rec.time, seq=r - 0.5)
            if rec.ss == 1:
                epoch += 1
            if rec.ss in (1, 2):
                add(kind=Kind.SS, state=state, t0=rec.time, amt=rec.amt, rate=rec.rate, ii=rec.ii, ss=rec.ss, seq=r - 0.25)
                if rec.rate != 0 and rec.ii > 0:
                    for k in range(1, GHOSTS + 1):
                        add(kind=Kind.GHOST_END, state=state, t0=rec.time, amt=rec.amt, rate=rec.rate, ii=rec.ii, ghost_k=k, seq=-2.0)
            if rec.amt > 0:
                for k in range(rec.addl + 1):
                    t0 = rec.time + k * rec.ii
                    seq = r if k == 0 else -1.0
                    if rec.rate == 0:
                        add(kind=Kind.BOLUS, state=state, t0=t0, amt=rec.amt, seq=seq)
                    else:
                        add(kind=Kind.INF_START, state=state, t0=t0, amt=rec.amt, rate=rec.rate, seq=seq)
                        add(kind=Kind.INF_END, state=state, t0=t0, amt=rec.amt, rate=rec.rate, seq=-2.0)
        elif rec.evid == 3:
            epoch += 1
            add(kind=Kind.RESET, t0=rec.time, seq=r - 0.5)
        if output_rows == "all" or rec.evid in (0, 2):
            add(kind=Kind.OUTPUT, t0=rec.time, seq=r + 0.25, out_index=len(out_times))
            out_times.append(rec.time)
    if not rows:
        raise RegimenError(f"subject {records.subject!r} has no records")
    arrays = {f: np.array([ev[f] for ev in rows], dtype=np.int32 if f in _INT_FIELDS else np.float64) for f in FIELDS}
    t_start = float(min(rec.time for rec in records))
    if model.events:
        # A cumulative hazard counts from the subject's clock origin, TIME 0, not from the
        # first record: a subject whose data start later (one event/censoring row) is still
        # at risk from 0. Records before 0 start the solve earlier; likelihoods then count
        # the hazard from 0 as a delayed entry (likelihood._population).
        t_start = min(t_start, 0.0)
    return SubjectEvents(arrays, np.array(out_times, dtype=np.float64), t_start, records.subject)


def _stack(subjects: Sequence[SubjectEvents]) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """Pad subjects to common lengths and stack them (:meth:`EventBatch.stack`).

    Returns
    -------
    arrays
        Field -> array of shape (n_subjects, n_events), NOOP padding at the end.
    ss_positions
        (n_subjects, n_ss) indices of SS events (-1 where padded).
    out_times
        (n_subjects, n_out) output times (padded with the last time).
    t_start
        (n_subjects,) start times.
    """
    n_ev = max(s.n_events for s in subjects)
    n_out = max(1, max(len(s.out_times) for s in subjects))
    n_ss = max(s.n_ss for s in subjects)
    if all(s is subjects[0] for s in subjects):  # one shared event structure: broadcast
        s0 = subjects[0]
        arrays = {f: np.ascontiguousarray(np.broadcast_to(s0.arrays[f], (len(subjects), s0.n_events))) for f in FIELDS}
        ss_pos = np.broadcast_to(np.flatnonzero(s0.arrays["kind"] == Kind.SS).astype(np.int32), (len(subjects), s0.n_ss)).copy()
        k = len(s0.out_times)
        out = s0.out_times if k else np.array([s0.t_start])
        return arrays, ss_pos, np.broadcast_to(out, (len(subjects), max(1, k))).copy(), np.full(len(subjects), s0.t_start)
    arrays = {}
    for f in FIELDS:
        dtype = np.int32 if f in _INT_FIELDS else np.float64
        fill = -1 if f in ("out_index", "row") else 0
        a = np.full((len(subjects), n_ev), fill, dtype=dtype)
        for i, s in enumerate(subjects):
            a[i, : s.n_events] = s.arrays[f]
        arrays[f] = a
    # padded events: NOOP at the subject's start time (sorted to the end by seq)
    for i, s in enumerate(subjects):
        arrays["t0"][i, s.n_events :] = s.t_start
        arrays["seq"][i, s.n_events :] = np.inf
    ss_pos = np.full((len(subjects), n_ss), -1, dtype=np.int32)
    for i, s in enumerate(subjects):
        idx = np.flatnonzero(s.arrays["kind"] == Kind.SS)
        ss_pos[i, : len(idx)] = idx
    out_times = np.zeros((len(subjects), n_out))
    for i, s in enumerate(subjects):
        k = len(s.out_times)
        out_times[i, :k] = s.out_times
        out_times[i, k:] = s.out_times[-1] if k else s.t_start
    t_start = np.array([s.t_start for s in subjects])
    return arrays, ss_pos, out_times, t_start


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class EventBatch:
    """The events of a batch of subjects, stacked and padded: what every solve consumes.

    Built once in NumPy (:meth:`stack`) from each subject's :func:`build_events`; a JAX
    pytree, so it passes through ``jit``, ``vmap`` and ``lax.map`` as it is. Every leaf has
    the subjects on its first axis (``B``).

    Attributes
    ----------
    events
        Event field -> (B, E) array (:data:`FIELDS`; NOOP padding at the end). Optional
        fields: ``theta`` (B, E, P), the individual parameters at each event, for dose
        parameters (F, ALAG, R, D) that change between dose records; ``rec_time`` (B, R) and
        ``rec_cov`` (B, R, C), time-varying covariates by record.
    ss_pos
        (B, S) indices of the steady-state events (-1 where padded).
    out_times
        (B, O) output times, model time unit (padded with the subject's last time).
    t_start
        (B,) start of each subject's integration, model time unit.
    n_times
        (B,) valid (unpadded) output times per subject.
    """

    events: dict
    ss_pos: np.ndarray
    out_times: np.ndarray
    t_start: np.ndarray
    n_times: np.ndarray

    @classmethod
    def stack(cls, subjects: Sequence[SubjectEvents], *, record_covariates: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
              n_covariates: int = 0, event_theta: Sequence[np.ndarray] | None = None, theta: np.ndarray | None = None) -> EventBatch:
        """Stack subjects' events (NumPy).

        Parameters
        ----------
        subjects
            One :class:`SubjectEvents` per subject.
        record_covariates, n_covariates
            Optional per-subject (record times, (records, ``n_covariates``) covariate values):
            time-varying covariates, applied by NONMEM's "next observation carried backward"
            (:func:`~il2pkpd.solve.record_covariates`).
        event_theta, theta
            Optional per-subject (events, P) parameters at each event, and the subjects'
            (B, P) parameters, which fill the padding.
        """
        events, ss_pos, out_times, t_start = _stack(subjects)
        n = len(subjects)
        if record_covariates is not None:
            n_rec = max(len(t) for t, _ in record_covariates)
            rt, rc = np.empty((n, n_rec)), np.empty((n, n_rec, n_covariates))
            for i, (t, c) in enumerate(record_covariates):  # padding repeats the last record (its value stays)
                rt[i, : len(t)], rt[i, len(t):] = t, t[-1]
                rc[i, : len(t)], rc[i, len(t):] = c, c[-1]
            events["rec_time"], events["rec_cov"] = rt, rc
        if event_theta is not None:
            theta = np.asarray(theta, dtype=float)
            padded = np.empty((n, events["kind"].shape[1], theta.shape[1]))
            for i, et in enumerate(event_theta):
                padded[i, : len(et)] = et
                padded[i, len(et):] = theta[i]
            events["theta"] = padded
        return cls(events, ss_pos, out_times, t_start, np.array([len(s.out_times) for s in subjects], dtype=np.int32))

    def __len__(self) -> int:
        return int(self.t_start.shape[0])

    def map(self, fn: Callable) -> EventBatch:
        """A batch with ``fn`` applied to every array (NumPy or JAX)."""
        return jax.tree.map(fn, self)

    def take(self, index) -> EventBatch:
        """Subjects ``index`` (an int drops the subject axis: see :meth:`broadcast_to`)."""
        return self.map(lambda a: a[index])

    def repeat(self, n: int) -> EventBatch:
        """Each subject ``n`` times in a row (subject-major); NumPy arrays stay NumPy."""
        return self.map(lambda a: _xp(a).repeat(a, n, axis=0))

    def tile(self, n: int) -> EventBatch:
        """The whole batch ``n`` times over; NumPy arrays stay NumPy."""
        return self.map(lambda a: _xp(a).tile(a, (n,) + (1,) * (a.ndim - 1)))

    def broadcast_to(self, n: int) -> EventBatch:
        """``n`` copies of a single subject's events (a batch without its subject axis, as
        :meth:`take` with an int gives), without copying."""
        return self.map(lambda a: jnp.broadcast_to(jnp.asarray(a), (n,) + jnp.shape(a)))

    def to_jax(self) -> EventBatch:
        return self.map(jnp.asarray)


def _xp(a):
    """The array module of ``a``: NumPy for a batch still being built, JAX inside a trace."""
    return np if isinstance(a, np.ndarray) else jnp
