"""Run the batch solver on NumPy inputs and return NumPy results."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import jax.numpy as jnp
import numpy as np

from ..errors import ShapeError
from ._events import SubjectEvents, stack_events
from ._jax import SolverOptions, make_batch_solver

__all__ = ["BatchSolution", "solve_subjects"]


@dataclass
class BatchSolution:
    """Results of a batch solve (NumPy arrays).

    Attributes
    ----------
    outputs
        (n_subjects, n_times, n_outputs), declared output units.
    states
        (n_subjects, n_times, n_states), declared state units.
    times
        (n_subjects, n_times) output times (model time unit).
    n_times
        Number of valid (unpadded) times per subject.
    status
        (n_subjects,) :class:`SolveStatus` codes.
    fail_time
        (n_subjects,) time at which a failure started (NaN where none).
    """

    outputs: np.ndarray
    states: np.ndarray
    times: np.ndarray
    n_times: np.ndarray
    status: np.ndarray
    fail_time: np.ndarray


@lru_cache(maxsize=32)
def _solver_for(compiled, options: SolverOptions, per_event_theta: bool = False):
    return make_batch_solver(compiled, options, per_event_theta)


def solve_subjects(model, subjects: list[SubjectEvents], theta: np.ndarray, cov: np.ndarray, options: SolverOptions | None = None, ev_theta: list[np.ndarray] | None = None) -> BatchSolution:
    """Solve a batch of subjects (one row of ``theta``/``cov`` each) with the JAX solver.

    Parameters
    ----------
    model
        The model.
    subjects
        Event arrays per subject (:func:`build_events`).
    theta
        (n_subjects, n_parameters) individual parameters in declared units.
    cov
        (n_subjects, n_covariates) covariates in declared units.
    options
        Solver settings.
    ev_theta
        Optional per-subject (n_events, n_parameters) parameters at each event, for dose
        parameters (F, ALAG, R, D) that change between dose records.
    """
    options = options or SolverOptions()
    n = len(subjects)
    theta = np.asarray(theta, dtype=float)
    cov = np.asarray(cov, dtype=float).reshape(n, -1) if n else np.zeros((0, 0))
    if theta.shape != (n, len(model.parameters)):
        raise ShapeError("`theta` must have one row per subject and one column per parameter", theta.shape, (n, len(model.parameters)))
    if cov.shape != (n, len(model.covariates)):
        raise ShapeError("`cov` must have one row per subject and one column per covariate", cov.shape, (n, len(model.covariates)))
    arrays, ss_pos, out_times, t_start = stack_events(subjects)
    solver = _solver_for(model.compiled, options, ev_theta is not None)
    ev = {k: jnp.asarray(v) for k, v in arrays.items()}
    if ev_theta is not None:
        n_ev = arrays["kind"].shape[1]
        padded = np.empty((n, n_ev, theta.shape[1]))
        for i, et in enumerate(ev_theta):
            padded[i, : len(et)] = et
            padded[i, len(et):] = theta[i]
        ev["theta"] = jnp.asarray(padded)
    outs, ys, status, fail_t = solver(
        ev, jnp.asarray(ss_pos), jnp.asarray(out_times), jnp.asarray(t_start), jnp.asarray(theta), jnp.asarray(cov),
    )
    return BatchSolution(
        outputs=np.asarray(outs), states=np.asarray(ys), times=out_times,
        n_times=np.array([len(s.out_times) for s in subjects]), status=np.asarray(status), fail_time=np.asarray(fail_t),
    )
