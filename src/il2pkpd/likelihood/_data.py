"""What a likelihood is evaluated on: each subject's records and covariates, together.

Fits, their diagnostics and their predictive checks must see the covariates the dataset
gives (a weight on CL, a time-varying creatinine clearance, a sex flag), never the model
file's defaults in their place. :class:`SubjectData` binds the two so that no caller can
take one without the other, and :func:`subject_data` builds it from whatever a user passes:
a dataset (NONMEM-style, from ``il2pkpd.read_nonmem_csv`` or ADaM), per-subject records with
explicit covariates, or a :class:`SubjectData` as is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..dosing import Records
from ..errors import DataFormatError, OptionError

__all__ = ["SubjectData", "subject_data"]


@dataclass(frozen=True)
class SubjectData:
    """Subjects' records and covariates, aligned.

    Attributes
    ----------
    records
        One :class:`~il2pkpd.dosing.Records` per subject.
    cov
        (n_subjects, n_covariates) covariates in the model's declared units, in the order of
        ``model.covariates``: for a covariate that changes within a subject, its value on the
        subject's first record (initial states, steady states and dose parameters use it).
    row_cov
        Covariate index -> values per dataset row (records' ``row``), for covariates that
        change within a subject; the solver applies them by NONMEM's rule (next observation
        carried backward, :func:`il2pkpd.solve.record_covariates`). ``None`` if none change.
    """

    records: tuple[Records, ...]
    cov: np.ndarray
    row_cov: Mapping[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.records)


def _covariate_table(model, covariates, n: int) -> np.ndarray:
    """(n, C) from a mapping name -> scalar or per-subject values (every covariate named)."""
    names = [c.name for c in model.covariates]
    if not isinstance(covariates, Mapping):
        arr = np.asarray(covariates, dtype=float)
        if arr.shape != (n, len(names)):
            raise OptionError(f"`covariates` must be a mapping or an array of shape (n_subjects, n_covariates) = {(n, len(names))}, "
                              f"got shape {arr.shape}")
        return arr
    unknown = sorted(set(covariates) - set(names))
    if unknown:
        raise OptionError(f"`covariates` has {unknown}, which are not covariates of model {model.name!r}: {names}")
    missing = [k for k in names if k not in covariates]
    if missing:
        raise OptionError(f"`covariates` must give every covariate of model {model.name!r}; missing {missing}")
    out = np.empty((n, len(names)))
    for j, k in enumerate(names):
        v = np.asarray(covariates[k], dtype=float)
        if v.ndim == 0:
            v = np.full(n, float(v))
        if v.shape != (n,):
            raise OptionError(f"`covariates[{k!r}]` must be a number or one value per subject ({n}), got shape {v.shape}")
        out[:, j] = v
    return out


def _check_finite(model, cov: np.ndarray, ids: Sequence) -> None:
    for j, c in enumerate(model.covariates):
        bad = np.flatnonzero(~np.isfinite(cov[:, j]))
        if len(bad):
            raise DataFormatError(f"covariate `{c.name}` must be finite, got {cov[bad[0], j]!r} for subject {ids[bad[0]]!r}")


def subject_data(model, data, covariates=None) -> SubjectData:
    """The records and covariates of ``data`` under ``model``.

    Parameters
    ----------
    model
        The model.
    data
        A dataset (anything with ``subject_records``/``subject_values``, e.g.
        :class:`il2pkpd.io.nonmem.NonmemData`; validated with DV required), a sequence of
        :class:`~il2pkpd.dosing.Records`, or a :class:`SubjectData`.
    covariates
        For records only: a mapping covariate name -> a number or one value per subject, or
        an (n_subjects, n_covariates) array. Required when the model has covariates; a
        dataset gives them as columns (name or label) instead.

    Raises
    ------
    DataFormatError
        A covariate column is missing from the dataset, or a column names a model parameter
        (a fit estimates parameters; it does not read individual values from the data).
    OptionError
        Records without ``covariates`` for a model that has covariates.
    """
    if isinstance(data, SubjectData):
        if covariates is not None:
            raise OptionError("`covariates` cannot be given with a SubjectData: it carries its own")
        return data
    if hasattr(data, "subject_records"):
        if covariates is not None:
            raise OptionError("`covariates` cannot be given with a dataset: its columns are used (one per covariate, by name or label)")
        data.validate(model, require_dv=True)
        records = tuple(data.subject_records(model))
        per_row: dict[str, np.ndarray] = {}
        params, covs = data.subject_values(model, per_row)
        if params:
            name = sorted(params)[0]
            label = next(p.label for p in model.parameters if p.name == name) or name
            raise DataFormatError(f"column `{label}` names parameter `{name}` of model {model.name!r}; a fit estimates parameters "
                                  "and does not take individual values from the data: drop or rename the column "
                                  "(or fix the parameter in the model file)")
        missing = [c for c in model.covariates if c.name not in covs]
        if missing:
            c = missing[0]
            raise DataFormatError(f"the dataset has no column for covariate `{c.name}` (label `{c.label or c.name}`) of model "
                                  f"{model.name!r}; add the column (one value per record or per subject) — a fit never falls back "
                                  f"to the model file's value ({c.value:g} {c.unit})")
        cov = np.column_stack([covs[c.name] for c in model.covariates]) if model.covariates else np.zeros((len(records), 0))
        names = [c.name for c in model.covariates]
        row_cov = {names.index(k): np.asarray(v, dtype=float) for k, v in per_row.items() if k in names} or None
        _check_finite(model, cov, [r.subject for r in records])
        return SubjectData(records, cov, row_cov)
    records = tuple(data)
    if not all(isinstance(r, Records) for r in records):
        raise OptionError(f"`data` must be a dataset, a SubjectData or a sequence of Records, got {type(data).__name__}")
    if model.covariates and covariates is None:
        raise OptionError(f"model {model.name!r} has covariates {[c.name for c in model.covariates]}: pass `covariates=` "
                          "(name -> value or one value per subject) with records, or fit a dataset that has their columns")
    cov = _covariate_table(model, covariates if covariates is not None else {}, len(records))
    _check_finite(model, cov, [r.subject for r in records])
    return SubjectData(records, cov, None)
