"""NONMEM event records for one subject, validated.

A record is one row of a NONMEM-style dataset: TIME, EVID (0 observation, 1 dose,
2 other, 3 reset, 4 reset and dose), AMT, CMT, RATE (>0 fixed rate, -1 modelled rate,
-2 modelled duration), II, ADDL, SS (0, 1 reset to steady state, 2 add steady state).

Magnitudes: TIME, AMT, RATE, II and DV must be finite and at most :data:`MAX_MAGNITUDE`
(1e100) in magnitude, and ADDL at most :data:`MAX_ADDL`. No physical quantity in any unit
comes near 1e100, and below it float64 arithmetic on amounts, rates and observations
(products, squares in a likelihood) stays finite; each implied ADDL dose is an event the
solver steps through, and 100,000 (a daily dose for 270 years) keeps that bounded.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from ..errors import RegimenError

__all__ = ["Record", "Records", "records_from_columns", "MAX_MAGNITUDE", "MAX_ADDL"]

#: Largest magnitude of TIME, AMT, RATE, II, DV (and of dataset parameter/covariate values).
MAX_MAGNITUDE = 1e100
#: Most additional doses (ADDL) one record may imply.
MAX_ADDL = 100_000


@dataclass(frozen=True)
class Record:
    """One NONMEM event record (times in the model's time unit, AMT in the state's unit).

    ``row`` is the record's position in its dataset (0-based), used to order
    simultaneous events as NONMEM does and to name the row in messages. Observation
    records may carry ``dv``, a censoring flag ``cens`` (1 below / -1 above ``lloq``, M3),
    or an ``event`` name (time-to-event rows: ``dv`` 1 event, 0 censored).
    """

    time: float
    evid: int = 0
    amt: float = 0.0
    cmt: int = 0
    rate: float = 0.0
    ii: float = 0.0
    addl: int = 0
    ss: int = 0
    dvid: int = 0
    row: int = -1
    dv: float = float("nan")
    cens: int = 0
    lloq: float = float("nan")
    event: str = ""

    @property
    def is_dose(self) -> bool:
        return self.evid in (1, 4)


class Records(tuple):
    """A subject's records, in data order (a tuple of :class:`Record`)."""

    def __new__(cls, records: Iterable[Record], subject: object = None):
        obj = super().__new__(cls, tuple(records))
        obj.subject = subject
        return obj

    @property
    def doses(self) -> list[Record]:
        return [r for r in self if r.is_dose]

    @property
    def observations(self) -> list[Record]:
        return [r for r in self if r.evid == 0]

    def with_outputs(self, times: Sequence[float], *, pre_dose: bool = False) -> Records:
        """These records plus one EVID 2 output record at each of ``times`` (model time
        unit), merged in time order and renumbered.

        An output at a dose time sees the dose (NONMEM's order for a record after the dose);
        with ``pre_dose`` it comes before it, as a trial's pre-dose (trough) sample.
        """
        merged = [(r.time, int(pre_dose), r) for r in self] + [(float(t), 1 - int(pre_dose), Record(time=float(t), evid=2)) for t in times]
        merged.sort(key=lambda x: (x[0], x[1]))  # stable: records at one time keep data order
        return Records([replace(r, row=i) for i, (_, _, r) in enumerate(merged)], subject=self.subject)

    def validate(self, valid_cmts: Sequence[int] | None = None) -> Records:
        """Check NONMEM semantics; raise :class:`RegimenError` naming subject and row."""
        who = f"subject {self.subject!r} " if self.subject is not None else ""
        last = -np.inf
        for r in self:
            at = f"{who}row {r.row + 1 if r.row >= 0 else '?'}"
            # plain float comparisons: this runs once per record of every simulated subject
            # (NumPy scalar calls here made a 600-subject simulate() 2x slower)
            for name, v in (("TIME", r.time), ("AMT", r.amt), ("RATE", r.rate), ("II", r.ii)):
                if not -MAX_MAGNITUDE <= v <= MAX_MAGNITUDE:  # also false for NaN and inf
                    what = "finite" if not math.isfinite(v) else f"at most {MAX_MAGNITUDE:g} in magnitude"
                    raise RegimenError(f"`{name}` must be {what}, got {v!r} ({at})")
            if not (math.isnan(r.dv) or -MAX_MAGNITUDE <= r.dv <= MAX_MAGNITUDE):
                raise RegimenError(f"`DV` must be finite and at most {MAX_MAGNITUDE:g} in magnitude (or missing), got {r.dv!r} ({at})")
            if r.time < last:
                raise RegimenError(f"`TIME` must be non-decreasing within a subject; {at} has {r.time!r} after {last!r}")
            last = r.time
            if r.evid not in (0, 1, 2, 3, 4):
                raise RegimenError(f"`EVID` must be 0, 1, 2, 3 or 4, got {r.evid!r} ({at})")
            if r.ss not in (0, 1, 2):
                raise RegimenError(f"`SS` must be 0, 1 or 2, got {r.ss!r} ({at})")
            if r.addl < 0 or int(r.addl) != r.addl or r.addl > MAX_ADDL:
                raise RegimenError(f"`ADDL` must be an integer from 0 to {MAX_ADDL:,}, got {r.addl!r} ({at})")
            if r.ii < 0:
                raise RegimenError(f"`II` must be >= 0, got {r.ii!r} ({at})")
            if r.is_dose:
                if valid_cmts is not None and r.cmt not in valid_cmts:
                    raise RegimenError(f"`CMT` of a dose must be one of the dose-able compartments {list(valid_cmts)}, got {r.cmt!r} ({at})")
                if r.rate not in (-1.0, -2.0) and r.rate < 0:
                    raise RegimenError(f"`RATE` must be > 0, 0, -1 (modelled rate) or -2 (modelled duration), got {r.rate!r} ({at})")
                constant_infusion = r.ss == 1 and r.ii == 0 and r.rate > 0 and r.amt == 0
                if r.amt < 0 or (r.amt == 0 and not constant_infusion):
                    raise RegimenError(f"`AMT` of a dose must be > 0, got {r.amt!r} ({at})")
                if r.addl > 0 and r.ii <= 0:
                    raise RegimenError(f"`ADDL` = {r.addl} needs `II` > 0, got II = {r.ii!r} ({at})")
                if r.ss in (1, 2) and r.ii <= 0 and not constant_infusion:
                    raise RegimenError(f"`SS` = {r.ss} needs `II` > 0 (or AMT = 0 with RATE > 0 for a constant infusion), got II = {r.ii!r} ({at})")
        return self


