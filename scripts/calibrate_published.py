"""Make fits/ivory-published: the IVORY model calibrated to the published evidence.

    .venv/bin/python scripts/calibrate_published.py [--virtual 32] [--draws 1000] [--proposals 600] [--rounds 5] [--out fits/ivory-published]

About 30-70 minutes on 2 CPU cores (mode ~10 min, Hessian ~5 min, ~8 min per importance round of
600 proposals). See il2pkpd.inference.calibration for the method; the result is summarised in
fits/README.md (scripts/report_published_fit.py). A result whose importance correction failed
its Pareto k-hat check is an approximation, not the posterior: it is not written unless
--allow-approximation is given (then to a folder that says so in its fit.json).
"""

from __future__ import annotations

import argparse
import sys
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
    ap.add_argument("--proposals", type=int, default=600, help="proposals per adaptive importance round")
    ap.add_argument("--rounds", type=int, default=5, help="most adaptive importance rounds")
    ap.add_argument("--min-ess", type=float, default=400.0, help="more rounds (up to --rounds) until the importance ESS reaches this")
    ap.add_argument("--event-evidence", action="store_true",
                    help="the Figueroa and BIOVASC hazard ratios as data on beta_tbr (needs a beta_tbr prior not built from them)")
    ap.add_argument("--proposal-df", type=float, default=None, help="Student-t proposals with these degrees of freedom (> 2; default normal)")
    ap.add_argument("--inflate", type=float, default=1.0, help="factor on the proposals' standard deviations (>= 1)")
    ap.add_argument("--confirm", type=int, default=1, help="passing rounds in a row needed to stop")
    ap.add_argument("--prior-block", action="store_true", help="draw the parameters the Laplace fit leaves uninformed from their priors")
    ap.add_argument("--allow-approximation", action="store_true", help="write the Laplace normal when k-hat stays >= 0.7")
    ap.add_argument("--out", default="fits/ivory-published")
    args = ap.parse_args()
    model = il2pkpd.load_model("ivory")
    t0 = time.perf_counter()
    fit = calibrate_published(model, n_virtual=args.virtual, draws=args.draws, seed=args.seed, maxiter=args.maxiter,
                              proposals=args.proposals, rounds=args.rounds, min_ess=args.min_ess, event_evidence=args.event_evidence,
                              proposal_df=args.proposal_df, inflate=args.inflate, confirm=args.confirm, prior_block=args.prior_block,
                              progress=lambda msg: print(f"[{time.perf_counter() - t0:7.1f} s] {msg}", flush=True))
    if fit.info["approximation"] != "importance" and not args.allow_approximation:
        print(f"error: the importance correction failed its check (Pareto k-hat {fit.info['pareto_khat']}): not written to {args.out}; "
              "rerun with more --proposals or --rounds, or --allow-approximation", file=sys.stderr)
        sys.exit(1)
    if not fit.info["confirmed"] and not args.allow_approximation:
        print(f"error: k-hat and ESS did not pass in {args.confirm} rounds in a row (rounds: "
              f"{[(r['pareto_khat'], r['importance_ess']) for r in fit.info['importance_rounds']]}): not written to {args.out}", file=sys.stderr)
        sys.exit(1)
    folder = write_fit(fit, args.out)
    print(fit.summary.to_string())
    print({k: fit.info[k] for k in ("log_posterior_mode", "pareto_khat", "importance_ess", "importance_rounds", "wall_time_s")})
    print(fit.info["predictions_at_mode"])
    print(f"wrote {folder}")


if __name__ == "__main__":
    main()
