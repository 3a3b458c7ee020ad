"""Make fits/ivory-published: the IVORY model calibrated to the published evidence.

    .venv/bin/python scripts/calibrate_published.py [--virtual 32] [--draws 1000] [--out fits/ivory-published]

About 30 minutes on 2 CPU cores (mode ~10 min, Hessian ~5 min, importance sampling ~13 min).
See il2pkpd.inference.calibration for the method; the result is summarised in fits/README.md.
"""

from __future__ import annotations

import argparse
import time

import il2pkpd
from il2pkpd.inference.calibration import calibrate_published
from il2pkpd.io.fits import write_fit


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--virtual", type=int, default=32, help="virtual subjects per arm")
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--maxiter", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="fits/ivory-published")
    args = ap.parse_args()
    model = il2pkpd.load_model("ivory")
    t0 = time.perf_counter()
    fit = calibrate_published(model, n_virtual=args.virtual, draws=args.draws, seed=args.seed, maxiter=args.maxiter,
                              progress=lambda msg: print(f"[{time.perf_counter() - t0:7.1f} s] {msg}", flush=True))
    folder = write_fit(fit, args.out)
    print(fit.summary.to_string())
    print({k: fit.info[k] for k in ("log_posterior_mode", "pareto_khat", "importance_ess", "wall_time_s")})
    print(fit.info["predictions_at_mode"])
    print(f"wrote {folder}")


if __name__ == "__main__":
    main()
