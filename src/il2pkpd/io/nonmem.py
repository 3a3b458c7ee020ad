"""Read NONMEM-style datasets (CSV).

Below-LLOQ observations stay in the table: ``CENS`` (or ``BLQ``) = 1 marks a value below the
limit of quantification, -1 above the upper limit (nlmixr2's convention), with the limit in
``LLOQ`` (or in ``DV``, as nlmixr2 does); the likelihood treats them with the M3 method.
Column names are case-insensitive (where two names differ only in case, the upper-case
one is the NONMEM column and the other is kept but not read). Required: ``ID`` and ``TIME``. Optional, with NONMEM
defaults: ``EVID`` (1 where AMT > 0, else 0), ``AMT``, ``CMT``, ``RATE``, ``II``, ``ADDL``,
``SS``, ``DV``, ``MDV``, ``DVID``. Columns named like a model parameter (name or NONMEM
label, e.g. ``KA``, ``CL``, ``F1``, ``ALAG1``) or covariate override the model's values for
that subject; they must be constant within a subject. Rows are numbered from 1 (the first
data row after the header) in every message.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..dosing import Records, records_from_columns
from ..errors import DataFormatError, RegimenError

log = logging.getLogger(__name__)

__all__ = ["NonmemData", "read_nonmem_csv", "from_dataframe", "write_nonmem_csv", "records_to_table"]

_EVENT_COLUMNS = ("id", "time", "evid", "amt", "cmt", "rate", "ii", "addl", "ss", "dv", "mdv", "dvid")
_NUMERIC_COLUMNS = ("time", "evid", "amt", "cmt", "rate", "ii", "addl", "ss", "dv", "mdv", "dvid", "cens", "blq", "lloq")
_INTEGER_COLUMNS = ("evid", "cmt", "addl", "ss", "dvid", "mdv", "cens", "blq")


@dataclass
class NonmemData:
    """A NONMEM-style dataset: the original table plus lower-cased column access.

    Attributes
    ----------
    table
        The table as read (original column names, every row kept).
    columns
        Lower-cased column name -> original name.
    source
        File name, for messages.
    """

    table: pd.DataFrame
    columns: dict[str, str]
    source: str = ""

    def col(self, name: str) -> pd.Series | None:
        orig = self.columns.get(name.lower())
        return None if orig is None else self.table[orig]

    @property
    def subject_ids(self) -> list:
        return list(pd.unique(self.table[self.columns["id"]]))

    def numeric(self, name: str, default: float | None = None) -> np.ndarray:
        """A column as floats; a non-numeric entry raises, naming its row."""
        s = self.col(name)
        if s is None:
            if default is None:
                raise DataFormatError(f"{self._where()}missing required column `{name.upper()}`")
            return np.full(len(self.table), default, dtype=float)
        values = pd.to_numeric(s, errors="coerce")
        blank = s.isna() | (s.astype(str).str.strip().isin(["", "."]))
        bad = values.isna() & ~blank
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataFormatError(
                f"{self._where()}column `{self.columns[name.lower()]}` must be numeric; row {i + 1} "
                f"(subject {self._id_at(i)!r}) has {s.iloc[i]!r}"
            )
        fill = 0.0 if default is None else default
        return values.fillna(fill).to_numpy(dtype=float)

    def _id_at(self, i: int):
        return _label(self.table[self.columns["id"]].iloc[i])

    def _where(self) -> str:
        return f"{self.source}: " if self.source else ""

    def problems(self, model=None, *, require_dv: bool = False) -> list[str]:
        """Every problem of the table (against ``model`` when given), each naming its row
        (1 = first data row), subject and value. Nothing is dropped or coerced.

        Checked: non-numeric values in NONMEM columns; EVID, CMT, ADDL, SS, DVID, MDV not
        integers; EVID outside 0-4; TIME decreasing within a subject; doses with AMT <= 0;
        RATE other than > 0, 0, -1, -2; observations (EVID 0, MDV != 1) without DV; CMT or
        DVID unknown to the model; duplicated records; SS or ADDL without II.
        ``require_dv``: observations without DV are a problem (fitting), not for prediction
        or simulation, where an empty DV is normal (NONMEM $SIMULATION datasets).
        """
        out: list[str] = []
        n = len(self.table)
        ids = self.table[self.columns["id"]].to_numpy()
        who = lambda i: f"row {i + 1} (subject {self._id_at(i)!r})"  # noqa: E731
        vals: dict[str, np.ndarray] = {}
        for name in _NUMERIC_COLUMNS:
            s = self.col(name)
            if s is None:
                continue
            values = pd.to_numeric(s, errors="coerce")
            blank = s.isna() | s.astype(str).str.strip().isin(["", "."])
            for i in np.flatnonzero((values.isna() & ~blank).to_numpy()):
                out.append(f"{who(i)}: column `{self.columns[name]}` must be numeric, got {s.iloc[i]!r}")
            vals[name] = values.to_numpy(dtype=float)
        for name in _INTEGER_COLUMNS:
            if name in vals:
                v = vals[name]
                for i in np.flatnonzero(np.isfinite(v) & (v != np.round(v))):
                    out.append(f"{who(i)}: column `{self.columns[name]}` must hold integers, got {float(v[i])!r}")
        get = lambda k, d: vals[k] if k in vals else np.full(n, d)  # noqa: E731
        time = get("time", np.nan)
        amt = np.nan_to_num(get("amt", 0.0))
        evid = get("evid", np.nan)
        evid = np.where(np.isnan(evid), np.where(amt > 0, 1.0, 0.0), evid)
        rate, ii, addl, ss = (np.nan_to_num(get(k, 0.0)) for k in ("rate", "ii", "addl", "ss"))
        for i in np.flatnonzero(~np.isin(evid, [0, 1, 2, 3, 4])):
            out.append(f"{who(i)}: `EVID` must be 0, 1, 2, 3 or 4, got {float(evid[i])!r}")
        if "time" in vals:
            for i in np.flatnonzero(self.table[self.columns["time"]].isna().to_numpy()):
                out.append(f"{who(i)}: `TIME` is missing")
        for i in range(1, n):
            if ids[i] == ids[i - 1] and time[i] < time[i - 1]:
                out.append(f"{who(i)}: `TIME` must be non-decreasing within a subject, got {float(time[i])!r} after {float(time[i - 1])!r}")
        dose = np.isin(evid, [1, 4])
        constant_inf = (ss == 1) & (ii == 0) & (rate > 0) & (amt == 0)
        for i in np.flatnonzero(dose & (amt <= 0) & ~constant_inf):
            out.append(f"{who(i)}: `AMT` of a dose must be > 0, got {float(amt[i])!r}")
        for i in np.flatnonzero(dose & (rate < 0) & ~np.isin(rate, [-1, -2])):
            out.append(f"{who(i)}: `RATE` must be > 0, 0, -1 or -2, got {float(rate[i])!r}")
        for i in np.flatnonzero(dose & np.isin(ss, [1, 2]) & (ii <= 0) & ~constant_inf):
            out.append(f"{who(i)}: `SS` = {int(ss[i])} needs `II` > 0, got II = {float(ii[i])!r}")
        for i in np.flatnonzero(dose & (addl > 0) & (ii <= 0)):
            out.append(f"{who(i)}: `ADDL` = {int(addl[i])} needs `II` > 0, got II = {float(ii[i])!r}")
        for flag in ("cens", "blq"):  # M3 censoring flags: 1 below LLOQ, -1 above ULOQ (nlmixr2)
            if flag in vals:
                f = np.nan_to_num(vals[flag])
                for i in np.flatnonzero(~np.isin(f, [-1, 0, 1])):
                    out.append(f"{who(i)}: `{self.columns[flag]}` must be -1, 0 or 1, got {float(f[i])!r}")
                if "lloq" in vals:
                    lloq = vals["lloq"]
                    for i in np.flatnonzero((f == 1) & ~(lloq > 0)):
                        out.append(f"{who(i)}: below-LLOQ record (`{self.columns[flag]}` = 1) needs `LLOQ` > 0, got {float(lloq[i])!r}")
        for i in np.flatnonzero(~np.isin(ss, [0, 1, 2])):
            out.append(f"{who(i)}: `SS` must be 0, 1 or 2, got {float(ss[i])!r}")
        if require_dv:
            mdv = get("mdv", 0.0)
            dv_col = self.col("dv")
            dv_missing = np.ones(n, dtype=bool) if dv_col is None else dv_col.isna().to_numpy()
            for i in np.flatnonzero((evid == 0) & (np.nan_to_num(mdv) != 1) & dv_missing):
                out.append(f"{who(i)}: observation (EVID 0, MDV 0) without `DV`")
        if model is not None:
            cmts = sorted(s.cmt for s in model.states)
            if "cmt" in vals:
                cmt = vals["cmt"]
                for i in np.flatnonzero(np.isfinite(cmt) & (cmt != 0) & (evid != 3) & ~np.isin(cmt, cmts)):
                    out.append(f"{who(i)}: `CMT` must be one of {cmts} for model {model.name!r}, got {int(cmt[i])}")
                dose_cmts = [s.cmt for s in model.states if s.dose]
                for i in np.flatnonzero(dose & np.isin(cmt, cmts) & ~np.isin(cmt, dose_cmts)):
                    out.append(f"{who(i)}: `CMT` {int(cmt[i])} does not accept doses in model {model.name!r} (dose-able: {dose_cmts})")
            if "dvid" in vals and model.observations:
                dvids = sorted(o.dvid for o in model.observations)
                dv = vals["dvid"]
                for i in np.flatnonzero((evid == 0) & np.isfinite(dv) & (dv != 0) & ~np.isin(dv, dvids)):
                    out.append(f"{who(i)}: `DVID` must be one of {dvids} for model {model.name!r}, got {float(dv[i]):g}")
        key_cols = [self.columns[c] for c in _EVENT_COLUMNS if c in self.columns]
        dup = self.table.duplicated(subset=key_cols, keep="first").to_numpy()
        if dup.any():
            first = {}
            for i, row in enumerate(map(tuple, self.table[key_cols].astype(str).to_numpy())):
                if dup[i]:
                    out.append(f"{who(i)}: duplicates row {first[row] + 1}")
                else:
                    first.setdefault(row, i)
        return out

    def validate(self, model=None, *, require_dv: bool = False) -> NonmemData:
        """Raise one :class:`DataFormatError` listing every problem (see :meth:`problems`)."""
        found = self.problems(model, require_dv=require_dv)
        if found:
            if len(found) == 1:
                raise DataFormatError(f"{self._where()}{found[0]}", found)
            shown = "\n  ".join(found[:50]) + (f"\n  ... and {len(found) - 50} more" if len(found) > 50 else "")
            raise DataFormatError(f"{self._where()}{len(found)} problems in the dataset:\n  {shown}", found)
        return self

    def subject_records(self, model) -> list[Records]:
        """The records of each subject, validated against ``model``; raises one
        :class:`DataFormatError` listing every problem, each with its row and subject."""
        self.validate(model)
        time = self.numeric("time")
        amt = self.numeric("amt", 0.0)
        evid = self.numeric("evid", np.nan) if "evid" in self.columns else np.where(amt > 0, 1.0, 0.0)
        if np.isnan(evid).any():
            evid = np.where(np.isnan(evid), np.where(amt > 0, 1.0, 0.0), evid)
        # NONMEM: an EVID 0 record with MDV 1 is not an observation (its DV is ignored)
        mdv = self.numeric("mdv", 0.0)
        evid = np.where((evid == 0) & (np.nan_to_num(mdv) == 1), 2.0, evid)
        dose_cmts = [s.cmt for s in model.states if s.dose]
        cmt_default = float(min(dose_cmts)) if dose_cmts else 1.0
        cmt = self.numeric("cmt", cmt_default)
        cols = {
            "time": time, "evid": evid, "amt": amt, "cmt": cmt, "rate": self.numeric("rate", 0.0),
            "ii": self.numeric("ii", 0.0), "addl": self.numeric("addl", 0.0), "ss": self.numeric("ss", 0.0),
            "dvid": self.numeric("dvid", 0.0),
            "dv": self.numeric("dv", np.nan) if "dv" in self.columns else np.full(len(self.table), np.nan),
        }
        flag = "cens" if "cens" in self.columns else ("blq" if "blq" in self.columns else None)
        if flag:
            cols["cens"] = self.numeric(flag, 0.0)
            # the limit: LLOQ when given, else DV (nlmixr2's convention for censored rows)
            cols["lloq"] = np.where(np.isfinite(self.numeric("lloq", np.nan)), self.numeric("lloq", np.nan), cols["dv"]) if "lloq" in self.columns else cols["dv"].copy()
        if "event" in self.columns:
            ev = self.col("event")
            cols["event"] = np.array([x if isinstance(x, str) else "" for x in ev], dtype=object)
        ids = self.table[self.columns["id"]].to_numpy()
        out = []
        for sid in self.subject_ids:
            idx = np.flatnonzero(ids == sid)
            recs = records_from_columns({k: v[idx] for k, v in cols.items()}, subject=_label(sid), rows=idx)
            try:
                recs.validate(dose_cmts)
            except RegimenError as exc:
                raise DataFormatError(f"{self._where()}{exc}") from None
            out.append(recs)
        return out

    def subject_values(self, model, per_row: dict | None = None) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Per-subject parameter and covariate values given as columns.

        Parameters used only in dose expressions (F, ALAG, R, D) may vary between records,
        as in NONMEM, where they are evaluated at each dose record, and so may covariates
        (time-varying; see :func:`il2pkpd.simulation.solve_records` for the rule): pass a
        dict as ``per_row`` to receive their values per row (name -> array over all rows).
        Without ``per_row``, any value changing within a subject is an error.

        Returns
        -------
        params, covariates
            Name -> array (one value per subject, the first given), only for columns present.
        """
        params: dict[str, np.ndarray] = {}
        covs: dict[str, np.ndarray] = {}
        dose_only = set(model.symbolic.dose_only_parameters)
        ids = self.table[self.columns["id"]].to_numpy()
        lookup: dict[str, tuple[str, str]] = {}
        for p in model.parameters:
            for key in {p.name.lower(), p.label.lower()} - {""}:
                lookup[key] = ("param", p.name)
        for c in model.covariates:
            for key in {c.name.lower(), c.label.lower()} - {""}:
                lookup[key] = ("cov", c.name)
        for low, orig in self.columns.items():
            if low in _EVENT_COLUMNS or low not in lookup:
                continue
            kind, name = lookup[low]
            values = self.numeric(low, np.nan)
            per_subject = []
            for sid in self.subject_ids:
                v = values[ids == sid]
                v_ok = v[~np.isnan(v)]
                if len(v_ok) == 0:
                    raise DataFormatError(f"{self._where()}column `{orig}` has no value for subject {_label(sid)!r}")
                if np.ptp(v_ok) > 0 and per_row is not None and kind == "param" and name in dose_only:
                    per_row[name] = values
                elif np.ptp(v_ok) > 0 and per_row is not None and kind == "cov":
                    if np.isnan(v).any():
                        i = int(np.flatnonzero(ids == sid)[np.flatnonzero(np.isnan(v))[0]])
                        raise DataFormatError(f"{self._where()}time-varying covariate `{orig}` is missing on row {i + 1} (subject {_label(sid)!r}); give it on every record")
                    per_row[name] = values
                elif np.ptp(v_ok) > 0:
                    i = int(np.flatnonzero(ids == sid)[np.flatnonzero(~np.isnan(v))[np.argmax(v_ok != v_ok[0])]])
                    raise DataFormatError(
                        f"{self._where()}column `{orig}` ({kind} `{name}`) must be constant within a subject "
                        f"(only covariates and dose parameters F/ALAG/R/D may change between records); "
                        f"subject {_label(sid)!r} row {i + 1} has {float(values[i])!r} after {float(v_ok[0])!r}"
                    )
                per_subject.append(v_ok[0])
            (params if kind == "param" else covs)[name] = np.array(per_subject)
        return params, covs


