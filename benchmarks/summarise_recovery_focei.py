"""Coverage of FOCE-I's 90% intervals over repeated SYNTHETIC trials (issue 14).

One realisation cannot show an interval procedure calibrated: with 12 quantities at 90% each,
all 12 cover on only 0.9^12 = 28% of trials even when every interval is exact. This reads the
``bench_recovery_focei.py`` results of one setting over several seeds (one file per seed: run
them one after another, each resumable by itself) and counts, per quantity, how many of the
seeds' SE-based 90% intervals cover the truth, with the exact binomial 90% interval of that
share (Clopper-Pearson) to read it against 0.90.

    for s in 1 2 3 4 5 6; do .venv/bin/python benchmarks/bench_recovery_focei.py --fix-iiv-zero ec50 --simulate-reduced --seed $s; done
    .venv/bin/python benchmarks/summarise_recovery_focei.py --fix-iiv-zero ec50 --simulate-reduced

Only results of the same setting (method, priors, left-out IIV, how the data were simulated,
design) are counted; the newest file per seed is used. Seeds whose fit stopped on a flat ridge
(its warning) are named: there the Wald intervals of the parameters on the ridge cover the
truth only because they are enormous.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="focei")
    ap.add_argument("--priors", action="store_true")
    ap.add_argument("--fix-iiv-zero", action="append", default=[], metavar="PARAMETER")
    ap.add_argument("--simulate-reduced", action="store_true")
    ap.add_argument("--results", type=Path, default=HERE / "results")
    args = ap.parse_args()
    from scipy.stats import beta

    newest: dict[int, dict] = {}
    for path in sorted(args.results.glob("recovery-focei-*.json")):  # names sort by time
        r = json.loads(path.read_text())
        if (r.get("method"), bool(r.get("priors")), sorted(r.get("iiv_left_out", [])), not r.get("data_simulated_with_that_iiv", True),
                r.get("subjects")) != (args.method, args.priors, sorted(args.fix_iiv_zero), args.simulate_reduced, {"aldesleukin": 31, "placebo": 29}):
            continue
        # a derived quantity some runs added (kprol/ec50) is not one of the estimates: left out
        r["quantities"] = {k: q for k, q in r["quantities"].items() if "derived" not in q}
        newest[r["seed"]] = {**r, "file": path.name}
    if not newest:
        raise SystemExit(f"error: no results of this setting in {args.results}")
    seeds = sorted(newest)
    names = list(next(iter(newest.values()))["quantities"])
    print(f"{len(seeds)} seeds ({seeds}); method {args.method}, priors {args.priors}, IIV left out {args.fix_iiv_zero}, "
          f"data simulated {'without' if args.simulate_reduced else 'with'} it (SYNTHETIC)\n")
    print("| quantity | covered | share | exact 90% interval of the share |")
    print("|---|---|---|---|")
    for name in names:
        hits = [newest[s]["quantities"][name]["covered"] for s in seeds if name in newest[s]["quantities"]]
        k, n = sum(bool(h) for h in hits), len(hits)
        lo = beta.ppf(0.05, k, n - k + 1) if k > 0 else 0.0
        hi = beta.ppf(0.95, k + 1, n - k) if k < n else 1.0
        print(f"| {name} | {k} of {n} | {k / n:.2f} | [{lo:.2f}, {hi:.2f}] |")
    total = sum(sum(bool(q["covered"]) for q in newest[s]["quantities"].values()) for s in seeds)
    cells = sum(len(newest[s]["quantities"]) for s in seeds)
    print(f"\nall quantities: {total} of {cells} intervals cover ({total / cells:.2f}); "
          f"trials with every quantity covered: {sum(bool(newest[s]['all_covered']) for s in seeds)} of {len(seeds)}")
    print("wall times (s): " + ", ".join(f"{s}: {newest[s]['wall_time_s']:.0f}" for s in seeds))
    # a fit that stopped on a flat ridge says so; there a Wald interval "covers" trivially
    for s in seeds:
        for w in newest[s].get("warnings", []):
            if "flat ridge" in w:
                names_ = re.search(r"\[([^\]]*)\]", w)
                print(f"seed {s}: the fit stopped on a flat ridge in {names_.group(0) if names_ else '?'}: their Wald intervals "
                      "cover trivially (a profile likelihood would be open-ended there)")


if __name__ == "__main__":
    main()
