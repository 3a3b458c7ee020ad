"""Predictions at a dataset's own records (``il2pkpd predict``): every row plus ``PRED``.

The computation only: the dataset comes in read (:func:`il2pkpd.read_nonmem_csv`) and the
table goes out to the caller, which writes it (:func:`il2pkpd.io.predict.write_predictions`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import DataFormatError
from .model import Model
from .simulation import individual_parameters, raise_failures, resolve_param_key, solve_records, warn_missing_covariates
from .solve import SolverOptions
from .solver_options import DEFAULT_SOLVER_OPTIONS
from .units import conversion_factor

if TYPE_CHECKING:  # annotations only: the dataset class lives in the io layer
    from .io.nonmem import NonmemData

__all__ = ["predict"]


def predict(
    model: Model,
    data: NonmemData,
    params: Mapping[str, float | str] | None = None,
    *,
    pred_unit: str | None = None,
    options: SolverOptions | None = None,
    throw: bool = True,
) -> Any:
    """Every input row, plus ``PRED``: the model's observed output at that record.

    Parameters
    ----------
    model
        The model.
    data
        The dataset (:func:`il2pkpd.read_nonmem_csv`).
    params
        Overrides by parameter name or label: a number, or the name of a dataset column
        holding per-subject values (e.g. ``{"ALAG2": "LAGT"}``). Columns already named
        like a parameter (``KA``, ``CL``, ``F1``, ``ALAG1``) are used automatically.
    pred_unit
        Unit of ``PRED`` (default: the output's declared unit), e.g. ``"ng/mL"``.
    options
        Solver settings (default :class:`~il2pkpd.solve.SolverOptions`).
    throw
        Raise :class:`~il2pkpd.errors.SolverError` when a subject's solve fails; with
        ``False`` the failure is reported in ``STATUS``.

    Returns
    -------
    pandas.DataFrame
        A copy of the dataset's table with ``PRED`` and ``STATUS`` (the subject's solver status).

    Notes
    -----
    ``PRED`` is the output that the row's ``DVID`` maps to (model ``[observations]``);
    without a DVID column, the first observation's output. It is given on every record
    (doses too: the value after the record is processed, as in NONMEM's tables).
    """
    options = options or DEFAULT_SOLVER_OPTIONS["simulate"]
    subjects = data.subject_records(model)
    ids = [r.subject for r in subjects]  # labels for messages (12, not '12')
    raw_ids = data.subject_ids  # values as they stand in the ID column
    per_row: dict[str, np.ndarray] = {}
    p_cols, c_cols = data.subject_values(model, per_row)
    subject_params: dict[str, np.ndarray] = {**p_cols, **c_cols}
    scalar: dict[str, float] = {}
    for key, val in (params or {}).items():
        if isinstance(val, str):
            try:
                scalar[key] = float(val)
                continue
            except ValueError:
                pass
            if data.col(val) is None:
                raise DataFormatError(f"`--param {key}={val}`: {val!r} is neither a number nor a column of the dataset (columns: {list(data.table.columns)})")
            _, name = resolve_param_key(model, key)  # raises, naming the key, if it is neither
            p2, c2 = data.column_as(val, name).subject_values(model, per_row)
            subject_params.update(p2)
            subject_params.update(c2)
        else:
            scalar[key] = float(val)
    warn_missing_covariates(model, set(subject_params) | {resolve_param_key(model, k)[1] for k in scalar})
    theta, cov, _ = individual_parameters(model, len(ids), params=scalar, subject_params=subject_params or None, iiv=False)
    names, cov_names = list(model.parameter_names), list(model.covariate_names)
    row_theta = {names.index(n): v for n, v in per_row.items() if n in names} or None
    row_cov = {cov_names.index(n): v for n, v in per_row.items() if n in cov_names} or None
    sol = solve_records(model, subjects, theta, cov, options=options, output_rows="all", row_theta=row_theta, row_cov=row_cov)
    if throw:
        raise_failures(sol.status, sol.fail_time, ids, model.time_unit)

    sym = model.symbolic
    dvid = data.numeric("dvid", 0.0)
    default_out = model.observations[0].output if model.observations else sym.output_names[0]
    pred = np.full(len(data.table), np.nan)
    idcol = data.table[data.columns["id"]].to_numpy()
    unit_factor: dict[str, float] = {}
    status = np.zeros(len(data.table), dtype=int)
    for i, sid in enumerate(raw_ids):
        rows = np.flatnonzero(idcol == sid)
        status[rows] = sol.status[i]
        for k, row in enumerate(rows):
            out = default_out
            if dvid[row] > 0:
                out = model.observation_for_dvid(int(dvid[row])).output
            j = sym.output_names.index(out)
            if out not in unit_factor:
                unit_factor[out] = conversion_factor(sym.output_units[j], pred_unit) if pred_unit else 1.0
            pred[row] = sol.outputs[i, k, j] * unit_factor[out]
    result = data.table.copy()
    result["PRED"] = pred
    result["STATUS"] = status
    return result
