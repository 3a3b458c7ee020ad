"""Scaling of the joint log-likelihood gradient with CPU cores (issue 13).

The 60-subject SYNTHETIC IVORY trial of ``bench_gradient.py`` (two-year MI follow-up,
Rodas4 loop with its own adjoint, rtol 1e-4): value and gradient timed (wall clock, best of
5) in one process per device count (compilation cache off, so compile times are a first run's), ``IL2PKPD_CPU_DEVICES=1`` (the default: subjects one after
another on one core) and ``=N`` (subjects split over N host devices), side by side.

    .venv/bin/python benchmarks/bench_cores.py [--devices 1 2] [--rtol 1e-4]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def child(rtol: float) -> None:
    import jax

    sys.path.insert(0, str(HERE))
    from bench_gradient import ivory_trial

    from il2pkpd.likelihood import JointLoglik
    from il2pkpd.solve import SolverOptions

    import jax.numpy as jnp

    model, _, data, theta, errors = ivory_trial(events=True)
    loglik = JointLoglik(model, data, SolverOptions(solver="rodas4", rtol=rtol, atol=rtol * 1e-3))

    cov = jnp.asarray(loglik.covariates())
    value = jax.jit(lambda th: loglik._loglik(th, cov, errors)[0])
    grad = jax.jit(jax.value_and_grad(lambda th: loglik._loglik(th, cov, errors)[0]))
    out = {"devices": jax.device_count()}
    for name, fn in (("value", value), ("grad", grad)):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(theta))
        first = time.perf_counter() - t0
        runs = []
        for _ in range(5):
            t0 = time.perf_counter()
            jax.block_until_ready(fn(theta))
            runs.append(time.perf_counter() - t0)
        out[f"{name}_s"], out[f"{name}_compile_s"] = min(runs), first - min(runs)
    out["loglik"] = float(value(theta))
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rtol", type=float, default=1e-4)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.rtol)
        return
    from il2pkpd.io.output import atomic_write

    rows = []
    for d in args.devices:
        # no persistent compilation cache: the compile times are those of a first run
        env = {**os.environ, "IL2PKPD_CPU_DEVICES": str(d), "IL2PKPD_NO_COMPILE_CACHE": "1"}
        res = subprocess.run([sys.executable, __file__, "--child", "--rtol", str(args.rtol)], env=env, capture_output=True, text=True, check=True)
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
    base = rows[0]
    print("| CPU devices | value | gradient | gradient compile | speed-up (gradient) | log-likelihood |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['devices']} | {r['value_s'] * 1e3:.0f} ms | {r['grad_s'] * 1e3:.0f} ms | {r['grad_compile_s']:.0f} s | "
              f"{base['grad_s'] / r['grad_s']:.2f}x | {r['loglik']:.6f} |")
    result = {"benchmark": "cores", "date": time.strftime("%Y-%m-%d %H:%M"), "cpu_count": os.cpu_count(), "rtol": args.rtol, "runs": rows}
    out = HERE / "results" / f"cores-{time.strftime('%Y%m%d-%H%M%S')}.json"
    atomic_write(out, lambda p: p.write_text(json.dumps(result, indent=1)))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
