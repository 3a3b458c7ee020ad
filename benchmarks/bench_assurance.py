"""Assurance of an IVORY-like PET trial: `trial_power` against a sweep + pandas/SciPy loop (issue 15).

The job: assurance of the day-61 TBR difference (ANCOVA on baseline, two-sided 5%) of the IVORY
design (aldesleukin 1.5 MIU s.c. daily x5 then weekly x7 vs placebo, 1:1) at 5 total sample
sizes (40 ... 200), ``--trials`` virtual trials each, over 200 draws of the shipped posterior
(`fits/ivory-published`): trial k at draw k mod 200. Everything simulated is SYNTHETIC.

* **il2pkpd**: ``trial_power(...)`` (one compiled program; nested sample sizes).
* **Baseline**: what a user would write without it: ``il2pkpd.sweep`` of the two arms over the
  same 200 draws with enough virtual subjects per draw for its trials (``at(tbr, 0)``,
  ``at(tbr, 60)``; the sweep gives both arms the same virtual patients, so each arm takes its
  own half), residual error added in NumPy, then a loop over trials and sizes that builds each
  trial's pandas DataFrame and fits the ANCOVA by ``numpy.linalg.lstsq`` with the p-value from
  ``scipy.stats.t``.

Each is run twice in this process (``--repeats 2``): the first run includes compilation (the
persistent cache is off), the second is the run time; ``--repeats 1`` runs the first only (for the
full 1,000-trial job, whose compilation is a small share). The two assurance curves are printed side by side (they
differ by Monte Carlo error: different random numbers).

    IL2PKPD_NO_COMPILE_CACHE=1 .venv/bin/python benchmarks/bench_assurance.py --trials 1000

Writes benchmarks/results/assurance-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SIZES = (40, 80, 120, 160, 200)
DRAWS = 200


def ours(model, fit, trials: int):
    from il2pkpd.design import Arm, Sample, TrialDesign, designs, trial_power

    design = TrialDesign("IVORY-like PET", (Arm("aldesleukin", designs.IVORY_REGIMEN, 1), Arm("placebo", None, 1)), (Sample("tbr", (0.0, 60.0)),))
    r = trial_power(model, design, ["ancova(tbr, 60)"], SIZES, n_trials=trials, params=fit, draws=DRAWS, seed=1)
    return r.table.sort_values("n_total")["value"].tolist()


def baseline(model, trials: int):
    import pandas as pd
    from scipy import stats

    import il2pkpd
    from il2pkpd.design import SweepDesign, designs

    per_draw = math.ceil(trials / DRAWS)
    n_arm = max(SIZES) // 2
    subjects = 2 * per_draw * n_arm  # each arm its own half: the sweep gives both cells the same patients
    design = SweepDesign("ivory", (("drug", designs.IVORY_REGIMEN), ("placebo", "none")), horizon=61.0, draws=DRAWS, subjects=subjects,
                         fit="ivory-published", metrics=("at(tbr, 0)", "at(tbr, 60)"), seed=1)
    table = il2pkpd.sweep(design).table
    sd = next(o for o in model.observations if o.name == "tbr").error.add
    rng = np.random.default_rng(1)
    table["y0"] = table["at(tbr, 0)"] + sd * rng.standard_normal(len(table))
    table["y1"] = table["at(tbr, 60)"] + sd * rng.standard_normal(len(table))
    by_cell = {c: g.set_index(["draw", "subject"]) for c, g in table.groupby("cell")}
    significant = {n: [] for n in SIZES}
    for k in range(trials):
        d, block = k % DRAWS, k // DRAWS
        drug = by_cell[0].loc[d].iloc[block * n_arm: (block + 1) * n_arm]
        plac = by_cell[1].loc[d].iloc[subjects // 2 + block * n_arm: subjects // 2 + (block + 1) * n_arm]
        for n in SIZES:
            df = pd.concat([drug.iloc[: n // 2].assign(arm=1.0), plac.iloc[: n // 2].assign(arm=0.0)])
            x = np.column_stack([np.ones(len(df)), df["y0"], df["arm"]])
            beta, res, *_ = np.linalg.lstsq(x, df["y1"].to_numpy(), rcond=None)
            se = math.sqrt(res[0] / (len(df) - 3) * np.linalg.inv(x.T @ x)[2, 2])
            significant[n].append(2 * stats.t.sf(abs(beta[2] / se), len(df) - 3) < 0.05)
    return [float(np.mean(significant[n])) for n in SIZES]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--repeats", type=int, choices=(1, 2), default=2,
                    help="2: a first run (with compilation) and a second (run time); 1: the first only")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()

    import il2pkpd
    from il2pkpd.io.fits import load_fit
    from il2pkpd.io.output import atomic_write

    model = il2pkpd.load_model("ivory")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = load_fit("ivory-published", model=model)
    result = {"benchmark": "assurance", "date": time.strftime("%Y-%m-%d %H:%M"), "cpu_count": os.cpu_count(), "machine": platform.machine(),
              "synthetic": True, "sizes": SIZES, "trials": args.trials, "draws": DRAWS}
    for name, job in (("il2pkpd", lambda: ours(model, fit, args.trials)), ("sweep_pandas_scipy", lambda: baseline(model, args.trials))):
        for label in ("cold", "warm")[: args.repeats]:
            t = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                curve = job()
            result[f"{name}_{label}_s"] = time.perf_counter() - t
            print(f"{name} {label}: {result[f'{name}_{label}_s']:.1f} s", flush=True)
        result[f"{name}_assurance"] = curve
    if args.repeats == 2:
        result["ratio_warm"] = result["sweep_pandas_scipy_warm_s"] / result["il2pkpd_warm_s"]
    result["ratio_cold"] = result["sweep_pandas_scipy_cold_s"] / result["il2pkpd_cold_s"]
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"assurance-{time.strftime('%Y%m%d-%H%M%S')}.json"
    atomic_write(out, lambda p: p.write_text(json.dumps(result, indent=1)))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
