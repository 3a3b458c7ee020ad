"""Running a sweep to disk: chunks, atomic Parquet partitions, a manifest, resume, Dask.

Output folder layout::

    OUT/manifest.json                          design, fingerprint, cells (written once, atomically)
    OUT/cells/cell=00003/draws-000000.parquet  one chunk: metrics per (draw, subject)
    OUT/summary.csv                            one row per cell (rewritten atomically at the end)

A chunk is one cell x one block of draws. Each chunk file is written to a temporary name in
the same folder and renamed into place, so a file that exists is complete: rerunning the same
command skips it, and killing the process at any moment loses at most the chunks in flight.
A folder whose manifest holds a different design (or model, or fit) is refused, never mixed.

Workers: ``workers=0`` runs in this process; ``workers>=1`` starts a Dask ``LocalCluster``
of that many single-threaded worker processes (started by spawn, never fork: JAX must not
be forked after it has initialised); ``scheduler="tcp://host:port"`` uses a running cluster.
Every chunk is computed the same way wherever it runs, so the output does not depend on the
number of workers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import OptionError
from .output import atomic_write

__all__ = ["sweep", "prepare_sweep", "run_sweep", "SweepPlan", "SweepResult", "read_sweep"]

_RUNNERS: dict[str, object] = {}  # per process: fingerprint -> CellRunner (one compile per worker)


@dataclass
class SweepResult:
    """A finished sweep: ``summary`` (one row per cell), ``table`` (metrics per cell, draw and
    subject) and where it was written (``out``, ``None`` for an in-memory sweep)."""

    design: object
    summary: object
    table: object
    out: Path | None
    wall_time_s: float
    chunks_run: int
    chunks_skipped: int

    def to_xarray(self):
        """The per-row metrics as an ``xarray.Dataset`` over (cell, draw, subject)."""
        t = self.table.set_index(["cell", "draw", "subject"])
        return t.to_xarray()


def _population(design, model):
    """Population draws (name -> (D,) array) and IIV SDs for the design, with the fit's hash."""
    import hashlib

    if design.fit:
        from .fits import load_fit

        fit = load_fit(design.fit, model=model)
        post = fit.population_draws()
        total = len(next(iter(post.values()))) if post else 0
        if total < design.draws:
            raise OptionError(f"fit {design.fit!r} has {total} posterior draws; the design asks for {design.draws}")
        pick = np.unique(np.linspace(0, total - 1, design.draws).round().astype(int))
        pop = {k: np.asarray(v)[pick] for k, v in post.items() if k in model.parameter_names}
        omegas = {k[len("omega_"):]: float(np.median(v)) for k, v in post.items() if k.startswith("omega_")}
        blob = json.dumps({k: np.asarray(v).tolist() for k, v in sorted(pop.items())}).encode()
        return pop, omegas, hashlib.sha256(blob).hexdigest()
    if design.prior:
        from ..inference.priors import prior_draws

        est = [p for p in model.parameters if p.prior is not None and not p.fixed]
        x = prior_draws(est, design.draws, np.random.default_rng([design.seed, 104729]))
        return {p.name: x[:, i] for i, p in enumerate(est)}, {}, "prior"
    return {}, {}, ""


def _chunks(design, chunk_draws: int) -> list[tuple[int, int, int]]:
    """(cell index, first draw, last draw + 1) of every chunk."""
    return [(c.index, a, min(a + chunk_draws, design.draws)) for c in design.cells() for a in range(0, design.draws, chunk_draws)]


def _chunk_path(out: Path, cell: int, first: int) -> Path:
    return out / "cells" / f"cell={cell:05d}" / f"draws-{first:06d}.parquet"


def _run_chunk(payload: dict, cell_index: int, first: int, stop: int, out: str | None, chunk_draws: int):
    """Compute one chunk (in this process or a Dask worker) and write it; returns the table
    when ``out`` is None. The draw block is padded to ``chunk_draws`` so that every chunk has
    the same shape (one compiled program)."""
    import pandas as pd

    from ..design.sweep import CellRunner
    from ..design.sweep_design import SweepDesign
    from .model_file import load_model

    fp = payload["fingerprint"]
    runner = _RUNNERS.get(fp)
    if runner is None:
        design = SweepDesign.from_dict(payload["design"])
        model = load_model(design.model)
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
    if out is None:
        table.insert(0, "cell", cell_index)
        return table
    path = _chunk_path(Path(out), cell_index, first)
    atomic_write(path, lambda p: table.to_parquet(p, index=False))
    return int((table["status"] != 0).sum())


