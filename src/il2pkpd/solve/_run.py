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
def _solver_for(compiled, options: SolverOptions):
    return make_batch_solver(compiled, options)


def solve_subjects(model, subjects: list[SubjectEvents], theta: np.ndarray, cov: np.ndarray, options: SolverOptions | None = None) -> BatchSolution:
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
    solver = _solver_for(model.compiled, options)
    outs, ys, status, fail_t = solver(
        {k: jnp.asarray(v) for k, v in arrays.items()}, jnp.asarray(ss_pos), jnp.asarray(out_times),
        jnp.asarray(t_start), jnp.asarray(theta), jnp.asarray(cov),
    )
    return BatchSolution(
        outputs=np.asarray(outs), states=np.asarray(ys), times=out_times,
        n_times=np.array([len(s.out_times) for s in subjects]), status=np.asarray(status), fail_time=np.asarray(fail_t),
    )
