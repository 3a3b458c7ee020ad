"""What the sweep's solver tolerance costs and buys: the dose-finding sweep at several rtol.

The sweep of `bench_sweep.py` (20 regimens + untreated, one IVORY year, Rodas4, the ten
default IVORY metrics), in process, with ``--draws`` prior draws, run at rtol 1e-8 (the
reference) and at each of ``--rtols`` (atol = rtol x 1e-3). Reported per tolerance: warm run
time (wall minus the first chunk's compile), its speed-up over rtol 1e-6, and per metric the
largest and the 99th-percentile difference from the reference over every (regimen, draw),
relative to the metric's own spread (its standard deviation over the sweep), which is the
scale a dose-finding decision reads.

    .venv/bin/python benchmarks/bench_sweep_tolerance.py --draws 100      # ~6 min on 2 cores

Results: benchmarks/results/sweep-tolerance-*.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path

import numpy as np

from bench_sweep import design, timed_sweep
from il2pkpd.io.output import atomic_write

REFERENCE_RTOL = 1e-8


def run(d, rtol: float) -> tuple[float, float, object]:
    """Warm run time (s), compile estimate (s) and the sweep's table at ``rtol``, in process."""
    r = timed_sweep(dataclasses.replace(d, rtol=rtol, atol=rtol * 1e-3), workers=0)
    return r["wall_s"] - r["compile_s"], r["compile_s"], r["table"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=100)
    ap.add_argument("--rtols", default="1e-6,1e-5,1e-4,1e-3")
    args = ap.parse_args()
    d = design(args.draws, None)
    ref_time, ref_compile, ref = run(d, REFERENCE_RTOL)
    keys = ["cell", "draw", "subject"]
    metrics = [c for c in ref.columns if c not in keys + ["status"] and np.issubdtype(ref[c].dtype, np.number)]
    ref = ref.set_index(keys).sort_index()
    spread = {m: float(np.nanstd(ref[m])) for m in metrics}
    rows = []
    for rtol in [float(x) for x in args.rtols.split(",")]:
        seconds, compile_s, table = run(d, rtol)
        table = table.set_index(keys).sort_index()
        diffs = {}
        for m in metrics:
            both = (ref["status"] == 0) & (table["status"] == 0)
            delta = np.abs(table.loc[both, m] - ref.loc[both, m]).to_numpy() / max(spread[m], 1e-300)
            delta = delta[np.isfinite(delta)]
            diffs[m] = {"max_per_sd": float(delta.max()) if delta.size else None, "p99_per_sd": float(np.quantile(delta, 0.99)) if delta.size else None}
        rows.append({"rtol": rtol, "run_s": seconds, "compile_s": compile_s, "failed": int((table["status"] != 0).sum()), "metrics": diffs})
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "metrics"}), flush=True)
    base = next((r["run_s"] for r in rows if r["rtol"] == 1e-6), None)
    print(f"\n{len(d.cells())} cells x {args.draws} prior draws, one IVORY year, Rodas4; reference rtol {REFERENCE_RTOL:g} ({ref_time:.0f} s)")
    # tmax is an argmax: it can jump between near-equal maxima at any tolerance (see the README)
    print("| rtol | run (s) | vs rtol 1e-6 | worst metric but tmax: max |diff| / SD (p99) |")
    print("|---|---|---|---|")
    for r in rows:
        worst = max((m for m in r["metrics"] if not m.startswith("tmax(")), key=lambda m: r["metrics"][m]["max_per_sd"] or 0.0)
        w = r["metrics"][worst]
        print(f"| {r['rtol']:g} | {r['run_s']:.1f} | {base / r['run_s']:.2f}x | {worst}: {w['max_per_sd']:.1e} ({w['p99_per_sd']:.1e}) |" if base else "")
    result = {"benchmark": "sweep-tolerance", "machine": platform.machine(), "date": time.strftime("%Y-%m-%d %H:%M"), "draws": args.draws,
              "cells": len(d.cells()), "reference_rtol": REFERENCE_RTOL, "reference_run_s": ref_time, "reference_compile_s": ref_compile,
              "metric_sd": spread, "runs": rows}
    out = Path(__file__).parent / "results" / f"sweep-tolerance-{time.strftime('%Y%m%d-%H%M%S')}.json"
    atomic_write(out, lambda p: p.write_text(json.dumps(result, indent=1)))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