def _label(sid):
    """A subject id as read ('12') shown as the number NONMEM means (12)."""
    try:
        f = float(sid)
    except (TypeError, ValueError):
        return sid
    return int(f) if f.is_integer() else f


def from_dataframe(table: pd.DataFrame, source: str = "") -> NonmemData:
    """Wrap a DataFrame as :class:`NonmemData` (checks ID/TIME and duplicate names)."""
    columns: dict[str, str] = {}
    for c in table.columns:
        low = str(c).strip().lower()
        if low in columns:
            # two names differing only in case (e.g. a text `dvid` beside a numeric `DVID`):
            # the upper-case one is the NONMEM column; the other stays in the table, unused
            upper = [x for x in (columns[low], c) if str(x).strip() == low.upper()]
            if not upper:
                raise DataFormatError(f"{source + ': ' if source else ''}columns {columns[low]!r} and {c!r} differ only in case; rename one (the upper-case name is read as the NONMEM column)")
            log.info("columns %r and %r differ only in case; using %r", columns[low], c, upper[0])
            columns[low] = upper[0]
            continue
        columns[low] = c
    for req in ("id", "time"):
        if req not in columns:
            raise DataFormatError(f"{source + ': ' if source else ''}missing required column `{req.upper()}` (columns: {list(table.columns)})")
    if len(table) == 0:
        raise DataFormatError(f"{source + ': ' if source else ''}the dataset has no rows")
    ids = table[columns["id"]]
    if ids.isna().any():
        i = int(np.flatnonzero(ids.isna().to_numpy())[0])
        raise DataFormatError(f"{source + ': ' if source else ''}`ID` is missing on row {i + 1}")
    return NonmemData(table.reset_index(drop=True), columns, source)


