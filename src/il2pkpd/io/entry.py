"""The public entry points that take files: ``il2pkpd.simulate`` and ``il2pkpd.sweep`` read
what they are given by name or path, then call the layer that computes (``il2pkpd.fit`` is
:func:`il2pkpd.io.fits.fit`, beside the fits it stores).

Below ``io`` nothing opens a file (ARCHITECTURE.md, "Layers"): :func:`il2pkpd.simulation.simulate`
takes a loaded :class:`~il2pkpd.model.Model`, and :mod:`il2pkpd.design.sweep_run` a design,
model and population draws with a store for its chunks. Here a model name or ``.toml`` path
is loaded (:func:`~il2pkpd.io.model_file.load_model`, which passes a Model through), and a
sweep gets its design file, fit and output folder. The sweep's modules load on first use:
``il2pkpd.simulate`` does not pay for them.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import OptionError
from ..model import Model
from ..simulation import simulate as _simulate
from .model_file import load_model

if TYPE_CHECKING:
    from ..design.sweep_design import SweepDesign
    from ..design.sweep_run import Population, SweepPlan, SweepResult

__all__ = ["simulate", "sweep", "prepare_sweep", "sweep_population"]


def documented_as(core: Callable) -> Callable[[Callable], Callable]:
    """Give an entry point ``core``'s docstring and signature (one description of every
    argument, which says what the entry point adds), with ``model`` widened to a name or path."""
    sig = inspect.signature(core)
    params = [p.replace(annotation="Model | str | Path") if p.name == "model" else p for p in sig.parameters.values()]

    def decorate(entry: Callable) -> Callable:
        functools.update_wrapper(entry, core, assigned=("__doc__",))
        entry.__signature__ = sig.replace(parameters=params)
        return entry

    return decorate


@documented_as(_simulate)
def simulate(model: Model | str | Path, *args: Any, **kwargs: Any):
    return _simulate(load_model(model), *args, **kwargs)


def sweep_population(design: SweepDesign, model: Model) -> Population:
    """The population draws ``design`` asks for: ``draws`` evenly spaced draws of its stored
    ``fit`` (:func:`~il2pkpd.design.sweep_run.select_draws`), ``draws`` draws of the model
    file's priors (``prior``), or none (typical values)."""
    from ..design.sweep_run import Population, select_draws

    if design.fit:
        from .fits import load_fit

        posterior = load_fit(design.fit, model=model).population_draws()
        return select_draws(posterior, design.draws, model, source=f"fit {design.fit!r}")
    if design.prior:
        from ..inference.priors import prior_draws

        est = [p for p in model.parameters if p.prior is not None and not p.fixed]
        x = prior_draws(est, design.draws, np.random.default_rng([design.seed, 104729]))
        return Population({p.name: x[:, i] for i, p in enumerate(est)}, {}, "prior")
    return Population({}, {}, "")


def prepare_sweep(design: SweepDesign | str | Path, out: str | Path | None = None, *, workers: int = 0,
                  scheduler: str | None = None, chunk_draws: int | None = None) -> SweepPlan:
    """Read what a sweep names (design file, model, fit), claim its output folder and list the
    chunks still to run (:func:`~il2pkpd.design.sweep_run.plan_sweep`); arguments as in
    :func:`sweep`. Every error is raised here, before any work or progress display."""
    from ..design.sweep_design import SweepDesign, design_from_toml
    from ..design.sweep_run import plan_sweep
    from .sweep_store import SweepFolder

    if isinstance(design, (str, Path)):
        design = design_from_toml(design)
    if not isinstance(design, SweepDesign):
        raise OptionError(f"`design` must be a SweepDesign or a TOML file path, got {type(design).__name__}")
    model = load_model(design.model)
    store = SweepFolder(Path(out)) if out is not None else None
    return plan_sweep(design, model, sweep_population(design, model), load_model=load_model, store=store, workers=workers,
                      scheduler=scheduler, chunk_draws=chunk_draws)


def sweep(design: SweepDesign | str | Path, out: str | Path | None = None, *, workers: int = 0, scheduler: str | None = None,
          chunk_draws: int | None = None, progress: Callable[[int, int, int], None] | None = None) -> SweepResult:
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
    from ..design.sweep_run import run_sweep

    return run_sweep(prepare_sweep(design, out, workers=workers, scheduler=scheduler, chunk_draws=chunk_draws), progress)