def _manifest(design, fingerprint: str, model_hash: str, fit_hash: str) -> dict:
    return {"il2pkpd_version": __version__, "fingerprint": fingerprint, "model_hash": model_hash, "fit_hash": fit_hash,
            "design": design.to_dict(), "cells": [{"cell": c.index, "regimen": c.regimen_label, "regimen_text": c.regimen,
                                                    "params": dict(c.params)} for c in design.cells()],
            "layout": "cells/cell=<5-digit cell>/draws-<6-digit first draw>.parquet; columns draw, subject, status, metrics"}


def _check_folder(out: Path, manifest: dict) -> None:
    path = out / "manifest.json"
    if path.is_file():
        old = json.loads(path.read_text())
        if old.get("fingerprint") != manifest["fingerprint"]:
            new = json.loads(json.dumps(manifest["design"]))  # tuples -> lists, as stored
            diff = sorted(k for k in new if old.get("design", {}).get(k) != new[k])
            what = f"design keys {diff}" if diff else ("the model file" if old.get("model_hash") != manifest["model_hash"] else "the fit's draws")
            raise OptionError(f"output folder {str(out)!r} holds a different sweep (changed: {what}); "
                              "refusing to mix them: choose another --out or delete the folder")
    elif out.exists() and any(out.iterdir()):
        raise OptionError(f"output folder {str(out)!r} exists, is not empty and has no sweep manifest; choose another --out")
    else:
        atomic_write(path, lambda p: p.write_text(json.dumps(manifest, indent=1)))
    for stale in out.glob("cells/*/.*.tmp"):  # left by a killed run: never complete, never read
        stale.unlink(missing_ok=True)


def read_sweep(out: str | Path):
    """All finished chunks of a sweep folder as one DataFrame (cell, draw, subject, metrics)."""
    import pandas as pd

    out = Path(out)
    parts = []
    for f in sorted(out.glob("cells/cell=*/draws-*.parquet")):
        t = pd.read_parquet(f)
        t.insert(0, "cell", int(f.parent.name.split("=")[1]))
        parts.append(t)
    if not parts:
        raise OptionError(f"{str(out)!r} holds no finished sweep chunks")
    return pd.concat(parts, ignore_index=True).sort_values(["cell", "draw", "subject"], kind="stable").reset_index(drop=True)


@dataclass
class SweepPlan:
    """A validated sweep, ready to run (:func:`prepare_sweep`): nothing has been computed,
    and only the manifest of a new output folder has been written."""

    design: object
    model: object
    out: Path | None
    payload: dict
    chunks: list
    todo: list
    chunk_draws: int
    workers: int
    scheduler: str | None


