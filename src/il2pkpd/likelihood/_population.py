"""Joint log-likelihood of individual data given individual parameters, through the solver.

:class:`JointLoglik` binds a model and the subjects' records (doses, observations with DV,
M3-censored observations, time-to-event rows) into one pure-JAX function of the individual
parameters, covariates and residual-error parameters, differentiable end to end (the ODE
solve included) so that NUTS gets exact gradients:

    loglik(theta (B, P), cov (B, C), error_params) -> (total, per_subject (B,), status (B,))

Observations map to outputs through the model's ``[observations]`` (DVID); censored rows
(``cens`` = 1 / -1) use the M3 method with their ``lloq``; event rows (``event`` name) use
``d log h(T) - [H(T) - H(0)]`` from the event's hazard output and cumulative-hazard state:
the hazard counts from TIME 0 of the subject's clock (the solve of a model with events starts
there, or at the first record if earlier, which is then a delayed entry at 0), whatever time
the subject's first record has. Covariates are the data's (:class:`SubjectData`), constant or
time-varying. Failed solves give ``-inf`` for that subject (and a status), never an
exception under JIT.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ..dosing import Record, Records
from ..errors import DataFormatError
from ..model import ERROR_MODEL_PARAMETERS
from ..solve import BatchSolver, EventBatch, SolverOptions, build_events, record_covariates
from ..solver_options import DEFAULT_SOLVER_OPTIONS
from ._data import SubjectData, subject_data
from ._residual import check_error_parameters, loglik_censored, loglik_observation
from ._tte import loglik_time_to_event

__all__ = ["JointLoglik", "default_error_params"]

#: the output record added at TIME 0 to every subject of a model with events (row -1: not data)
_ORIGIN = Record(time=0.0, evid=2)


def _with_origin(records: Records) -> Records:
    """``records`` with :data:`_ORIGIN` inserted before the first record at or after TIME 0."""
    k = next((i for i, r in enumerate(records) if r.time >= 0.0), len(records))
    return Records((*records[:k], _ORIGIN, *records[k:]), subject=records.subject)


def default_error_params(model) -> dict[str, dict[str, float]]:
    """Residual-error parameters from the model file: ``{observation: {add/prop/sigma}}``."""
    out = {}
    for o in model.observations:
        e = o.error
        out[o.name] = {k: getattr(e, k) for k in ERROR_MODEL_PARAMETERS[e.model]}
    return out


@dataclass
class JointLoglik:
    """The joint log-likelihood of ``subjects`` under ``model`` (see the module docstring).

    Parameters
    ----------
    model
        The model.
    data
        A :class:`SubjectData` (records and covariates; see :func:`subject_data`), or one
        :class:`~il2pkpd.dosing.Records` per subject for a model without covariates.
        Observation records carry ``dv`` (and optionally ``cens``/``lloq``), event rows an
        ``event`` name and ``dv`` 1/0.
    options
        Solver settings (default ``DEFAULT_SOLVER_OPTIONS["simulate"]``, tight: diagnostics
        read predictions from here; :func:`~il2pkpd.fit` passes its own, the ``"fit"`` ones).
    differentiation
        ``"reverse"`` (gradients for NUTS and MAP) or ``"forward"`` (nested forward-mode
        derivatives for FOCE/Laplace; needs Rodas4): see :class:`~il2pkpd.solve.BatchSolver`.
    """

    model: object
    data: SubjectData | Sequence[Records]
    options: SolverOptions = DEFAULT_SOLVER_OPTIONS["simulate"]
    differentiation: str = "reverse"

    def __post_init__(self):
        model = self.model
        sym = model.symbolic
        self.data = subject_data(model, self.data)
        self.subjects = self.data.records
        # every subject of an event model gets an output at TIME 0: H(0) is subtracted, so the
        # hazard counts from the clock's origin even when records start before it
        solved = [_with_origin(r) if model.events else r for r in self.subjects]
        events = [build_events(r, model, output_rows="obs") for r in solved]
        rec = record_covariates(self.subjects, self.data.cov, self.data.row_cov) if self.data.row_cov is not None else None
        self._batch = EventBatch.stack(events, record_covariates=rec, n_covariates=self.data.cov.shape[1])
        self._out_times = self._batch.out_times
        b, o = self._out_times.shape
        obs_specs = {spec.dvid: (k, spec) for k, spec in enumerate(model.observations)}
        event_names = [e.name for e in model.events]
        self._kind = np.zeros((b, o), dtype=np.int32)  # 0 none, 1 observation, 2 event row
        self._obs_k = np.zeros((b, o), dtype=np.int32)
        self._event_k = np.zeros((b, o), dtype=np.int32)
        self._y = np.zeros((b, o))
        self._cens = np.zeros((b, o))
        self._limit = np.ones((b, o))
        self._row = np.full((b, o), -1)
        self._origin = np.zeros(b, dtype=np.int32)  # output slot of TIME 0 (event models)
        for i, recs in enumerate(solved):
            outs = [r for r in recs if r.evid in (0, 2)]
            for j, r in enumerate(outs):
                if r is _ORIGIN:
                    self._origin[i] = j
                if r.evid != 0:
                    continue
                where = f"subject {recs.subject!r} row {r.row + 1}"
                if r.event:
                    if r.event not in event_names:
                        raise DataFormatError(f"{where}: event {r.event!r} is not an event of model {model.name!r}: {event_names}")
                    if r.dv not in (0.0, 1.0):
                        raise DataFormatError(f"{where}: an event row needs DV 1 (event) or 0 (censored), got {r.dv!r}")
                    if not r.time > 0.0:
                        raise DataFormatError(f"{where}: an event or censoring time must be after the hazard's origin TIME 0, got {r.time!r}")
                    self._kind[i, j], self._event_k[i, j], self._y[i, j], self._row[i, j] = 2, event_names.index(r.event), r.dv, r.row
                    continue
                if r.dvid == 0 and len(obs_specs) == 1:
                    k, spec = next(iter(obs_specs.values()))
                elif r.dvid in obs_specs:
                    k, spec = obs_specs[r.dvid]
                else:
                    raise DataFormatError(f"{where}: DVID {r.dvid} is not an observation of model {model.name!r}: {sorted(obs_specs)}")
                if r.cens == 0 and not np.isfinite(r.dv):
                    raise DataFormatError(f"{where}: observation without DV")
                if r.cens != 0 and not (np.isfinite(r.lloq) and (r.lloq > 0 or spec.error.model != "lognormal")):
                    raise DataFormatError(f"{where}: censored observation needs a finite limit (LLOQ or DV), got {r.lloq!r}")
                self._kind[i, j], self._obs_k[i, j], self._row[i, j] = 1, k, r.row
                self._y[i, j] = r.dv if np.isfinite(r.dv) else 0.0
                self._cens[i, j], self._limit[i, j] = r.cens, r.lloq if np.isfinite(r.lloq) else 1.0
        self._obs_out = np.array([sym.output_names.index(spec.output) for spec in model.observations], dtype=np.int32)
        self._haz_out = np.array([sym.output_names.index(f"hazard_{e}") for e in event_names], dtype=np.int32)
        self._cum_state = np.array([sym.state_names.index(f"cumhaz_{e}") for e in event_names], dtype=np.int32)
        self._solver = BatchSolver(model.compiled, self.options, differentiation=self.differentiation)
        self._fn = jax.jit(self._loglik)

    @property
    def n_observations(self) -> int:
        return int(np.sum(self._kind == 1))

    @property
    def n_events(self) -> int:
        return int(np.sum(self._kind == 2))

    def _solve(self, theta, cov):
        """Outputs (B, O, n_outputs) and states (B, O, n_states) at the output slots, and the
        solver status (B,)."""
        outs, states, status, _ = self._solver(self._batch.to_jax(), theta, cov)
        return outs, states, status

    def _pred_rows(self, outs):
        """The prediction (B, O) of each observation row's output (0 where not an observation)."""
        if not self.model.observations:  # an event-only model: no observation rows
            return jnp.zeros(self._kind.shape)
        out_index = jnp.asarray(self._obs_out)[jnp.asarray(self._obs_k)]
        pred = jnp.take_along_axis(outs, out_index[:, :, None], axis=2)[:, :, 0]
        return jnp.where(jnp.asarray(self._kind == 1), pred, 0.0)

    def _row_loglik(self, outs, states, error_params, sd_pred=None, rows: str = "all"):
        """Log-likelihood (B, O) of every data row (0 elsewhere).

        ``sd_pred`` (B, O): predictions to evaluate residual SDs at (FOCE without
        interaction). ``rows``: ``"all"``, ``"gaussian"`` (uncensored observations only) or
        ``"other"`` (M3-censored observations and event rows only).
        """
        model = self.model
        kind, y, cens, limit = self._kind, jnp.asarray(self._y), jnp.asarray(self._cens), jnp.asarray(self._limit)
        ll = jnp.zeros(kind.shape)
        for k, spec in enumerate(model.observations):
            mask = (kind == 1) & (self._obs_k == k)
            if rows != "all":
                mask = mask & ((self._cens == 0) if rows == "gaussian" else (self._cens != 0))
            if not mask.any():
                continue
            pred = outs[:, :, self._obs_out[k]]
            p = error_params[spec.name]
            kw = {name: p[name] for name in p}
            # keep the unused branch finite where it is masked (gradients of where)
            pred_safe = jnp.where(mask, pred, 1.0)
            at = None if sd_pred is None else jnp.where(mask, sd_pred, 1.0)
            val = jnp.where(cens == 0, loglik_observation(jnp.where(mask, y, 1.0), pred_safe, spec.error.model, sd_pred=at, **kw),
                            loglik_censored(limit, pred_safe, spec.error.model, cens, sd_pred=at, **kw))
            ll = ll + jnp.where(mask, val, 0.0)
        for k in range(len(self._haz_out) if rows != "gaussian" else 0):
            mask = (kind == 2) & (self._event_k == k)
            if not mask.any():
                continue
            h = jnp.where(mask, outs[:, :, self._haz_out[k]], 1.0)
            big_h = jnp.where(mask, states[:, :, self._cum_state[k]], 0.0)
            at_origin = states[jnp.arange(kind.shape[0]), jnp.asarray(self._origin), self._cum_state[k]][:, None]
            ll = ll + jnp.where(mask, loglik_time_to_event(y, h, big_h, jnp.where(mask, at_origin, 0.0)), 0.0)
        return ll

    def _loglik(self, theta, cov, error_params):
        outs, states, status = self._solve(theta, cov)
        per_subject = jnp.sum(self._row_loglik(outs, states, error_params), axis=1)
        per_subject = jnp.where(status == 0, per_subject, -jnp.inf)
        return jnp.sum(per_subject), per_subject, status

    def _predict(self, theta, cov):
        """Predictions (B, O) of each observation row's output (0 where the row is not an
        observation) and the solver status (B,)."""
        outs, _, status = self._solve(theta, cov)
        return self._pred_rows(outs), status

    def covariates(self) -> np.ndarray:
        """(B, C) the subjects' covariates (from the data; time-varying ones at the first record)."""
        return self.data.cov

    def unweightable_observations(self, theta, cov=None) -> list[str]:
        """Observation rows that no residual SD can weight at parameters ``theta`` (B, P):
        a proportional error where the prediction is exactly 0 (e.g. a pre-dose sample: the
        SD is 0 and the likelihood is not finite) or a log-normal error where it is <= 0.
        Returns one line per row, naming the subject, row and time."""
        cov = self.covariates() if cov is None else cov
        pred, _ = self._predict(jnp.asarray(theta), jnp.asarray(cov))
        pred = np.asarray(pred)
        problems = []
        for k, spec in enumerate(self.model.observations):
            if spec.error.model == "proportional":
                bad = pred == 0.0
            elif spec.error.model == "lognormal":
                bad = pred <= 0.0
            else:
                continue
            for i, j in zip(*np.nonzero(bad & (self._kind == 1) & (self._obs_k == k) & (self._cens == 0))):
                problems.append(f"subject {self.subjects[i].subject!r} row {self._row[i, j] + 1} (time {self._out_times[i, j]:g}, "
                                f"{spec.name}): prediction {pred[i, j]:g} under a {spec.error.model} error model")
        return problems

    def observations(self) -> dict[str, np.ndarray]:
        """The observation rows, flattened in subject then time order: ``subject`` (index),
        ``slot`` (position among the subject's outputs), ``time``, ``dv``, ``cens``,
        ``observation`` (index into ``model.observations``)."""
        i, j = np.nonzero(self._kind == 1)
        return {"subject": i, "slot": j, "time": self._out_times[i, j], "dv": self._y[i, j], "cens": self._cens[i, j].astype(int),
                "observation": self._obs_k[i, j]}

    def __call__(self, theta, cov=None, error_params: Mapping | None = None):
        """Evaluate (jitted). ``theta`` (B, P) in declared units; ``cov`` (B, C) defaults to
        the data's covariates; ``error_params`` to the model file's."""
        if cov is None:
            cov = self.covariates()
        if error_params is None:
            error_params = default_error_params(self.model)
        for spec in self.model.observations:
            if spec.name in error_params:
                vals = error_params[spec.name]
                if all(isinstance(v, (int, float)) for v in vals.values()):
                    check_error_parameters(spec.error.model, **vals)
        return self._fn(jnp.asarray(theta), jnp.asarray(cov), error_params)
