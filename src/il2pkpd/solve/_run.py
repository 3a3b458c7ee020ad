"""Run the batch solver on NumPy inputs and return NumPy results."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import jax.numpy as jnp
import numpy as np

from ..dosing import Records
from ..errors import ShapeError
from ._events import SubjectEvents, stack_events
from ..solver_options import DEFAULT_SOLVER_OPTIONS, SolverOptions
from ._jax import make_batch_solver, resolve_batching

__all__ = ["BatchSolution", "solve_subjects", "record_covariates", "stack_record_covariates"]


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


def record_covariates(subjects: Sequence[Records], cov: np.ndarray, row_cov: Mapping[int, np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per-subject (record times, covariates at each record) for time-varying covariates.

    Parameters
    ----------
    subjects
        One :class:`~il2pkpd.dosing.Records` per subject (each record's ``row`` indexes the
        dataset).
    cov
        (n_subjects, n_covariates) values of covariates that do not change within a subject.
    row_cov
        Covariate index -> values per dataset row, for those that change.

    Notes
    -----
    The solver applies them by NONMEM's rule ("next observation carried backward",
    mrgsolve's ``nocb``): the value on a record holds over the interval from the previous
    record up to and including that record's time; after the last record its value stays.
    """
    out = []
    for i, recs in enumerate(subjects):
        rows = np.array([r.row for r in recs])
        values = np.tile(np.asarray(cov[i], dtype=float), (len(recs), 1))
        for j, vals in row_cov.items():
            values[:, j] = np.asarray(vals, dtype=float)[rows]
        out.append((np.array([r.time for r in recs], dtype=float), values))
    return out


def stack_record_covariates(rec_cov: Sequence[tuple[np.ndarray, np.ndarray]], n_cov: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad :func:`record_covariates` to (B, R) times and (B, R, C) values for the solver:
    padding repeats the last record (its value stays)."""
    n, n_rec = len(rec_cov), max(len(t) for t, _ in rec_cov)
    rt = np.empty((n, n_rec))
    rc = np.empty((n, n_rec, n_cov))
    for i, (t, c) in enumerate(rec_cov):
        rt[i, : len(t)], rt[i, len(t):] = t, t[-1]
        rc[i, : len(t)], rc[i, len(t):] = c, c[-1]
    return rt, rc


@lru_cache(maxsize=32)
def _solver_for(compiled, options: SolverOptions, per_event_theta: bool, time_varying_cov: bool, batching: str):
    return make_batch_solver(compiled, options, per_event_theta, time_varying_cov, batching=batching)


#: subjects per compiled call on CPU: enough to make dispatch and the NumPy -> device copy
#: negligible (~1 ms per call), few enough that every core gets several calls
CPU_CHUNK = 32


def default_batching() -> tuple[str, int | None, int]:
    """(batching, chunk size, worker threads) for the current JAX backend.

    On CPU a vmapped batch advances every event segment until its slowest member is done
    (adaptive steps differ between subjects), so subjects run one after another inside each
    compiled call (``lax.map``), ``CPU_CHUNK`` subjects per call and one call per core at a
    time. On an accelerator the whole batch goes in one vmapped call.
    """
    if resolve_batching() == "map":
        return "map", CPU_CHUNK, max(1, os.cpu_count() or 1)
    return "vmap", None, 1


def solve_subjects(model, subjects: list[SubjectEvents], theta: np.ndarray, cov: np.ndarray, options: SolverOptions | None = None,
                   ev_theta: list[np.ndarray] | None = None, *, rec_cov: list[tuple[np.ndarray, np.ndarray]] | None = None,
                   chunk_size: int | None = -1, workers: int | None = None) -> BatchSolution:
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
    rec_cov
        Optional per-subject (record times, covariates per record): time-varying covariates,
        applied as "next observation carried backward" (NONMEM).
    chunk_size, workers
        Subjects per compiled call (``None``: all in one call) and threads running calls
        concurrently; the default (-1) picks :func:`default_batching` for the backend.
        Results do not depend on the split.
    """
    options = options or DEFAULT_SOLVER_OPTIONS["simulate"]
    n = len(subjects)
    theta = np.asarray(theta, dtype=float)
    cov = np.asarray(cov, dtype=float).reshape(n, -1) if n else np.zeros((0, 0))
    if theta.shape != (n, len(model.parameters)):
        raise ShapeError("`theta` must have one row per subject and one column per parameter", theta.shape, (n, len(model.parameters)))
    if cov.shape != (n, len(model.covariates)):
        raise ShapeError("`cov` must have one row per subject and one column per covariate", cov.shape, (n, len(model.covariates)))
    arrays, ss_pos, out_times, t_start = stack_events(subjects)
    batching, default_chunk, default_workers = default_batching()
    if chunk_size == -1:
        chunk_size, workers = default_chunk, workers or default_workers
    solver = _solver_for(model.compiled, options, ev_theta is not None, rec_cov is not None, batching)
    ev = dict(arrays)
    if rec_cov is not None:
        ev["rec_time"], ev["rec_cov"] = stack_record_covariates(rec_cov, cov.shape[1])
    if ev_theta is not None:
        n_ev = arrays["kind"].shape[1]
        padded = np.empty((n, n_ev, theta.shape[1]))
        for i, et in enumerate(ev_theta):
            padded[i, : len(et)] = et
            padded[i, len(et):] = theta[i]
        ev["theta"] = padded
    chunk = n if not chunk_size else min(chunk_size, n)
    starts = list(range(0, n, chunk))

    def run(i: int):
        sl = slice(i, min(i + chunk, n))
        pad = chunk - (sl.stop - sl.start)  # keep one shape per chunk: one compilation

        def take(a):
            a = a[sl]
            return jnp.asarray(np.concatenate([a, np.repeat(a[-1:], pad, axis=0)]) if pad else a)

        res = solver({k: take(v) for k, v in ev.items()}, take(ss_pos), take(out_times), take(t_start), take(theta), take(cov))
        return [np.asarray(r)[: chunk - pad] for r in res]

    if len(starts) > 1 and (workers or 1) > 1:
        with ThreadPoolExecutor(workers) as pool:
            parts = list(pool.map(run, starts))
    else:
        parts = [run(i) for i in starts]
    outs, ys, status, fail_t = (np.concatenate([p[j] for p in parts]) for j in range(4))
    return BatchSolution(
        outputs=outs, states=ys, times=out_times,
        n_times=np.array([len(s.out_times) for s in subjects]), status=np.asarray(status), fail_time=np.asarray(fail_t),
    )
