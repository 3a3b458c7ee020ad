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

from dataclasses import dataclass

import numpy as np

from ..dosing import Records
from ..errors import RegimenError

__all__ = ["Kind", "SubjectEvents", "build_events", "stack_events", "GHOSTS"]

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


def stack_events(subjects: list[SubjectEvents]) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """Pad subjects to common lengths and stack them for ``vmap``.

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
