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
from ._events import EventBatch, SubjectEvents
from ..solver_options import DEFAULT_SOLVER_OPTIONS, SolverOptions
from ._jax import batch_function, resolve_batching

__all__ = ["BatchSolution", "BatchSolver", "solve_subjects", "record_covariates"]


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


class BatchSolver:
    """The one way to solve a batch of subjects: a model's equations, its :class:`SolverOptions`,
    and the compiled solve of an :class:`~il2pkpd.solve.EventBatch`.

    Parameters
    ----------
    compiled
        The model's JAX functions (``model.compiled``).
    options
        Solver settings, batching included (default ``DEFAULT_SOLVER_OPTIONS["simulate"]``).
    reduce
        Optional JAX function of one subject's output times (O,), outputs (O, n_outputs) and
        breaks (O,) (True where a bolus, reset, steady state or input-rate change happened
        since the previous output time, i.e. the trajectory is not smooth over (t[k-1], t[k]]),
        applied inside the compiled call, so that trajectories never leave it (sweep metrics).
    differentiation
        ``"reverse"`` (default) or ``"forward"``: a solve JAX differentiates in forward mode
        (nested ``jvp``: sensitivities and second derivatives for FOCE/Laplace estimation);
        it needs the Rodas4 loop (:attr:`SolverOptions.single_loop`).

    Notes
    -----
    Calling the solver (``solver(batch, theta, cov)``, jitted, JAX arrays in and out; theta
    (B, P) individual parameters and cov (B, C) covariates in declared units) returns
    ``(outputs (B, O, n_outputs), states (B, O, n_states), status (B,), fail_time (B,))``,
    or ``(reduce(...) (B, ...), status, fail_time)`` with ``reduce``. :meth:`solve` takes
    NumPy arrays, runs the batch in chunks on every core and returns a :class:`BatchSolution`.

    With batching ``"map"`` (CPU) and several host CPU devices (``IL2PKPD_CPU_DEVICES``) a
    batch solved by the Rodas4 loop is split over them.
    """

    def __init__(self, compiled, options: SolverOptions | None = None, *, reduce=None, differentiation: str = "reverse"):
        self.compiled = compiled
        self.options = options or DEFAULT_SOLVER_OPTIONS["simulate"]
        self._fn = batch_function(compiled, self.options, reduce=reduce, differentiation=differentiation)

    def __call__(self, batch: EventBatch, theta, cov):
        return self._fn(batch, theta, cov)

    def solve(self, batch: EventBatch, theta: np.ndarray, cov: np.ndarray, *, chunk_size: int | None = -1,
              workers: int | None = None) -> BatchSolution:
        """Solve a NumPy batch in chunks and return NumPy results.

        Parameters
        ----------
        batch
            The subjects' events (:meth:`EventBatch.stack`).
        theta, cov
            (B, P) individual parameters and (B, C) covariates, declared units.
        chunk_size, workers
            Subjects per compiled call (``None``: all in one call) and threads running calls
            concurrently; the default (-1) picks :func:`default_batching` for the backend.
            Results do not depend on the split.
        """
        n = len(batch)
        if chunk_size == -1:
            _, chunk_size, default_workers = default_batching(self.options.batching)
            workers = workers or default_workers
        chunk = n if not chunk_size else min(chunk_size, n)

        def run(i: int):
            sl = slice(i, min(i + chunk, n))
            pad = chunk - (sl.stop - sl.start)  # keep one shape per chunk: one compilation

            def take(a):
                a = a[sl]
                return jnp.asarray(np.concatenate([a, np.repeat(a[-1:], pad, axis=0)]) if pad else a)

            res = self._fn(batch.map(take), take(theta), take(cov))
            return [np.asarray(r)[: chunk - pad] for r in res]

        starts = list(range(0, n, chunk))
        if len(starts) > 1 and (workers or 1) > 1:
            with ThreadPoolExecutor(workers) as pool:
                parts = list(pool.map(run, starts))
        else:
            parts = [run(i) for i in starts]
        outs, ys, status, fail_t = (np.concatenate([p[j] for p in parts]) for j in range(4))
        return BatchSolution(outputs=outs, states=ys, times=np.asarray(batch.out_times), n_times=np.asarray(batch.n_times),
                             status=np.asarray(status), fail_time=np.asarray(fail_t))


@lru_cache(maxsize=32)
def _shared_solver(compiled, options: SolverOptions) -> BatchSolver:
    """One solver per (model, settings) for :func:`solve_subjects`: its compiled programs
    are reused across calls (``simulate()`` in a loop)."""
    return BatchSolver(compiled, options)


#: subjects per compiled call on CPU: enough to make dispatch and the NumPy -> device copy
#: negligible (~1 ms per call), few enough that every core gets several calls
CPU_CHUNK = 32


def default_batching(batching: str = "auto") -> tuple[str, int | None, int]:
    """(batching, chunk size, worker threads) for ``batching`` on the current JAX backend.

    On CPU a vmapped batch advances every event segment until its slowest member is done
    (adaptive steps differ between subjects), so subjects run one after another inside each
    compiled call (``lax.map``), ``CPU_CHUNK`` subjects per call and one call per core at a
    time. On an accelerator the whole batch goes in one vmapped call.
    """
    if resolve_batching(batching) == "map":
        return "map", CPU_CHUNK, max(1, os.cpu_count() or 1)
    return "vmap", None, 1


def solve_subjects(model, subjects: list[SubjectEvents], theta: np.ndarray, cov: np.ndarray, options: SolverOptions | None = None,
                   ev_theta: list[np.ndarray] | None = None, *, rec_cov: list[tuple[np.ndarray, np.ndarray]] | None = None,
                   chunk_size: int | None = -1, workers: int | None = None) -> BatchSolution:
    """Solve subjects (one row of ``theta``/``cov`` each): :meth:`EventBatch.stack` and
    :meth:`BatchSolver.solve` with the model's shared solver for ``options``.

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
        As :meth:`BatchSolver.solve`.
    """
    options = options or DEFAULT_SOLVER_OPTIONS["simulate"]
    n = len(subjects)
    theta = np.asarray(theta, dtype=float)
    cov = np.asarray(cov, dtype=float).reshape(n, -1) if n else np.zeros((0, 0))
    if theta.shape != (n, len(model.parameters)):
        raise ShapeError("`theta` must have one row per subject and one column per parameter", theta.shape, (n, len(model.parameters)))
    if cov.shape != (n, len(model.covariates)):
        raise ShapeError("`cov` must have one row per subject and one column per covariate", cov.shape, (n, len(model.covariates)))
    batch = EventBatch.stack(subjects, record_covariates=rec_cov, n_covariates=cov.shape[1], event_theta=ev_theta, theta=theta)
    return _shared_solver(model.compiled, options).solve(batch, theta, cov, chunk_size=chunk_size, workers=workers)