def read_nonmem_csv(path: str | Path) -> NonmemData:
    """Read a NONMEM-style CSV file (every row kept, nothing coerced silently).

    Raises
    ------
    DataFormatError
        If the file cannot be read or lacks ``ID``/``TIME``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"`data` file {str(path)!r} does not exist")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise DataFormatError(f"{path}: cannot read as CSV: {exc}") from None
    table = table.replace({"": np.nan})
    return from_dataframe(table, str(path))


def write_nonmem_csv(data: NonmemData | pd.DataFrame, path: str | Path) -> Path:
    """Write a dataset as CSV, atomically (temporary file + rename), every row and column
    as held (text read by :func:`read_nonmem_csv` is written back unchanged; missing
    values as empty fields)."""
    from .output import atomic_write

    table = data.table if isinstance(data, NonmemData) else data
    return atomic_write(path, lambda p: table.to_csv(p, index=False, na_rep=""))


def records_to_table(subjects: list[Records]) -> pd.DataFrame:
    """A NONMEM-style table (ID, TIME, EVID, AMT, CMT, RATE, II, ADDL, SS, DVID, MDV) from
    each subject's records, in data order."""
    rows = []
    for i, recs in enumerate(subjects):
        sid = recs.subject if recs.subject is not None else i + 1
        for r in recs:
            rows.append({"ID": sid, "TIME": r.time, "EVID": r.evid, "AMT": r.amt, "CMT": r.cmt, "RATE": r.rate,
                         "II": r.ii, "ADDL": r.addl, "SS": r.ss, "DVID": r.dvid, "MDV": 0 if r.evid == 0 else 1})
    return pd.DataFrame(rows)
