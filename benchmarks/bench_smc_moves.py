"""How many target evaluations tempered SMC needs, on test targets shaped like the published
calibration (issue 16): ``k`` skewed coordinates (u = log x, x ~ Gamma(1.2)) and ``d - k``
standard normal ones, started from their Laplace normal (importance sampling from which fails
its Pareto k-hat check), by :func:`il2pkpd.inference.smc.tempered_smc` with its defaults.

Reports per target the evaluations, the stages' Metropolis steps and acceptance, and the
skewed coordinates' mean and variance against their closed forms (digamma(1.2), trigamma(1.2)),
and log Z against 0. Evaluations of these targets are free; multiply by the calibration's
~0.8 s per evaluation (2 cores) for what the same run would cost there.

    .venv/bin/python benchmarks/bench_smc_moves.py     # ~1-2 min

Results: benchmarks/results/smc-moves-*.json (written atomically).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
from scipy import special, stats

HERE = Path(__file__).parent
SHAPE = 1.2
SECONDS_PER_CALIBRATION_EVALUATION = 0.8  # README: the published calibration's log posterior, 2 cores


def main() -> None:
    from il2pkpd.inference.smc import tempered_smc
    from il2pkpd.io.output import atomic_write

    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    rows = []
    for d, k, particles in ((6, 6, 1000), (34, 11, 400)):
        def log_target(u, label=""):
            return (np.sum(SHAPE * u[:, :k] - np.exp(u[:, :k]), axis=1) - k * special.gammaln(SHAPE)
                    + np.sum(stats.norm.logpdf(u[:, k:]), axis=1))

        reference = stats.multivariate_normal(np.concatenate([np.full(k, math.log(SHAPE)), np.zeros(d - k)]),
                                              np.diag(np.concatenate([np.full(k, 1 / SHAPE), np.ones(d - k)])))
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            run = tempered_smc(log_target, reference, particles=particles, rng=np.random.default_rng(seed))
            skewed = run["u"][:, :k]
            rows.append({"dimension": d, "skewed": k, "particles": particles, "seed": seed, "evaluations": run["evaluations"],
                         "steps": [s["steps"] for s in run["stages"]], "acceptance": [round(s["acceptance"], 3) for s in run["stages"]],
                         "hit_step_limit": any(s["correlation_with_start"] >= 0.1 for s in run["stages"]),
                         "mean": float(skewed.mean()), "mean_true": float(special.digamma(SHAPE)),
                         "variance": float(skewed.var(axis=0).mean()), "variance_true": float(special.polygamma(1, SHAPE)),
                         "log_z": run["log_evidence"], "wall_s": time.perf_counter() - t0,
                         "hours_at_calibration_cost": run["evaluations"] * SECONDS_PER_CALIBRATION_EVALUATION / 3600})
    result = {"benchmark": "smc-moves", "date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.machine(), "runs": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"smc-moves-{time.strftime('%Y%m%d-%H%M%S')}.json"
    atomic_write(out, lambda p: p.write_text(json.dumps(result, indent=1)))
    print("| d (skewed) | particles | seed | evaluations | steps per stage | step limit hit | skewed mean (true) | variance (true) | log Z (0) | hours at 0.8 s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['dimension']} ({r['skewed']}) | {r['particles']} | {r['seed']} | {r['evaluations']} | {r['steps']} | {r['hit_step_limit']} | "
              f"{r['mean']:.3f} ({r['mean_true']:.3f}) | {r['variance']:.3f} ({r['variance_true']:.3f}) | {r['log_z']:.3f} | "
              f"{r['hours_at_calibration_cost']:.1f} |")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
