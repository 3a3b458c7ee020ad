"""Engine benchmark: il2pkpd's JAX solver against SciPy LSODA on the IVORY model.

Three whole-run measurements (not tests), compile time reported apart from run time:

A. one subject, one year of the IVORY regimen (1.5 MIU s.c. qd x5 then qw x7), daily output;
B. N virtual subjects with IIV (default 10,000), one year, output at the IVORY visits and
   monthly; SciPy is timed on a sample of subjects and extrapolated;
C. the `il2pkpd simulate` command twice in fresh processes, with an empty compilation cache
   and then with the cache the first run wrote (end-to-end wall time).

Both solvers use the same tolerances (rtol 1e-6, atol 1e-9 in the states' units). Results go
to benchmarks/results/ as JSON (written atomically) and are printed as a table.

    .venv/bin/python benchmarks/bench_engine.py [--subjects 10000] [--scipy-sample 20] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import il2pkpd
from il2pkpd.dosing import Records
from il2pkpd.io.output import atomic_write
from il2pkpd.simulation import individual_parameters
from il2pkpd.solve import solve_scipy

REGIMEN = "1.5 MIU sc qd x5 then 1.5 MIU sc qw x7"
RTOL, ATOL = 1e-6, 1e-9
VISITS = np.array([0, 4, 11, 25, 39, 53, 60, 90, 120, 180, 240, 300, 365.0])


def timed(fn, repeat: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def case_one_subject(model, repeat: int) -> dict:
    times = np.arange(0.0, 366.0)
    run = lambda: il2pkpd.simulate(model, REGIMEN, times, rtol=RTOL, atol=ATOL)  # noqa: E731
    t0 = time.perf_counter()
    ds = run()
    first = time.perf_counter() - t0
    jax_run, _ = timed(run, repeat)
    theta = [p.value for p in model.parameters]
    cov = [c.value for c in model.covariates]
    recs = Records(il2pkpd.parse_regimen(REGIMEN).to_records(model))
    sp_run, _ = timed(lambda: solve_scipy(model, recs, theta, cov, times, method="LSODA", rtol=RTOL, atol=ATOL), max(1, repeat // 2))
    ref, _ = solve_scipy(model, recs, theta, cov, times, method="LSODA", rtol=RTOL, atol=ATOL)
    j = model.symbolic.output_names.index("tbr")
    return {
        "jax_first_call_s": first, "jax_compile_s": first - jax_run, "jax_run_s": jax_run,
        "scipy_lsoda_s": sp_run, "speedup": sp_run / jax_run,
        "max_abs_diff_tbr": float(np.max(np.abs(ds["tbr"].values[0] - ref[:, j]))),
    }


def case_population(model, n: int, sample: int, solvers: list[str], seed: int = 1) -> dict:
    """N subject-years with each il2pkpd solver in turn (same process, same draws), and SciPy
    LSODA on ``sample`` of the subjects, extrapolated."""
    runs = {}
    for solver in solvers:
        kw = dict(n_subjects=n, seed=seed, rtol=RTOL, atol=ATOL, throw=False, solver=solver)
        t0 = time.perf_counter()
        il2pkpd.simulate(model, REGIMEN, VISITS, **kw)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        ds = il2pkpd.simulate(model, REGIMEN, VISITS, **kw)
        jax_run = time.perf_counter() - t0
        runs[solver] = {"jax_first_call_s": first, "jax_run_s": jax_run, "jax_per_subject_ms": 1e3 * jax_run / n,
                        "failed_subjects": int(np.sum(ds["status"].values != 0)), "tbr": ds["tbr"].values}
    theta, cov, _ = individual_parameters(model, n, seed=seed)
    recs = Records(il2pkpd.parse_regimen(REGIMEN).to_records(model))
    t0 = time.perf_counter()
    for i in range(sample):
        solve_scipy(model, recs, theta[0, i], cov[i], VISITS, method="LSODA", rtol=RTOL, atol=ATOL)
    sp_each = (time.perf_counter() - t0) / sample
    first_tbr = runs[solvers[0]]["tbr"]
    for r in runs.values():
        r["speedup"] = sp_each * n / r["jax_run_s"]
        # agreement of the solvers at the same tolerances (TBR at every visit, every subject)
        r["max_abs_diff_tbr_vs_" + solvers[0]] = float(np.nanmax(np.abs(r.pop("tbr") - first_tbr)))
    return {"subjects": n, "solvers": runs, "scipy_sample": sample, "scipy_per_subject_ms": 1e3 * sp_each, "scipy_extrapolated_s": sp_each * n}


def case_cli_warm_cache() -> dict:
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as out:
        env = dict(os.environ, IL2PKPD_CACHE_DIR=cache)
        cmd = [str(Path(sys.executable).with_name("il2pkpd")), "simulate", "--model", "ivory", "--regimen", REGIMEN,
               "--horizon", "365", "--out", str(Path(out) / "x.csv")]
        walls = []
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run(cmd, env=env, check=True, capture_output=True)
            walls.append(time.perf_counter() - t0)
    return {"cold_cache_s": walls[0], "warm_cache_s": min(walls[1:]), "warm_runs_s": walls[1:]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subjects", type=int, default=10_000)
    ap.add_argument("--scipy-sample", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="1,000 subjects, fewer repeats")
    ap.add_argument("--skip-cli", action="store_true")
    ap.add_argument("--solvers", nargs="+", default=["tsit5", "rodas4"], help="il2pkpd solvers for case B, side by side")
    args = ap.parse_args()
    if args.quick:
        args.subjects, args.repeat, args.scipy_sample = 1000, 3, 5
    import jax

    model = il2pkpd.load_model("ivory")
    result = {
        "benchmark": "engine", "date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.node(),
        "cpu_count": os.cpu_count(), "jax_backend": jax.default_backend(), "jax_devices": [str(d) for d in jax.devices()],
        "il2pkpd": il2pkpd.__version__, "jax": jax.__version__, "rtol": RTOL, "atol": ATOL, "regimen": REGIMEN,
    }
    print("A. one subject-year ...", flush=True)
    result["one_subject_year"] = case_one_subject(model, args.repeat)
    print(f"B. {args.subjects} subject-years ...", flush=True)
    result["population"] = case_population(model, args.subjects, args.scipy_sample, args.solvers)
    if not args.skip_cli:
        print("C. CLI, cold then warm compilation cache ...", flush=True)
        result["cli"] = case_cli_warm_cache()
    out_dir = Path(__file__).resolve().parent / "results"
    name = f"engine-{result['jax_backend']}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    atomic_write(out_dir / name, lambda p: p.write_text(json.dumps(result, indent=1)))
    a, b = result["one_subject_year"], result["population"]
    print(f"\n| case | il2pkpd (JAX, {result['jax_backend']}) | SciPy LSODA | ratio |\n|---|---|---|---|")
    print(f"| 1 subject-year | {1e3 * a['jax_run_s']:.1f} ms (+{a['jax_compile_s']:.1f} s compile) | {1e3 * a['scipy_lsoda_s']:.1f} ms | {a['speedup']:.1f}x |")
    for solver, r in b["solvers"].items():
        print(f"| {b['subjects']} subject-years, {solver} | {r['jax_run_s']:.2f} s (first call {r['jax_first_call_s']:.1f} s) | "
              f"{b['scipy_extrapolated_s']:.1f} s (extrapolated from {b['scipy_sample']}) | {r['speedup']:.1f}x |")
    if "cli" in result:
        c = result["cli"]
        print(f"| `il2pkpd simulate`, 2nd process | {c['warm_cache_s']:.2f} s (cold cache {c['cold_cache_s']:.2f} s) | | |")
    print(f"\nwrote {out_dir / name}")


if __name__ == "__main__":
    main()
