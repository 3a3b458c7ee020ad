"""Make fits/ivory-published: the IVORY model calibrated to the published evidence.

    .venv/bin/python scripts/calibrate_published.py [--virtual 32] [--draws 1000] [--proposals 600] [--rounds 5] [--out fits/ivory-published]
    .venv/bin/python scripts/calibrate_published.py --sampler smc --particles 400 --draws 400 --checkpoint smc.json [...]

About 30-70 minutes on 2 CPU cores (mode ~10 min, Hessian ~5 min, ~8 min per importance round of
600 proposals). See il2pkpd.inference.calibration for the method; the result is summarised in
fits/README.md (scripts/report_published_fit.py). A result whose importance correction failed
its Pareto k-hat check is an approximation, not the posterior: it is not written unless
--allow-approximation is given (then to a folder that says so in its fit.json).

With --sampler smc (tempered SMC from the Laplace normal) the run costs about particles x
Metropolis steps per stage x stages evaluations of ~0.8 s each; --checkpoint FILE writes the
SMC state after every resampling and Metropolis step (atomically) and a rerun with the same
FILE and settings resumes from there. The mode and Hessian are recomputed on resume (~15 min);
a state whose reference (the Laplace proposal) no longer matches is refused.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
from pathlib import Path

import numpy as np

import il2pkpd
from il2pkpd.inference.calibration import calibrate_published
from il2pkpd.io.fits import write_fit
from il2pkpd.io.output import atomic_write
from il2pkpd.model import model_hash

DEFAULT_PARTICLES = inspect.signature(calibrate_published).parameters["particles"].default


def _plain(value):
    """The SMC state as JSON takes it (arrays as lists, nested)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    return {k: _plain(v) for k, v in value.items()} if isinstance(value, dict) else value


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--virtual", type=int, default=32, help="virtual subjects per arm")
    ap.add_argument("--draws", type=int, default=None, help="draws stored (default 1000; with --sampler smc, every particle)")
    ap.add_argument("--maxiter", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--proposals", type=int, default=600, help="proposals per adaptive importance round")
    ap.add_argument("--rounds", type=int, default=5, help="most adaptive importance rounds")
    ap.add_argument("--min-ess", type=float, default=400.0, help="more rounds (up to --rounds) until the importance ESS reaches this")
    ap.add_argument("--event-evidence", action="store_true",
                    help="the Figueroa and BIOVASC hazard ratios as data on beta_tbr (needs a beta_tbr prior not built from them)")
    ap.add_argument("--proposal-df", type=float, default=None, help="Student-t proposals with these degrees of freedom (> 2; default normal)")
    ap.add_argument("--inflate", type=float, default=1.0, help="factor on the proposals' standard deviations (>= 1)")
    ap.add_argument("--confirm", type=int, default=1, help="passing rounds in a row needed to stop")
    ap.add_argument("--prior-block", action="store_true", help="draw the parameters the Laplace fit leaves uninformed from their priors")
    ap.add_argument("--sampler", default="importance", choices=["importance", "smc"], help="the posterior sampler after the Laplace step")
    ap.add_argument("--particles", type=int, default=None, help=f"SMC particles (--sampler smc; default {DEFAULT_PARTICLES})")
    ap.add_argument("--checkpoint", type=Path, default=None, help="SMC state after every step: written, and resumed from if it exists")
    ap.add_argument("--allow-approximation", action="store_true", help="write the Laplace normal when k-hat stays >= 0.7")
    ap.add_argument("--out", default="fits/ivory-published")
    args = ap.parse_args()
    if args.sampler != "smc" and (args.checkpoint is not None or args.particles is not None):
        ap.error("--particles and --checkpoint are settings of --sampler smc")
    particles = args.particles if args.particles is not None else DEFAULT_PARTICLES
    draws = args.draws if args.draws is not None else (particles if args.sampler == "smc" else 1000)
    if args.sampler == "smc" and draws > particles:
        ap.error(f"--draws ({draws}) must be <= --particles ({particles}) with --sampler smc: the draws are particles")
    model = il2pkpd.load_model("ivory")
    smc = {}
    if args.sampler == "smc":
        if args.checkpoint is not None and not args.checkpoint.parent.is_dir():
            ap.error(f"--checkpoint: folder {args.checkpoint.parent} does not exist")
        settings = {"particles": particles, "virtual": args.virtual, "seed": args.seed, "event_evidence": args.event_evidence,
                    "proposal_df": args.proposal_df, "inflate": args.inflate, "model_hash": model_hash(model)}
        smc = {"sampler": "smc", "particles": particles}
        if args.checkpoint is not None:
            if args.checkpoint.exists():
                saved = json.loads(args.checkpoint.read_text())
                if saved["settings"] != settings:
                    ap.error(f"--checkpoint: {args.checkpoint} was written with other settings ({saved['settings']}); "
                             "give another file or the same settings")
                smc["smc_state"] = saved["state"]

            def on_stage(state):
                text = json.dumps({"settings": settings, "state": _plain(state)})
                atomic_write(args.checkpoint, lambda p: p.write_text(text))
            smc["on_stage"] = on_stage
    t0 = time.perf_counter()
    fit = calibrate_published(model, n_virtual=args.virtual, draws=draws, seed=args.seed, maxiter=args.maxiter,
                              proposals=args.proposals, rounds=args.rounds, min_ess=args.min_ess, event_evidence=args.event_evidence,
                              proposal_df=args.proposal_df, inflate=args.inflate, confirm=args.confirm, prior_block=args.prior_block, **smc,
                              progress=lambda msg: print(f"[{time.perf_counter() - t0:7.1f} s] {msg}", flush=True))
    if fit.info["approximation"] == "laplace" and not args.allow_approximation:
        print(f"error: the importance correction failed its check (Pareto k-hat {fit.info['pareto_khat']}): not written to {args.out}; "
              "rerun with more --proposals or --rounds, or --allow-approximation", file=sys.stderr)
        sys.exit(1)
    if not fit.info["confirmed"] and not args.allow_approximation:
        why = (f"the SMC check failed ({fit.info['smc']['check']})" if fit.info["smc"] is not None else
               f"k-hat and ESS did not pass in {args.confirm} rounds in a row (rounds: "
               f"{[(r['pareto_khat'], r['importance_ess']) for r in fit.info['importance_rounds']]})")
        print(f"error: {why}: not written to {args.out}", file=sys.stderr)
        sys.exit(1)
    folder = write_fit(fit, args.out)
    print(fit.summary.to_string())
    print({k: fit.info[k] for k in ("log_posterior_mode", "pareto_khat", "importance_ess", "importance_rounds", "smc", "wall_time_s")})
    print(fit.info["predictions_at_mode"])
    print(f"wrote {folder}")


if __name__ == "__main__":
    main()