def prepare_sweep(design, out: str | Path | None = None, *, workers: int = 0, scheduler: str | None = None,
                  chunk_draws: int | None = None) -> SweepPlan:
    """Validate a sweep (design, metrics, regimens, parameters, fit, output folder) and list
    the chunks still to run. Every error is raised here, before any work or progress display."""
    from ..design.sweep import CellRunner
    from ..design.sweep_design import SweepDesign, design_from_toml
    from ..model import model_hash
    from .model_file import load_model

    if isinstance(design, (str, Path)):
        design = design_from_toml(design)
    if not isinstance(design, SweepDesign):
        raise OptionError(f"`design` must be a SweepDesign or a TOML file path, got {type(design).__name__}")
    if int(workers) != workers or workers < 0:
        raise OptionError(f"`workers` must be an integer >= 0, got {workers!r}")
    model = load_model(design.model)
    n_sub = max(1, design.subjects)
    chunk_draws = int(chunk_draws or max(1, min(design.draws, 4096 // n_sub)))
    if chunk_draws < 1:
        raise OptionError(f"`chunk_draws` must be >= 1, got {chunk_draws!r}")
    pop, omegas, fit_hash = _population(design, model)
    mhash = model_hash(model)
    fingerprint = design.fingerprint(mhash, fit_hash)
    runner = CellRunner(design, model, pop, omegas)  # validates metrics, regimens and parameters (compiles nothing)
    payload = {"fingerprint": f"{fingerprint}-{chunk_draws}", "design": design.to_dict(),
               "population": {k: np.asarray(v).tolist() for k, v in pop.items()}, "omegas": omegas}
    _RUNNERS.clear()
    _RUNNERS[payload["fingerprint"]] = runner  # chunks run in this process reuse it (Dask workers build their own)
    chunks = _chunks(design, chunk_draws)
    out_path = Path(out) if out is not None else None
    if out_path is not None:
        _check_folder(out_path, _manifest(design, fingerprint, mhash, fit_hash))
        todo = [c for c in chunks if not _chunk_path(out_path, c[0], c[1]).is_file()]
    else:
        todo = list(chunks)
    return SweepPlan(design, model, out_path, payload, chunks, todo, chunk_draws, int(workers), scheduler)


def run_sweep(plan: SweepPlan, progress: Callable[[int, int, int], None] | None = None) -> SweepResult:
    """Run the chunks of a prepared sweep, then read and summarise the whole output."""
    import pandas as pd

    from ..design.sweep import summarise

    t0 = time.perf_counter()
    out_path, todo, chunks = plan.out, plan.todo, plan.chunks
    skipped = len(chunks) - len(todo)
    say = progress or (lambda done, total, skip: None)
    say(skipped, len(chunks), skipped)
    tables = []
    target = str(out_path) if out_path is not None else None
    if plan.scheduler is None and plan.workers == 0:
        for k, (cell, a, b) in enumerate(todo, start=1):
            res = _run_chunk(plan.payload, cell, a, b, target, plan.chunk_draws)
            if out_path is None:
                tables.append(res)
            say(skipped + k, len(chunks), skipped)
    elif todo:
        tables = _run_dask(plan.payload, todo, out_path, plan.chunk_draws, plan.workers, plan.scheduler,
                           lambda k: say(skipped + k, len(chunks), skipped))
    table = read_sweep(out_path) if out_path is not None else pd.concat(tables, ignore_index=True)
    summary = summarise(table, plan.design, plan.model)
    if out_path is not None:
        atomic_write(out_path / "summary.csv", lambda p: summary.to_csv(p, index=False))
    return SweepResult(plan.design, summary, table, out_path, time.perf_counter() - t0, len(todo), skipped)


def sweep(design, out: str | Path | None = None, *, workers: int = 0, scheduler: str | None = None, chunk_draws: int | None = None,
          progress: Callable[[int, int, int], None] | None = None) -> SweepResult:
    """Run a sweep (see :class:`~il2pkpd.design.SweepDesign`) and return its summary and table.

    Parameters
    ----------
    design
        The design (a :class:`SweepDesign`, or a path to a TOML design file).
    out
        Output folder (Parquet chunks, manifest, summary.csv); ``None`` keeps everything in
        memory (no resume). Rerunning into the same folder skips finished chunks.
    workers
        0: run in this process; N >= 1: a Dask LocalCluster with N worker processes.
    scheduler
        Address of a running Dask scheduler (overrides ``workers``).
    chunk_draws
        Draws per chunk (default: up to 4,096 solves per chunk).
    progress
        Called as ``progress(done, total, skipped)`` after every chunk.

    Returns
    -------
    SweepResult
        ``summary`` (one row per cell: metric means and 5/50/95% quantiles over draws and
        subjects, hazard ratios over draws, target probabilities, failed solves), ``table``
        (one row per cell, draw and subject) and ``to_xarray()``.
    """
    return run_sweep(prepare_sweep(design, out, workers=workers, scheduler=scheduler, chunk_draws=chunk_draws), progress)


def _run_dask(payload, todo, out_path, chunk_draws, workers, scheduler, tick):
    import logging

    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:  # pragma: no cover - dask is a declared dependency of the sweep extra
        raise OptionError("workers need Dask: pip install 'il2pkpd[sweep]' (or use --workers 0)") from None
    cluster = None
    if scheduler is not None:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=logging.ERROR, worker_class="distributed.Nanny")
        client = Client(cluster)
    tables = []
    try:
        futures = [client.submit(_run_chunk, payload, cell, a, b, str(out_path) if out_path else None, chunk_draws, pure=False)
                   for cell, a, b in todo]
        for k, fut in enumerate(as_completed(futures), start=1):
            res = fut.result()
            if out_path is None:
                tables.append(res)
            tick(k)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return tables
