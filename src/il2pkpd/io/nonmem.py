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

Refused, naming the row and the value (nothing is coerced or dropped silently):

* a row with more or fewer fields than the header (an unquoted ``1,000`` splits one number
  into two fields and would shift every later column; the message names the likely cause);
  a header naming a column twice;
* ``ID``: a numeric ID that is not an integer (NONMEM's IDs are integers, and a change of
  ID between consecutive rows starts a new subject, so ``1.5`` between two rows of subject
  1 would silently split it); a subject's rows that are not contiguous (NONMEM would read
  the later block as a new subject, il2pkpd would merge it: neither is safe); the same ID
  written two ways (``1`` and ``1.0``). Text IDs (``P012``) are accepted as they are;
* a value that is not finite (``inf``), or whose magnitude exceeds :data:`MAX_MAGNITUDE`
  (1e100), in any column il2pkpd reads (the NONMEM columns and the parameter and covariate
  columns). No physical quantity in any unit comes near 1e100 (Avogadro's number is 6e23),
  and below it the solver's and the likelihood's float64 arithmetic, which multiplies and
  squares amounts, rates and observations (1e100 squared is 1e200 < 1.8e308), stays finite;
  above it a result is either overflow or meaningless. ``ADDL`` may imply at most
  :data:`~il2pkpd.dosing.MAX_ADDL` (100,000) doses per record;
* ``MDV`` other than 0 or 1.
"""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..dosing import MAX_ADDL, MAX_MAGNITUDE, Records, records_from_columns
from ..errors import DataFormatError, RegimenError

log = logging.getLogger(__name__)

__all__ = ["NonmemData", "read_nonmem_csv", "from_dataframe", "write_nonmem_csv", "records_to_table", "MAX_MAGNITUDE"]

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

    def column_as(self, column: str, name: str) -> NonmemData:
        """The ``ID`` column and ``column`` alone, renamed ``name``: read through
        :meth:`subject_values`, it gives ``column``'s values as parameter or covariate
        ``name`` (``il2pkpd predict --param ALAG2=LAGT``)."""
        idcol, col = self.columns["id"], self.columns[column.lower()]
        return NonmemData(self.table[[idcol, col]].rename(columns={col: name}), {"id": idcol, name.lower(): name}, self.source)

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
                f"(subject {self._id_at(i)!r}) has {s.iloc[i]!r}{_comma_hint(s.iloc[i])}"
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
        text = np.zeros(n, dtype=bool)  # rows with a non-numeric value (reported once, not again as a consequence)
        nonnum: dict[str, np.ndarray] = {}
        for name in _NUMERIC_COLUMNS:
            s = self.col(name)
            if s is None:
                continue
            values = pd.to_numeric(s, errors="coerce")
            blank = s.isna() | s.astype(str).str.strip().isin(["", "."])
            for i in np.flatnonzero((values.isna() & ~blank).to_numpy()):
                out.append(f"{who(i)}: column `{self.columns[name]}` must be numeric, got {s.iloc[i]!r}{_comma_hint(s.iloc[i])}")
                text[i] = True
            nonnum[name] = (values.isna() & ~blank).to_numpy()
            vals[name] = values.to_numpy(dtype=float)
            out.extend(f"{who(i)}: {msg}" for i, msg in _magnitude_problems(self.columns[name], vals[name]))
        # values already reported (non-numeric, infinite, huge, non-integer) are not checked
        # again for their consequences (CMT 1e-300 is not also "CMT 0 is unknown")
        bad = {name: np.zeros(n, dtype=bool) for name in _NUMERIC_COLUMNS}
        for name, v in vals.items():
            bad[name] = nonnum[name] | np.isinf(v) | (np.abs(np.nan_to_num(v)) > MAX_MAGNITUDE)
        for name in _INTEGER_COLUMNS:
            if name in vals:
                v = vals[name]
                for i in np.flatnonzero(~bad[name] & np.isfinite(v) & (v != np.round(v))):
                    out.append(f"{who(i)}: column `{self.columns[name]}` must hold integers, got {float(v[i])!r}")
                bad[name] |= np.isfinite(v) & (v != np.round(v))
        get = lambda k, d: vals[k] if k in vals else np.full(n, d)  # noqa: E731
        time = get("time", np.nan)
        amt = np.where(np.isnan(get("amt", 0.0)), 0.0, get("amt", 0.0))
        evid = get("evid", np.nan)
        evid = np.where(np.isnan(evid), np.where(amt > 0, 1.0, 0.0), evid)
        rate, ii, addl, ss = (np.where(np.isnan(get(k, 0.0)), 0.0, get(k, 0.0)) for k in ("rate", "ii", "addl", "ss"))
        for i in np.flatnonzero(~np.isin(evid, [0, 1, 2, 3, 4]) & ~bad["evid"]):
            out.append(f"{who(i)}: `EVID` must be 0, 1, 2, 3 or 4, got {float(evid[i])!r}")
        if "time" in vals:  # blank or '.' (a non-numeric TIME is reported above)
            for i in np.flatnonzero(np.isnan(vals["time"]) & ~nonnum["time"]):
                out.append(f"{who(i)}: `TIME` is missing")
        for i in range(1, n):
            if ids[i] == ids[i - 1] and time[i] < time[i - 1] and not (bad["time"][i] or bad["time"][i - 1]):
                out.append(f"{who(i)}: `TIME` must be non-decreasing within a subject, got {float(time[i])!r} after {float(time[i - 1])!r}")
        dose = np.isin(evid, [1, 4]) & ~text
        constant_inf = (ss == 1) & (ii == 0) & (rate > 0) & (amt == 0)
        if "amt" not in vals and dose.any():
            i = int(np.flatnonzero(dose)[0])
            out.append(f"{who(i)}: `EVID` marks {int(dose.sum())} row(s) as doses (the first on row {i + 1}) but the dataset has no `AMT` column")
        for i in np.flatnonzero(dose & (amt <= 0) & ~constant_inf & ~bad["amt"] if "amt" in vals else []):
            out.append(f"{who(i)}: `AMT` of a dose must be > 0, got {float(amt[i])!r}")
        for i in np.flatnonzero(dose & (rate < 0) & ~np.isin(rate, [-1, -2]) & ~bad["rate"]):
            out.append(f"{who(i)}: `RATE` must be > 0, 0, -1 or -2, got {float(rate[i])!r}")
        for i in np.flatnonzero(dose & np.isin(ss, [1, 2]) & (ii <= 0) & ~constant_inf):
            out.append(f"{who(i)}: `SS` = {int(ss[i])} needs `II` > 0, got II = {float(ii[i])!r}")
        for i in np.flatnonzero(dose & (addl > 0) & (ii <= 0) & (addl <= MAX_ADDL)):
            out.append(f"{who(i)}: `ADDL` = {int(addl[i])} needs `II` > 0, got II = {float(ii[i])!r}")
        for i in np.flatnonzero(~bad["addl"] & ((addl < 0) | (addl > MAX_ADDL))):
            out.append(f"{who(i)}: `ADDL` must be an integer from 0 to {MAX_ADDL:,} (additional doses of one record), got {float(addl[i])!r}")
        if "mdv" in vals:
            m = vals["mdv"]
            for i in np.flatnonzero(~bad["mdv"] & np.isfinite(m) & ~np.isin(m, [0, 1])):
                out.append(f"{who(i)}: `{self.columns['mdv']}` must be 0 or 1, got {float(m[i])!r}")
        for flag in ("cens", "blq"):  # M3 censoring flags: 1 below LLOQ, -1 above ULOQ (nlmixr2)
            if flag in vals:
                f = np.where(np.isnan(vals[flag]), 0.0, vals[flag])
                for i in np.flatnonzero(~np.isin(f, [-1, 0, 1])):
                    out.append(f"{who(i)}: `{self.columns[flag]}` must be -1, 0 or 1, got {float(f[i])!r}")
                if "lloq" in vals:
                    lloq = vals["lloq"]
                    for i in np.flatnonzero((f == 1) & ~(lloq > 0)):
                        out.append(f"{who(i)}: below-LLOQ record (`{self.columns[flag]}` = 1) needs `LLOQ` > 0, got {float(lloq[i])!r}")
        for i in np.flatnonzero(~np.isin(ss, [0, 1, 2]) & ~bad["ss"]):
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
                for i in np.flatnonzero(~bad["cmt"] & np.isfinite(cmt) & (cmt != 0) & (evid != 3) & ~np.isin(cmt, cmts)):
                    out.append(f"{who(i)}: `CMT` must be one of {cmts} for model {model.name!r}, got {float(cmt[i]):g}")
                dose_cmts = [s.cmt for s in model.states if s.dose]
                for i in np.flatnonzero(dose & np.isin(cmt, cmts) & ~np.isin(cmt, dose_cmts)):
                    out.append(f"{who(i)}: `CMT` {int(cmt[i])} does not accept doses in model {model.name!r} (dose-able: {dose_cmts})")
            if "dvid" in vals and model.observations:
                dvids = sorted(o.dvid for o in model.observations)
                dv = vals["dvid"]
                # every row: PRED is given on every record, for the output its DVID maps to
                for i in np.flatnonzero(~bad["dvid"] & np.isfinite(dv) & (dv != 0) & ~np.isin(dv, dvids)):
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
            try:
                recs = records_from_columns({k: v[idx] for k, v in cols.items()}, subject=_label(sid), rows=idx)
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
            bad = _magnitude_problems(orig, values)
            if bad:
                i, msg = bad[0]
                raise DataFormatError(f"{self._where()}row {i + 1} (subject {self._id_at(i)!r}): {msg}")
            if kind == "param":
                spec = model.parameter(name)
                out_of_bounds = ~np.isnan(values) & ((values < spec.lower) | (values > spec.upper))
                if out_of_bounds.any():
                    i = int(np.flatnonzero(out_of_bounds)[0])
                    raise DataFormatError(
                        f"{self._where()}row {i + 1} (subject {self._id_at(i)!r}): column `{orig}` (parameter `{name}`) must lie within "
                        f"[{spec.lower:g}, {spec.upper:g}] {spec.unit}, got {float(values[i])!r}"
                    )
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
    """A subject id as read ('12') shown as the number NONMEM means (12); a text label
    ('P012') as it stands, without surrounding blanks."""
    key = _id_key(sid)
    return sid if key is None else _key_label(key)


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", re.ASCII)
_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d*)?$")
_DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d+$")


def _comma_hint(value) -> str:
    """A hint for a number written with a comma ('1,000', '2,5'), else ''."""
    v = str(value).strip()
    if _THOUSANDS.match(v):
        return f" (a thousands separator? write {v.replace(',', '')})"
    if _DECIMAL_COMMA.match(v):
        return f" (a decimal comma? write {v.replace(',', '.')})"
    return ""


def _magnitude_problems(column: str, values: np.ndarray) -> list[tuple[int, str]]:
    """(row index, message) for each value that is infinite or beyond MAX_MAGNITUDE."""
    out = []
    for i in np.flatnonzero(np.isinf(values) | (np.abs(np.nan_to_num(values)) > MAX_MAGNITUDE)):
        v = float(values[i])
        if np.isinf(v):
            out.append((int(i), f"column `{column}` must be finite, got {v!r}"))
        else:
            out.append((int(i), f"column `{column}` must be at most {MAX_MAGNITUDE:g} in magnitude (no physical quantity comes near it; "
                                f"float64 arithmetic on it overflows), got {v!r}"))
    return out


def _check_ids(table: pd.DataFrame, idcol: str, where: str) -> None:
    """NONMEM's ID rules: integers (text IDs accepted as text), each subject's rows
    contiguous (a change of ID starts a new subject), one spelling per subject."""
    raw = table[idcol].tolist()
    first_row: dict[object, int] = {}
    last_key: object = None
    block_start = 0
    for i, v in enumerate(raw):
        key = _id_key(v)
        if key is None:
            raise DataFormatError(
                f"{where}`ID` must be an integer (or a text label), got {_shown(v)} on row {i + 1}: NONMEM reads every "
                f"change of ID between consecutive rows as a new subject, so a non-integer ID would silently split a subject"
            )
        if i > 0 and key == last_key:
            if not _same_spelling(v, raw[block_start]):
                raise DataFormatError(
                    f"{where}`ID` of subject {_key_label(key)!r} is written {_shown(v)} on row {i + 1} but {_shown(raw[block_start])} on row "
                    f"{block_start + 1}; write each subject's ID the same way on every row"
                )
            continue
        if key in first_row:
            raise DataFormatError(
                f"{where}`ID` {_key_label(key)!r} on row {i + 1} was used before on row {first_row[key] + 1}, with other subjects in between: "
                f"NONMEM would read row {i + 1} as a new subject; keep each subject's rows together (sort by ID, keeping "
                f"the rows' order within a subject) or give the later block its own ID"
            )
        first_row[key] = i
        last_key, block_start = key, i


def _key_label(key):
    return key[1] if isinstance(key, tuple) else key


def _id_key(v):
    """The subject an ID value stands for: an int for a number, stripped text for a label;
    None for a number that is not an integer (or not finite)."""
    if isinstance(v, (bool, np.bool_)):
        return None
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return int(v) if np.isfinite(v) and float(v).is_integer() else None
    text = str(v).strip()
    if text in ("", ".") or text.lower().lstrip("+-") in ("inf", "infinity", "nan"):
        return None
    if not _NUMBER.fullmatch(text):
        return ("text", text)  # a label such as 'P012' (NONMEM itself needs numbers)
    f = float(text)
    if not np.isfinite(f) or not f.is_integer():
        return None
    return int(text) if text.lstrip("+-").isdigit() else int(f)  # '1e3', '2.0': an integer written as a float


def _same_spelling(a, b) -> bool:
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def _shown(v) -> str:
    return repr(v.item() if isinstance(v, np.generic) else v)


def from_dataframe(table: pd.DataFrame, source: str = "") -> NonmemData:
    """Wrap a DataFrame as :class:`NonmemData` (checks ID/TIME, duplicate names and the
    ``ID`` rules: integer or text, each subject's rows contiguous)."""
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
    if table.columns.duplicated().any():
        dup = table.columns[table.columns.duplicated()][0]
        raise DataFormatError(f"{source + ': ' if source else ''}column {str(dup)!r} appears more than once; rename one")
    ids = table[columns["id"]]
    if ids.isna().any():
        i = int(np.flatnonzero(ids.isna().to_numpy())[0])
        raise DataFormatError(f"{source + ': ' if source else ''}`ID` is missing on row {i + 1}")
    table = table.reset_index(drop=True)
    _check_ids(table, columns["id"], f"{source}: " if source else "")
    return NonmemData(table, columns, source)


def read_nonmem_csv(path: str | Path) -> NonmemData:
    """Read a NONMEM-style CSV file (every row kept, nothing coerced silently).

    UTF-8 (with or without a byte-order mark), comma-separated, ``"``-quoted fields;
    blank lines are skipped. Every row must have as many fields as the header.

    Raises
    ------
    DataFormatError
        If the file cannot be read, is empty, lacks ``ID``/``TIME``, has a row with more or
        fewer fields than the header (naming the row, its line and the likely cause), or
        breaks the ``ID`` rules (see the module docstring).
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"`data` file {str(path)!r} does not exist")
    rows: list[list[str]] = []
    lines: list[int] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh, skipinitialspace=True)
            for row in reader:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # a blank line
                if any("\x00" in f for f in row):
                    raise DataFormatError(f"{path}: line {reader.line_num} contains a NUL byte: not a text CSV file (binary, or damaged)")
                rows.append(row)
                lines.append(reader.line_num)
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{path}: cannot read as CSV: not UTF-8 text (byte {exc.start}: {exc.reason}); save the file as UTF-8") from None
    except csv.Error as exc:
        raise DataFormatError(f"{path}: cannot read as CSV: line {reader.line_num}: {str(exc).splitlines()[0] if str(exc) else exc!r}") from None
    return from_dataframe(_table_from_rows(rows, lines, str(path)), str(path))


def _table_from_rows(rows: list[list[str]], lines: list[int], source: str) -> pd.DataFrame:
    """A table of text cells ('' -> missing) from parsed CSV rows, refusing rows whose
    number of fields differs from the header's (pandas would shift the columns or make
    the first one an index without a word)."""
    if not rows:
        raise DataFormatError(f"{source}: the file is empty (no header row)")
    header = [h.strip() for h in rows[0]]
    if len(header) == 1:
        sep = next((c for c in (";", "\t", "|") if c in header[0]), " " if len(header[0].split()) > 1 else None)
        if sep is not None:
            raise DataFormatError(
                f"{source}: the header {_cut(header[0])!r} is one column: the file looks {sep!r}-separated, and il2pkpd reads "
                f"comma-separated files; save it as CSV with ',' between fields"
            )
    header = [h if h else f"Unnamed: {j}" for j, h in enumerate(header)]
    seen: dict[str, int] = {}
    for j, h in enumerate(header):
        if h in seen:
            raise DataFormatError(f"{source}: column {h!r} appears twice in the header (fields {seen[h] + 1} and {j + 1}); rename one")
        seen[h] = j
    n = len(header)
    rows = [[f.strip() for f in row] for row in rows]  # ' 1 ' is 1 (NONMEM ignores blanks around values)
    for k, row in enumerate(rows[1:]):
        if len(row) != n:
            raise DataFormatError(f"{source}: row {k + 1} (line {lines[k + 1]}) has {len(row)} field{'s' if len(row) != 1 else ''} but the header has {n} columns{_field_hint(row, n)}")
    table = pd.DataFrame(rows[1:], columns=header, dtype=str) if len(rows) > 1 else pd.DataFrame({h: pd.Series([], dtype=str) for h in header})
    return table.replace({"": np.nan})


def _field_hint(row: list[str], n: int) -> str:
    """Why a row has the wrong number of fields, when it can be told."""
    if len(row) > n:
        shift = ": its values would shift into the wrong columns; likely cause: "
        pairs = [(j, row[j].strip(), row[j + 1].strip()) for j in range(len(row) - 1)]
        for j, a, b in pairs:
            if re.fullmatch(r"[+-]?\d{1,3}", a) and re.fullmatch(r"\d{3}(\.\d*)?", b):
                return (f"{shift}'{a},{b}' (fields {j + 1}-{j + 2}) is the number {a}{b} written with a thousands separator; "
                        f"write {a}{b} (an unquoted comma separates fields)")
        return (f"{shift}an unquoted comma inside a value: a number written with a thousands separator or a decimal comma "
                f"(write 1000 and 2.5, not 1,000 and 2,5), or text containing a comma (quote it)")
    other = next((c for c in (";", "\t", "|") if any(c in f for f in row)), None)
    if other is not None:
        return f": it looks {other!r}-separated; separate every field with ','"
    return "; give every row one field per column (an empty field for a missing value: ',,')"


def _cut(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
