"""Running a sweep: chunks of draws, in this process or on a Dask cluster, then the summary.

A chunk is one cell x one block of draws (:func:`chunks`). :func:`plan_sweep` validates a
design against a model and its population draws and lists the chunks still to run;
:func:`run_sweep` runs them and summarises the whole table.

Workers: ``workers=0`` runs in this process; ``workers>=1`` starts a Dask ``LocalCluster``
of that many single-threaded worker processes (started by spawn, never fork: JAX must not
be forked after it has initialised); ``scheduler="tcp://host:port"`` uses a running cluster.
Every chunk is computed the same way wherever it runs, so the output does not depend on the
number of workers.

Files are the caller's business (ARCHITECTURE.md: ``io`` makes every file contact): where
chunks go is a :class:`ChunkStore` (:class:`il2pkpd.io.sweep_store.SweepFolder` writes
Parquet partitions and a manifest; ``None`` keeps the sweep in memory), and how a worker
process gets the model is a ``load_model`` callable. :func:`il2pkpd.sweep` wires both.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np

from ..errors import OptionError
from ..model import Model, model_hash
from .metrics import DEFAULT_DOSE_OFFSETS
from .sweep import CellRunner, summarise
from .sweep_design import SweepDesign

__all__ = ["ChunkStore", "Population", "SweepPlan", "SweepResult", "chunks", "plan_sweep", "run_sweep", "select_draws"]

_RUNNERS: dict[str, CellRunner] = {}  # per process: fingerprint -> CellRunner (one compile per worker)


class ChunkStore(Protocol):
    """Where a sweep's finished chunks go (and come back from), so that a rerun resumes.

    It is pickled to Dask workers, so it must hold plain data (a path), not open files."""

    path: Path

    def claim(self, design: SweepDesign, fingerprint: str, model_hash: str, fit_hash: str, dose_offsets=None) -> None:
        """Take the store for this sweep: raise when it holds a different one."""

    def has_chunk(self, cell: int, first: int) -> bool:
        """Whether the chunk of ``cell`` starting at draw ``first`` is finished."""

    def write_chunk(self, cell: int, first: int, table: Any) -> None:
        """Store one finished chunk (a DataFrame: draw, subject, status, metrics)."""

    def read(self) -> Any:
        """Every finished chunk as one DataFrame (cell, draw, subject, metrics)."""

    def write_summary(self, summary: Any) -> None:
        """Store the summary (one row per cell)."""


class Population(NamedTuple):
    """Population draws of a sweep: parameter name -> (D,) values, IIV SDs by parameter, and
    a hash of the draws' source (a fit's draws, ``"prior"``, or ``""`` for typical values)."""

    draws: dict[str, np.ndarray]
    omegas: dict[str, float]
    source_hash: str


@dataclass
class SweepResult:
    """A finished sweep: ``summary`` (one row per cell), ``table`` (metrics per cell, draw and
    subject) and where it was written (``out``, ``None`` for an in-memory sweep)."""

    design: SweepDesign
    summary: Any
    table: Any
    out: Path | None
    wall_time_s: float
    chunks_run: int
    chunks_skipped: int

    def to_xarray(self):
        """The per-row metrics as an ``xarray.Dataset`` over (cell, draw, subject)."""
        t = self.table.set_index(["cell", "draw", "subject"])
        return t.to_xarray()


@dataclass
class SweepPlan:
    """A validated sweep, ready to run (:func:`plan_sweep`): nothing has been computed, and
    the store (if any) has only been claimed."""

    design: SweepDesign
    model: Model
    store: ChunkStore | None
    payload: dict
    chunks: list[tuple[int, int, int]]
    todo: list[tuple[int, int, int]]
    chunk_draws: int
    workers: int
    scheduler: str | None


def select_draws(posterior: Mapping[str, Sequence[float]], n: int, model: Model, *, source: str) -> Population:
    """``n`` population draws evenly spaced over a posterior (chains x draws flattened).

    Parameters
    ----------
    posterior
        Name -> draws, as :meth:`il2pkpd.inference.Fit.population_draws` gives them.
    n
        Draws wanted.
    model
        The model: draws of names that are not its parameters are dropped.
    source
        What the draws are, for messages (``"fit 'ivory-published'"``).

    Returns
    -------
    Population
        The picked draws, each ``omega_<name>`` as its posterior median, and the SHA-256 of
        the picked draws (a changed fit then changes the sweep's fingerprint).
    """
    total = len(next(iter(posterior.values()))) if posterior else 0
    if total < n:
        raise OptionError(f"{source} has {total} posterior draws; the design asks for {n}")
    pick = np.unique(np.linspace(0, total - 1, n).round().astype(int))
    draws = {k: np.asarray(v)[pick] for k, v in posterior.items() if k in model.parameter_names}
    omegas = {k[len("omega_"):]: float(np.median(v)) for k, v in posterior.items() if k.startswith("omega_")}
    blob = json.dumps({k: np.asarray(v).tolist() for k, v in sorted(draws.items())}).encode()
    return Population(draws, omegas, hashlib.sha256(blob).hexdigest())


def chunks(design: SweepDesign, chunk_draws: int) -> list[tuple[int, int, int]]:
    """(cell index, first draw, last draw + 1) of every chunk."""
    return [(c.index, a, min(a + chunk_draws, design.draws)) for c in design.cells() for a in range(0, design.draws, chunk_draws)]


def plan_sweep(design: SweepDesign, model: Model, population: Population, *, load_model: Callable[[str], Model],
               store: ChunkStore | None = None, workers: int = 0, scheduler: str | None = None,
               chunk_draws: int | None = None) -> SweepPlan:
    """Validate a sweep (metrics, regimens, parameters, workers, store) and list the chunks
    still to run. Every error is raised here, before any work or progress display.

    Parameters
    ----------
    design, model, population
        What to run: the design, its model, and the population draws
        (:func:`select_draws`, prior draws, or none for typical values).
    load_model
        Gives a worker process the model from ``design.model`` (Dask workers build their
        own runner; a Model holding compiled JAX functions does not travel).
    store
        Where chunks go (:class:`ChunkStore`); ``None`` keeps everything in memory (no resume).
    workers, scheduler
        0: run in this process; N >= 1: a Dask LocalCluster with N worker processes; or the
        address of a running Dask scheduler (overrides ``workers``).
    chunk_draws
        Draws per chunk (default: up to 4,096 solves per chunk).
    """
    if int(workers) != workers or workers < 0:
        raise OptionError(f"`workers` must be an integer >= 0, got {workers!r}")
    n_sub = max(1, design.subjects)
    chunk_draws = int(chunk_draws or max(1, min(design.draws, 4096 // n_sub)))
    if chunk_draws < 1:
        raise OptionError(f"`chunk_draws` must be >= 1, got {chunk_draws!r}")
    mhash = model_hash(model)
    fingerprint = design.fingerprint(mhash, population.source_hash, DEFAULT_DOSE_OFFSETS)
    runner = CellRunner(design, model, population.draws, population.omegas)  # validates metrics, regimens and parameters (compiles nothing)
    payload = {"fingerprint": f"{fingerprint}-{chunk_draws}", "design": design.to_dict(), "load_model": load_model,
               "population": {k: np.asarray(v).tolist() for k, v in population.draws.items()}, "omegas": population.omegas}
    _RUNNERS.clear()
    _RUNNERS[payload["fingerprint"]] = runner  # chunks run in this process reuse it (Dask workers build their own)
    every = chunks(design, chunk_draws)
    if store is not None:
        store.claim(design, fingerprint, mhash, population.source_hash, DEFAULT_DOSE_OFFSETS)
    todo = [c for c in every if store is None or not store.has_chunk(c[0], c[1])]
    return SweepPlan(design, model, store, payload, every, todo, chunk_draws, int(workers), scheduler)


def _run_chunk(payload: dict, cell_index: int, first: int, stop: int, store: ChunkStore | None, chunk_draws: int):
    """Compute one chunk (in this process or a Dask worker) and store it: returns the table
    when ``store`` is None, else the number of failed solves. The draw block is padded to
    ``chunk_draws`` so that every chunk has the same shape (one compiled program)."""
    import pandas as pd

    fp = payload["fingerprint"]
    runner = _RUNNERS.get(fp)
    if runner is None:
        design = SweepDesign.from_dict(payload["design"])
        model = payload["load_model"](design.model)
        pop = {k: np.asarray(v) for k, v in payload["population"].items()}
        runner = CellRunner(design, model, pop, payload["omegas"])
        _RUNNERS.clear()
        _RUNNERS[fp] = runner
    cell = runner.cells[cell_index]
    draws = np.arange(first, stop)
    padded = np.concatenate([draws, np.full(chunk_draws - len(draws), draws[-1])]) if len(draws) < chunk_draws else draws
    cols = runner.run(cell, padded)
    n_sub = max(1, runner.design.subjects)
    keep = len(draws) * n_sub
    table = pd.DataFrame({k: v[:keep] for k, v in cols.items()})
    if store is None:
        table.insert(0, "cell", cell_index)
        return table
    store.write_chunk(cell_index, first, table)
    return int((table["status"] != 0).sum())


def run_sweep(plan: SweepPlan, progress: Callable[[int, int, int], None] | None = None) -> SweepResult:
    """Run the chunks of a planned sweep, then read and summarise the whole output.

    ``progress`` is called as ``progress(done, total, skipped)`` after every chunk."""
    import pandas as pd

    t0 = time.perf_counter()
    store, todo, every = plan.store, plan.todo, plan.chunks
    skipped = len(every) - len(todo)
    say = progress or (lambda done, total, skip: None)
    say(skipped, len(every), skipped)
    tables = []
    if plan.scheduler is None and plan.workers == 0:
        for k, (cell, a, b) in enumerate(todo, start=1):
            res = _run_chunk(plan.payload, cell, a, b, store, plan.chunk_draws)
            if store is None:
                tables.append(res)
            say(skipped + k, len(every), skipped)
    elif todo:
        results = run_on_dask(_run_chunk, [(plan.payload, cell, a, b, store, plan.chunk_draws) for cell, a, b in todo], plan.workers,
                              plan.scheduler, lambda k: say(skipped + k, len(every), skipped))
        tables = results if store is None else []
    table = store.read() if store is not None else pd.concat(tables, ignore_index=True)
    summary = summarise(table, plan.design, plan.model)
    if store is not None:
        store.write_summary(summary)
    return SweepResult(plan.design, summary, table, store.path if store is not None else None, time.perf_counter() - t0,
                       len(todo), skipped)


def run_on_dask(task: Callable, jobs: list[tuple], workers: int, scheduler: str | None, tick: Callable[[int], None]) -> list:
    """``task(*job)`` for every job on a Dask LocalCluster of ``workers`` single-threaded
    processes (or the running ``scheduler``), in completion order; ``tick(k)`` after the k-th.
    ``task`` must be a module-level function and the jobs plain data (they are pickled)."""
    import logging

    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:  # pragma: no cover - dask is a declared dependency of the sweep extra
        raise OptionError("workers need Dask: pip install 'il2pkpd[sweep]' (or use --workers 0)") from None
    cluster = None
    if scheduler is not None:
        client = Client(scheduler)
    else:
        # the HTTP server on a free local port: `dashboard_address=None` still takes 8787 and,
        # when another cluster holds it, warns and moves (a second sweep or power run at once)
        cluster = LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0",
                               silence_logs=logging.ERROR, worker_class="distributed.Nanny")
        client = Client(cluster)
    results = []
    try:
        futures = [client.submit(task, *job, pure=False) for job in jobs]
        for k, fut in enumerate(as_completed(futures), start=1):
            results.append(fut.result())
            tick(k)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return results
