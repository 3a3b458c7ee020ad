"""Cost of the joint log-likelihood and its gradient: 60-subject virtual IVORY trial.

Data: a SYNTHETIC IVORY trial (designs.ivory(): 31:29, Treg and NK at the registry visits,
TBR at baseline and day 61; `--events` adds the two-year MI follow-up). Parameters: the
model's typical values (35 of them). Compared, at the same solver tolerances:

* il2pkpd: ``JointLoglik`` value, and its gradient (jitted): with ``--solver rodas4`` both
  the single loop per subject with its own adjoint (the default path) and the diffrax path
  (one solve per event interval, reverse mode through diffrax), side by side;
* the slow way: the same likelihood with the ODEs solved by SciPy LSODA per subject
  (``solve_scipy``), its gradient by central finite differences over the estimated
  parameters (2P + 1 likelihood evaluations), timed on a sample of subjects and scaled.

    .venv/bin/python benchmarks/bench_gradient.py [--events] [--solver rodas4] [--rtol 1e-4]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import il2pkpd
from il2pkpd.design import designs, simulate_trial
from il2pkpd.inference.pymc_model import estimated_parameters
from il2pkpd.io.nonmem import from_dataframe
from il2pkpd.io.output import atomic_write
from il2pkpd.likelihood import JointLoglik, default_error_params, subject_data
from il2pkpd.solve import SolverOptions, solve_scipy


def ivory_trial(events: bool):
    """The SYNTHETIC 60-subject IVORY trial: model, dataset, likelihood data, typical
    parameters per subject (60, P) and the default error parameters."""
    model = il2pkpd.load_model("ivory")
    design = designs.ivory()
    if not events:
        design = type(design)(design.name, design.arms, design.samples, source=design.source)
    dataset = from_dataframe(simulate_trial(design, model, seed=1))
    data = subject_data(model, dataset)
    n = len(dataset.subject_records(model))
    theta = jnp.tile(jnp.array([p.value for p in model.parameters]), (n, 1))
    return model, dataset, data, theta, default_error_params(model)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", action="store_true", help="include the 2-year MI follow-up")
    ap.add_argument("--scipy-sample", type=int, default=3)
    ap.add_argument("--solver", default="tsit5", help="il2pkpd ODE solver (tsit5, rodas4, ...)")
    ap.add_argument("--rtol", type=float, default=1e-6, help="relative tolerance (atol = rtol x 1e-3)")
    args = ap.parse_args()
    rtol, atol = args.rtol, args.rtol * 1e-3
    model, dataset, data, theta, errors = ivory_trial(args.events)
    subjects = dataset.subject_records(model)
    n = len(subjects)

    def timed(fn, *a, repeat=3):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*a))
        first = time.perf_counter() - t0
        runs = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            jax.block_until_ready(fn(*a))
            runs.append(time.perf_counter() - t0)
        return first, min(runs)

    # Rodas4 runs as one loop per subject with its own adjoint; the diffrax path (one solve
    # per event interval, reverse mode through diffrax) is timed beside it in the same run
    paths = ["loop", "segments"] if args.solver == "rodas4" else ["segments"]
    timings = {}
    for path in paths:
        loglik = JointLoglik(model, data, SolverOptions(rtol=rtol, atol=atol, solver=args.solver, path=path))
        cov = jnp.asarray(loglik.covariates())  # the dataset's covariate columns
        value = jax.jit(lambda th, L=loglik, c=cov: L._loglik(th, c, errors)[0])
        grad = jax.jit(jax.value_and_grad(lambda th, L=loglik, c=cov: L._loglik(th, c, errors)[0]))
        v_first, v_run = timed(value, theta)
        g_first, g_run = timed(grad, theta)
        timings[path] = {"value_s": v_run, "value_compile_s": v_first - v_run, "grad_s": g_run, "grad_compile_s": g_first - g_run,
                         "loglik": float(value(theta)), "grad_over_value": g_run / v_run}
    main_path = paths[0]
    v_run, g_run = timings[main_path]["value_s"], timings[main_path]["grad_s"]
    v_first, g_first = v_run + timings[main_path]["value_compile_s"], g_run + timings[main_path]["grad_compile_s"]
    # the slow way: SciPy LSODA per subject, finite differences over the estimated parameters
    p_est = len(estimated_parameters(model))
    sample = subjects[: args.scipy_sample]
    th0, cv0 = np.asarray(theta[0]), np.asarray(cov[0])
    t0 = time.perf_counter()
    for recs in sample:
        times = np.array([r.time for r in recs if r.evid in (0, 2)])
        solve_scipy(model, recs, th0, cv0, times, method="LSODA", rtol=rtol, atol=atol)
    scipy_value = (time.perf_counter() - t0) / len(sample) * n
    scipy_grad = scipy_value * (2 * p_est + 1)
    result = {
        "benchmark": "gradient", "date": time.strftime("%Y-%m-%d %H:%M"), "cpu_count": os.cpu_count(), "backend": jax.default_backend(),
        "subjects": n, "events": args.events, "observations": loglik.n_observations, "event_rows": loglik.n_events,
        "estimated_parameters": p_est, "solver": args.solver, "rtol": rtol, "atol": atol,
        "jax_value_s": v_run, "jax_value_compile_s": v_first - v_run, "jax_grad_s": g_run, "jax_grad_compile_s": g_first - g_run,
        "scipy_value_s": scipy_value, "scipy_fd_grad_s": scipy_grad, "speedup_grad": scipy_grad / g_run, "paths": timings,
    }
    out = Path(__file__).resolve().parent / "results" / f"gradient-{args.solver}-{'events-' if args.events else ''}{time.strftime('%Y%m%d-%H%M%S')}.json"
    atomic_write(out, lambda p: p.write_text(json.dumps(result, indent=1)))
    print(f"| 60-subject IVORY joint log-likelihood ({'with' if args.events else 'without'} 2-year events), {args.solver} | il2pkpd (JAX) | SciPy LSODA, FD gradient | ratio |")
    print("|---|---|---|---|")
    print(f"| value | {v_run:.2f} s (+{v_first - v_run:.0f} s compile) | {scipy_value:.1f} s | {scipy_value / v_run:.1f}x |")
    print(f"| gradient ({p_est} estimated parameters) | {g_run:.2f} s (+{g_first - g_run:.0f} s compile) | {scipy_grad:.0f} s | {scipy_grad / g_run:.0f}x |")
    if len(paths) > 1:
        lo, seg = timings["loop"], timings["segments"]
        print(f"\n| Rodas4 path | value | gradient (value and gradient) | gradient / value | gradient compile | log-likelihood |")
        print("|---|---|---|---|---|---|")
        for path in paths:
            t = timings[path]
            print(f"| {path} | {t['value_s'] * 1e3:.0f} ms | {t['grad_s'] * 1e3:.0f} ms | {t['grad_over_value']:.1f} | {t['grad_compile_s']:.0f} s | {t['loglik']:.6f} |")
        print(f"| segments / loop | {seg['value_s'] / lo['value_s']:.1f}x | {seg['grad_s'] / lo['grad_s']:.1f}x | | | diff {abs(seg['loglik'] - lo['loglik']):.1e} |")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
