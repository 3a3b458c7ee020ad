"""CDISC ADaM <-> il2pkpd's NONMEM-style table.

Domains (each a :class:`pandas.DataFrame`, or a CSV file when read/written from a folder):

* ``ADSL``: one row per subject: STUDYID, USUBJID, SUBJID, ARM, TRT01A, TRT01AN, covariates
  (columns named like a model covariate or its label, e.g. ``BSA``, ``WT``, or mapped), and
  demographics carried through unchanged (AGE, SEX, RACE, WEIGHTBL, HEIGHTBL, BMIBL, BSABL,
  RANDDT, RANDFL, ITTFL, SAFFL);
* ``ADLB``: BDS findings: USUBJID, PARAMCD, PARAM, AVAL, AVALU, ADY, ARELTM, ARELTMU;
* ``ADTTE``: USUBJID, PARAMCD, PARAM, AVAL (time), AVALU, CNSR (1 censored, 0 event), EVNTDESC;
* ``EX``: USUBJID, EXTRT, EXDOSE, EXDOSU, EXROUTE, EXSTDY, EXRELTM, EXRELTMU, EXDUR.

PARAMCD maps to a model observation through the observation's ``paramcd`` in the model file
(``ivory``: IL2, TREGFC, TBRMAX, NKFC) or a ``paramcd`` mapping given by the user; ADTTE
PARAMCD is the event name in upper case (``MI``). Times: ``ARELTM``/``EXRELTM`` (time from the
first dose, in ``*RELTMU``) when present, otherwise the study day (ADY/EXSTDY: day 1 is the
first dose day and there is no day 0, so t = ADY - 1 for ADY >= 1 and t = ADY before it).
At equal times, observations come before doses (pre-dose samples).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataFormatError
from ..units import conversion_factor
from .output import atomic_write

__all__ = ["to_adam", "from_adam", "write_adam", "read_adam", "DOMAINS"]

DOMAINS = ("ADSL", "ADLB", "ADTTE", "EX")
#: ADSL columns carried through unchanged (subject-level, not model inputs unless mapped)
ADSL_PASSTHROUGH = ("AGE", "SEX", "RACE", "WEIGHTBL", "HEIGHTBL", "BMIBL", "BSABL", "RANDDT", "RANDFL", "ITTFL", "SAFFL")
_ROUTES = {"SUBCUTANEOUS": "sc", "INTRAMUSCULAR": "im", "ORAL": "po", "INTRAVENOUS": "iv"}


def _paramcd_map(model, paramcd: Mapping[str, str] | None) -> dict[str, object]:
    """PARAMCD -> observation spec."""
    by_name = {o.name: o for o in model.observations}
    out = {o.paramcd or o.name.upper(): o for o in model.observations}
    for code, name in (paramcd or {}).items():
        if name not in by_name:
            raise DataFormatError(f"`paramcd` maps {code!r} to {name!r}, which is not an observation of model {model.name!r}: {sorted(by_name)}")
        out[code] = by_name[name]
    return out


def _study_day(t_days: np.ndarray) -> np.ndarray:
    return np.where(t_days >= 0, np.floor(t_days) + 1, np.floor(t_days)).astype(int)


def _days_from_study_day(ady: np.ndarray) -> np.ndarray:
    return np.where(ady >= 1, ady - 1, ady).astype(float)


def to_adam(table: pd.DataFrame, model, *, study: str = "IL2PKPD", paramcd: Mapping[str, str] | None = None) -> dict[str, pd.DataFrame]:
    """ADaM domains of a NONMEM-style table (e.g. from :func:`il2pkpd.design.simulate_trial`)."""
    codes = {o.name: code for code, o in _paramcd_map(model, paramcd).items()}
    obs_by_dvid = {o.dvid: o for o in model.observations}
    tu = model.time_unit
    to_days = conversion_factor(tu, "day")
    usubjid = {sid: f"{study}-{int(sid):04d}" if float(sid).is_integer() else f"{study}-{sid}" for sid in pd.unique(table.ID)}
    first = table.drop_duplicates("ID")
    cov_cols = [c.label or c.name.upper() for c in model.covariates if (c.label or c.name.upper()) in table.columns]
    adsl = pd.DataFrame({
        "STUDYID": study, "USUBJID": first.ID.map(usubjid).to_numpy(), "SUBJID": first.ID.to_numpy(),
        "ARM": first.ARM.to_numpy() if "ARM" in first else "", "TRT01A": first.ARM.to_numpy() if "ARM" in first else "",
        "TRT01AN": first.ARMN.to_numpy() if "ARMN" in first else 0,
    })
    for c in cov_cols:
        adsl[c] = first[c].to_numpy()
    for c in ADSL_PASSTHROUGH:
        if c in first:
            adsl[c] = first[c].to_numpy()
    if "SIMULATED" in table:
        adsl["SIMULATED"] = np.where(first.SIMULATED.to_numpy() == 1, "Y", "N")
    obs = table[(table.EVID == 0) & (table.DVID > 0)]
    units = {o.name: model.output_unit(o.output) for o in model.observations}
    adlb = pd.DataFrame({
        "STUDYID": study, "USUBJID": obs.ID.map(usubjid).to_numpy(),
        "PARAMCD": [codes[obs_by_dvid[int(d)].name] for d in obs.DVID],
        "PARAM": [obs_by_dvid[int(d)].description or obs_by_dvid[int(d)].name for d in obs.DVID],
        "AVAL": obs.DV.to_numpy(dtype=float), "AVALU": [units[obs_by_dvid[int(d)].name] for d in obs.DVID],
        "ADY": _study_day(obs.TIME.to_numpy(dtype=float) * to_days), "ARELTM": obs.TIME.to_numpy(dtype=float), "ARELTMU": tu,
    })
    tte = table[table.EVENT.notna() & (table.EVENT.astype(str) != "")] if "EVENT" in table else table.iloc[0:0]
    adtte = pd.DataFrame({
        "STUDYID": study, "USUBJID": tte.ID.map(usubjid).to_numpy(),
        "PARAMCD": tte.EVENT.astype(str).str.upper().to_numpy() if len(tte) else [],
        "PARAM": [next((e.description for e in model.events if e.name == str(x)), str(x)) for x in tte.EVENT] if len(tte) else [],
        "AVAL": tte.TIME.to_numpy(dtype=float) * to_days, "AVALU": "DAYS",
        "CNSR": (1 - tte.DV.to_numpy(dtype=float)).astype(int) if len(tte) else [],
        "EVNTDESC": tte.CENS_REASON.fillna("").replace("", "event").to_numpy() if "CENS_REASON" in tte and len(tte) else [],
    })
    doses = table[table.EVID.isin([1, 4])]
    state_of = {s.cmt: s for s in model.states}
    rate = doses.RATE.to_numpy(dtype=float) if "RATE" in doses else np.zeros(len(doses))
    ex = pd.DataFrame({
        "STUDYID": study, "USUBJID": doses.ID.map(usubjid).to_numpy(), "EXTRT": model.drug or model.name,
        "EXDOSE": doses.AMT.to_numpy(dtype=float), "EXDOSU": [state_of[int(c)].unit for c in doses.CMT],
        "EXROUTE": ["INTRAVENOUS" if state_of[int(c)].name == "central" else "SUBCUTANEOUS" for c in doses.CMT],
        "EXSTDY": _study_day(doses.TIME.to_numpy(dtype=float) * to_days), "EXRELTM": doses.TIME.to_numpy(dtype=float), "EXRELTMU": tu,
        "EXDUR": np.where(rate > 0, doses.AMT.to_numpy(dtype=float) / np.where(rate > 0, rate, 1.0), 0.0),
    })
    return {"ADSL": adsl, "ADLB": adlb, "ADTTE": adtte, "EX": ex}


def from_adam(domains: Mapping[str, pd.DataFrame], model, *, paramcd: Mapping[str, str] | None = None,
              covariates: Mapping[str, str] | None = None) -> pd.DataFrame:
    """A NONMEM-style table from ADaM domains (``ADSL`` required; ``ADLB``/BDS, ``ADTTE``, ``EX``
    optional). ``covariates`` maps ADSL columns to model covariates (e.g. ``{"WEIGHTBL": "wt"}``);
    columns named like a covariate or its label are taken without it.

    Raises
    ------
    DataFormatError
        Naming the domain, row and value (unknown USUBJID, unknown PARAMCD, missing columns).
    """
    if "ADSL" not in domains:
        raise DataFormatError("ADaM input needs an `ADSL` domain (one row per subject)")
    adsl = domains["ADSL"]
    _require(adsl, ("USUBJID",), "ADSL")
    if adsl.USUBJID.duplicated().any():
        i = int(np.flatnonzero(adsl.USUBJID.duplicated().to_numpy())[0])
        raise DataFormatError(f"ADSL row {i + 1}: USUBJID {adsl.USUBJID.iloc[i]!r} appears twice")
    ids = {u: i + 1 for i, u in enumerate(adsl.USUBJID)}
    tu = model.time_unit
    from_days = conversion_factor("day", tu)
    subj = pd.DataFrame({"ID": list(ids.values()), "USUBJID": list(ids)})
    if "TRT01A" in adsl or "ARM" in adsl:
        subj["ARM"] = (adsl["TRT01A"] if "TRT01A" in adsl else adsl["ARM"]).to_numpy()
    if "TRT01AN" in adsl:
        subj["ARMN"] = adsl.TRT01AN.to_numpy()
    cov_map = dict(covariates or {})
    for c in model.covariates:
        for col in adsl.columns:
            if str(col).upper() in {c.name.upper(), (c.label or "").upper()}:
                cov_map.setdefault(col, c.name)
    for col, name in cov_map.items():
        if col not in adsl:
            raise DataFormatError(f"`covariates` names ADSL column {col!r}, which ADSL does not have")
        spec = next((c for c in model.covariates if c.name == name), None)
        if spec is None:
            raise DataFormatError(f"`covariates` maps {col!r} to {name!r}, not a covariate of model {model.name!r}")
        subj[spec.label or spec.name.upper()] = pd.to_numeric(adsl[col], errors="raise").to_numpy()
    for c in ADSL_PASSTHROUGH:
        if c in adsl and c not in subj:
            subj[c] = adsl[c].to_numpy()
    if "SIMULATED" in adsl:
        subj["SIMULATED"] = (adsl.SIMULATED.to_numpy() == "Y").astype(int)

    def usubj(df, domain):
        unknown = ~df.USUBJID.isin(ids)
        if unknown.any():
            i = int(np.flatnonzero(unknown.to_numpy())[0])
            raise DataFormatError(f"{domain} row {i + 1}: USUBJID {df.USUBJID.iloc[i]!r} is not in ADSL")
        return df.USUBJID.map(ids).to_numpy()

    def rel_time(df, tcol, ucol, daycol, domain):
        if tcol in df:
            units = df[ucol] if ucol in df else pd.Series([tu] * len(df))
            return np.array([float(t) * conversion_factor(str(u), tu) for t, u in zip(df[tcol], units)])
        _require(df, (daycol,), domain)
        return _days_from_study_day(df[daycol].to_numpy(dtype=float)) * from_days

    parts = []
    codes = _paramcd_map(model, paramcd)
    bds = domains.get("ADLB", domains.get("BDS"))
    if bds is not None and len(bds):
        _require(bds, ("USUBJID", "PARAMCD", "AVAL"), "ADLB")
        unknown = ~bds.PARAMCD.isin(codes)
        if unknown.any():
            i = int(np.flatnonzero(unknown.to_numpy())[0])
            raise DataFormatError(f"ADLB row {i + 1}: PARAMCD {bds.PARAMCD.iloc[i]!r} is not mapped to an observation of model {model.name!r} (known: {sorted(codes)}); pass `paramcd`")
        parts.append(pd.DataFrame({
            "ID": usubj(bds, "ADLB"), "TIME": rel_time(bds, "ARELTM", "ARELTMU", "ADY", "ADLB"), "EVID": 0, "AMT": 0.0, "CMT": 0, "RATE": 0.0,
            "DVID": [codes[c].dvid for c in bds.PARAMCD], "MDV": 0, "DV": bds.AVAL.to_numpy(dtype=float), "_order": 0,
        }))
    ex = domains.get("EX")
    if ex is not None and len(ex):
        _require(ex, ("USUBJID", "EXDOSE"), "EX")
        dose_states = [s for s in model.states if s.dose]
        cmts = []
        for i, route in enumerate(ex.EXROUTE if "EXROUTE" in ex else ["SUBCUTANEOUS"] * len(ex)):
            if _ROUTES.get(str(route).upper()) == "iv":
                st = next((s for s in dose_states if s.name == "central"), None)
            else:
                st = min(dose_states, key=lambda s: s.cmt) if dose_states else None
            if st is None:
                raise DataFormatError(f"EX row {i + 1}: route {route!r} has no dose-able compartment in model {model.name!r}")
            cmts.append(st.cmt)
        amt = ex.EXDOSE.to_numpy(dtype=float)
        if "EXDOSU" in ex:
            state_units = {s.cmt: s.unit for s in model.states}
            from ..units import convert_amount, drug_named

            amt = np.array([convert_amount(a, str(u), state_units[c], drug_named(model.drug)) for a, u, c in zip(amt, ex.EXDOSU, cmts)])
        dur = ex.EXDUR.to_numpy(dtype=float) if "EXDUR" in ex else np.zeros(len(ex))
        parts.append(pd.DataFrame({
            "ID": usubj(ex, "EX"), "TIME": rel_time(ex, "EXRELTM", "EXRELTMU", "EXSTDY", "EX"), "EVID": 1, "AMT": amt, "CMT": cmts,
            "RATE": np.where(dur > 0, amt / np.where(dur > 0, dur, 1.0), 0.0), "DVID": 0, "MDV": 1, "DV": np.nan, "_order": 1,
        }))
    tte = domains.get("ADTTE")
    if tte is not None and len(tte):
        _require(tte, ("USUBJID", "PARAMCD", "AVAL", "CNSR"), "ADTTE")
        names = {e.name.upper(): e.name for e in model.events}
        unknown = ~tte.PARAMCD.str.upper().isin(names)
        if unknown.any():
            i = int(np.flatnonzero(unknown.to_numpy())[0])
            raise DataFormatError(f"ADTTE row {i + 1}: PARAMCD {tte.PARAMCD.iloc[i]!r} is not an event of model {model.name!r} ({sorted(names)})")
        desc = tte.EVNTDESC.fillna("") if "EVNTDESC" in tte else pd.Series([""] * len(tte))
        parts.append(pd.DataFrame({
            "ID": usubj(tte, "ADTTE"), "TIME": tte.AVAL.to_numpy(dtype=float) * from_days, "EVID": 0, "AMT": 0.0, "CMT": 0, "RATE": 0.0,
            "DVID": 0, "MDV": 0, "DV": 1.0 - tte.CNSR.to_numpy(dtype=float), "EVENT": [names[c.upper()] for c in tte.PARAMCD],
            "CENS_REASON": np.where(tte.CNSR.to_numpy() == 1, desc.to_numpy(), ""), "_order": 2,
        }))
    if not parts:
        raise DataFormatError("ADaM input has no records (ADLB/BDS, EX or ADTTE)")
    records = pd.concat(parts, ignore_index=True)
    table = records.merge(subj, on="ID", how="left").sort_values(["ID", "TIME", "_order"], kind="stable").drop(columns="_order")
    return table.reset_index(drop=True)


def _require(df: pd.DataFrame, cols: tuple[str, ...], domain: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise DataFormatError(f"{domain} is missing required column(s) {missing} (has {list(df.columns)})")


def write_adam(domains: Mapping[str, pd.DataFrame], folder: str | Path) -> list[Path]:
    """Write each domain as ``<folder>/<domain>.csv`` (lower case), atomically."""
    folder = Path(folder)
    return [atomic_write(folder / f"{name.lower()}.csv", lambda p, d=df: d.to_csv(p, index=False)) for name, df in domains.items()]


def read_adam(folder: str | Path) -> dict[str, pd.DataFrame]:
    """Read ``adsl.csv``, ``adlb.csv`` (or ``bds.csv``), ``adtte.csv``, ``ex.csv`` from a folder."""
    folder = Path(folder)
    out = {}
    for name in ("ADSL", "ADLB", "BDS", "ADTTE", "EX"):
        p = folder / f"{name.lower()}.csv"
        if p.is_file():
            out[name] = pd.read_csv(p, keep_default_na=False, na_values=[""])
    if "ADSL" not in out:
        raise DataFormatError(f"no adsl.csv in {str(folder)!r}")
    return out
