"""Sweep benchmark: 20 regimens x 1,000 population draws x one year of the IVORY model.

    .venv/bin/python benchmarks/bench_sweep.py            # ~10 min on 2 cores
    .venv/bin/python benchmarks/bench_sweep.py --draws 100 --scipy-sample 5   # quick

Regimens: 0.3, 0.5, 1, 1.5, 2 MIU s.c., daily induction x5, then every 1, 2, 3 or 7 days to
week 8 (`il2pkpd sweep --dose ... --interval ... --induction 5 --duration 8w`). Population
draws from fits/ivory-published when it holds enough draws, otherwise from the model file's
priors; one
typical subject per draw. Metrics: the IVORY default set (Cmax/AUC of IL-2, Treg peak and
time to peak, time above +30% Tregs, NK peak, CD25 (the run below: change at day 60; now the peak) and TBR change at day 60, MI risk at one
year and its hazard ratio vs no treatment, which adds a 21st, untreated arm).

Reported: compile time (first chunk minus a warm chunk), run time, solves per second, for
0 workers (in process) and Dask LocalClusters of 1 and 2 workers; and the same metrics by a
loop of SciPy LSODA solves (il2pkpd.solve.solve_scipy on the same output grid), timed on a
sample and extrapolated. Results: benchmarks/results/sweep-*.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

import il2pkpd
from il2pkpd.design.sweep_design import IVORY_DEFAULT_METRICS, SweepDesign, regimens_from_flags
from il2pkpd.io.output import atomic_write


def design(draws: int, fit: str | None) -> SweepDesign:
    regs = regimens_from_flags([0.3, 0.5, 1.0, 1.5, 2.0], "MIU", ["1d", "2d", "3d", "7d"], induction=5, duration="8w")
    return SweepDesign("ivory", tuple(regs), metrics=IVORY_DEFAULT_METRICS, horizon=365.0, draws=draws, subjects=0,
                       fit=fit, prior=fit is None, solver="rodas4")


def timed_sweep(d: SweepDesign, workers: int) -> dict:
    out = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    stamps = []
    try:
        t0 = time.perf_counter()
        res = il2pkpd.sweep(d, out / "s", workers=workers, progress=lambda done, total, skip: stamps.append((done, time.perf_counter())))
        wall = time.perf_counter() - t0
    finally:
        shutil.rmtree(out, ignore_errors=True)
    times = [t for done, t in stamps if done > 0]
    chunk_times = np.diff([stamps[0][1]] + times)
    n_chunks = len(times)
    warm = float(np.median(chunk_times[1:])) if n_chunks > 1 else float("nan")
    compile_s = float(chunk_times[0] - warm) if workers == 0 else float("nan")
    solves = len(res.table)
    return {"workers": workers, "wall_s": wall, "chunks": n_chunks, "solves": solves, "failed": int((res.table["status"] != 0).sum()),
            "first_chunk_s": float(chunk_times[0]), "warm_chunk_s": warm, "compile_s": compile_s,
            "solves_per_s_after_compile": solves / (wall - (compile_s if workers == 0 else 0.0)), "summary": res.summary,
            "table": res.table}


def dose_breaks(model, doses, theta, cov, grid) -> np.ndarray:
    """(T,) True where a dose enters in (grid[k-1], grid[k]] at its actual time (record time +
    the state's lag time): the sweep's rule for where a peak is not refined by a parabola."""
    _, lag, _, _ = (np.asarray(a) for a in model.compiled.dose(theta, cov))
    times = [t + lag[model.state_for_cmt(r.cmt)] for r in doses if r.is_dose for t in r.time + r.ii * np.arange(r.addl + 1)]
    brk = np.zeros(len(grid), dtype=bool)
    for t in times:
        k = int(np.searchsorted(grid, t, side="left"))  # first grid time >= t
        if k < len(grid):
            brk[k] = True
    return brk


def scipy_sample(d: SweepDesign, n: int, seed: int = 0) -> dict:
    """Metrics by SciPy LSODA for n random (regimen, draw) pairs; the same grid and metrics,
    with the same rule for breaks (no parabola through a sample interval a dose enters)."""
    import jax.numpy as jnp

    from il2pkpd.design.sweep import CellRunner
    from il2pkpd.io.entry import sweep_population
    from il2pkpd.solve import solve_scipy

    model = il2pkpd.load_model(d.model)
    pop, omegas, _ = sweep_population(d, model)
    runner = CellRunner(d, model, pop, omegas)
    from il2pkpd.design.metrics import MetricEvaluator

    evaluate = MetricEvaluator(runner.metrics, model)
    cells = d.cells()
    rng = np.random.default_rng(seed)
    picks = [(int(rng.integers(len(cells))), int(rng.integers(d.draws))) for _ in range(n)]
    cov = np.array([c.value for c in model.covariates])
    t0 = time.perf_counter()
    agree = []
    for ci, di in picks:
        cell = cells[ci]
        grid = runner.grids[runner.regimen_index[cell.regimen_label]]
        doses = il2pkpd.parse_regimen(cell.regimen).to_records(model) if cell.regimen else []
        recs = il2pkpd.Records(list(doses), subject="s")
        outs, _ = solve_scipy(model, recs, runner.theta_pop[di], cov, times=grid, rtol=d.rtol, atol=d.atol)
        brk = dose_breaks(model, doses, runner.theta_pop[di], cov, grid)
        agree.append(np.asarray(evaluate(jnp.asarray(grid), jnp.asarray(outs), jnp.asarray(brk))))
    per = (time.perf_counter() - t0) / n
    # the same metrics from the JAX sweep path (outside the timing)
    diffs = []
    for (ci, di), ref in zip(picks, agree, strict=True):
        got = runner.run(cells[ci], np.array([di]))
        vals = np.array([got[c][0] for c in runner.columns])
        scale = np.maximum(np.abs(ref), 1e-6)
        diffs.append(np.nanmax(np.abs(vals - ref) / scale))
    return {"sample": n, "per_solve_s": per, "extrapolated_s": per * len(cells) * d.draws,
            "max_rel_diff_metrics_vs_jax": float(np.nanmax(diffs))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--scipy-sample", type=int, default=20)
    ap.add_argument("--workers", default="0,1,2")
    args = ap.parse_args()
    from il2pkpd.io.fits import fits_search_path

    # the stored posterior has 400 draws: with more requested, draws come from the priors
    # (wider, so slower on average than posterior draws: a conservative figure)
    found = [p / "ivory-published" / "fit.json" for p in fits_search_path() if (p / "ivory-published" / "fit.json").is_file()]
    fit = "ivory-published" if found and json.loads(found[0].read_text())["draws"] >= args.draws else None
    d = design(args.draws, fit)
    print(f"{len(d.cells())} cells x {d.draws} draws ({'fit ivory-published' if fit else 'prior draws'}), one year, rodas4 rtol {d.rtol:g}", flush=True)
    runs = []
    for w in (int(x) for x in args.workers.split(",")):
        r = timed_sweep(d, w)
        runs.append({k: v for k, v in r.items() if k not in ("summary", "table")})
        print(json.dumps(runs[-1]), flush=True)
    base = scipy_sample(d, args.scipy_sample)
    print(json.dumps(base), flush=True)
    result = {"machine": platform.processor() or platform.machine(), "date": time.strftime("%Y-%m-%d %H:%M"), "draws": d.draws,
              "cells": len(d.cells()), "population": "fit ivory-published" if fit else "prior", "runs": runs, "scipy": base,
              "ratio_vs_scipy": {str(r["workers"]): base["extrapolated_s"] / r["wall_s"] for r in runs}}
    out = Path(__file__).parent / "results" / f"sweep-cpu-{time.strftime('%Y%m%d-%H%M%S')}.json"
    atomic_write(out, lambda p: p.write_text(json.dumps(result, indent=1)))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