def records_from_columns(columns: Mapping[str, np.ndarray], subject: object = None, rows: np.ndarray | None = None) -> Records:
    """Build :class:`Records` from column arrays (lower-case NONMEM names; ``event`` may
    hold event names)."""
    n = len(columns["time"])
    dv, cens, lloq = get_opt(columns, "dv", n, np.nan), get_opt(columns, "cens", n, 0.0), get_opt(columns, "lloq", n, np.nan)
    events = columns.get("event", [""] * n)
    get = lambda k, d: np.asarray(columns[k], dtype=float) if k in columns else np.full(n, d, dtype=float)  # noqa: E731
    time, evid, amt, cmt = get("time", 0), get("evid", 0), get("amt", 0), get("cmt", 0)
    rate, ii, addl, ss, dvid = get("rate", 0), get("ii", 0), get("addl", 0), get("ss", 0), get("dvid", 0)
    rows = np.arange(n) if rows is None else rows
    for name, v in (("EVID", evid), ("CMT", cmt), ("ADDL", addl), ("SS", ss), ("DVID", dvid), ("CENS", cens)):
        bad = ~np.isfinite(v) | (np.abs(np.nan_to_num(v)) > MAX_MAGNITUDE) | (v != np.round(v))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            who = f"subject {subject!r} " if subject is not None else ""
            raise RegimenError(f"`{name}` must be an integer, got {float(v[i])!r} ({who}row {int(rows[i]) + 1})")
    return Records(
        (
            Record(
                time=float(time[i]), evid=int(evid[i]), amt=float(amt[i]), cmt=int(cmt[i]), rate=float(rate[i]),
                ii=float(ii[i]), addl=int(addl[i]), ss=int(ss[i]), dvid=int(dvid[i]), row=int(rows[i]),
                dv=float(dv[i]), cens=int(cens[i]), lloq=float(lloq[i]), event=str(events[i]) if isinstance(events[i], str) else "",
            )
            for i in range(n)
        ),
        subject=subject,
    )


def get_opt(columns: Mapping[str, np.ndarray], key: str, n: int, default: float) -> np.ndarray:
    return np.asarray(columns[key], dtype=float) if key in columns else np.full(n, default, dtype=float)
