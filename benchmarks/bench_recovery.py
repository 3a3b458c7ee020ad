"""Parameter recovery: NUTS fit of a 60-subject virtual IVORY trial (SYNTHETIC data).

A simulation-estimation study of the issue's design: `designs.ivory()` (31:29, aldesleukin
1.5 MIU s.c. daily x5 then weekly x7; Treg and NK fold at the 7 registry visits, TBR at
baseline and day 61, MI over two years with dropout). The data are simulated from
`models/ivory.toml` at its typical values, then fitted by `il2pkpd.fit` (nutpie) with the
same model, and the script reports, for every estimated quantity, the true value, the
posterior median and 90% equal-tailed interval, and whether the interval covers the truth;
plus R-hat, bulk ESS, divergences, wall time and ESS per second.

What is estimated (``ESTIMATED``): the population parameters that this design informs — the
Treg exposure-response (ec50 with IIV, kprol with IIV, kout_t), the NK response (emax_nk), the
PET baseline (tbr0 with IIV) and response (imax), the post-ACS TBR resolution (a_acs), the
MI risk (p_mi_1y) — with their omegas and the residual SDs. The rest (PK: no IL-2 samples in
IVORY; transit and CD25 dynamics; hazard shape) are fixed at their true values and carry no
IIV in either the simulation or the fit, so the fitted model is the data-generating one.

Solver: Rodas4 at rtol 1e-4, atol 1e-7 (the two-year follow-up is stiff). Against rtol 1e-8 on
this trial the log-likelihood moves by 1.4e-4 and its gradient by 5e-6 (relative, max norm),
far below what changes a NUTS trajectory; a gradient costs 0.44 s instead of 1.15 s at 1e-6.

    .venv/bin/python benchmarks/bench_recovery.py                       # 4 x (300 + 300)
    # NUTS started from a FOCE-I fit of the same trial (issue 14), without the MI rows as that fit:
    .venv/bin/python benchmarks/bench_recovery_focei.py --fix-iiv-zero ec50 --save-fit /tmp/focei60
    .venv/bin/python benchmarks/bench_recovery.py --no-mi --fix-iiv-zero ec50 --init /tmp/focei60 \
        --sampler numpyro --mass-matrix fixed --chains 2 --tune 100 --draws 200
    .venv/bin/python benchmarks/bench_recovery.py --n-il2 3 --n-placebo 3 --tune 10 --draws 5 --chains 2 --out /tmp/rec  # smoke

Results: benchmarks/results/recovery-*.json (written atomically at the end).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
ESTIMATED = ("ec50", "kprol", "kout_t", "emax_nk", "tbr0", "imax", "a_acs", "p_mi_1y")


def recovery_model():
    """`ivory` with only ``ESTIMATED`` free; fixed parameters lose their IIV."""
    import il2pkpd

    model = il2pkpd.load_model("ivory").estimate_only(*ESTIMATED)
    params = tuple(p if p.name in ESTIMATED else dataclasses.replace(p, iiv=None) for p in model.parameters)
    return model.replace(parameters=params)


def true_values(model, dvids: set[int]) -> dict[str, float]:
    """Typical values, omegas and the residual SDs of the observations in the data (``dvids``)
    the data were simulated with."""
    truth = {p.name: p.value for p in model.parameters if p.name in ESTIMATED}
    truth.update({f"omega_{p.name}": p.iiv.omega for p in model.parameters if p.name in ESTIMATED and p.iiv is not None})
    for o in (o for o in model.observations if o.dvid in dvids):
        keys = [k for k in ("add", "prop") if getattr(o.error, k, None)]
        for k in keys:
            truth[f"sigma_{o.name}" if len(keys) == 1 else f"sigma_{o.name}_{k}"] = getattr(o.error, k)
    return truth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--tune", type=int, default=300)
    ap.add_argument("--draws", type=int, default=300)
    ap.add_argument("--n-il2", type=int, default=31, help="subjects on aldesleukin (IVORY: 31)")
    ap.add_argument("--n-placebo", type=int, default=29, help="subjects on placebo (IVORY: 29)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the virtual trial and of the sampler")
    ap.add_argument("--no-mi", action="store_true", help="leave the MI rows out and p_mi_1y fixed (as bench_recovery_focei.py)")
    ap.add_argument("--fix-iiv-zero", action="append", default=[], metavar="PARAMETER",
                    help="fit without the IIV of this parameter (as bench_recovery_focei.py); the data keep it")
    ap.add_argument("--init", type=Path, default=None, metavar="FOLDER",
                    help="start NUTS from this maximum-likelihood fit folder of the same trial (bench_recovery_focei.py --save-fit)")
    ap.add_argument("--sampler", default="nutpie", help="nutpie (default) or numpyro (takes the init fit's mass matrix)")
    ap.add_argument("--mass-matrix", default="auto", help="fit(mass_matrix=...): auto, adapt, init or fixed")
    ap.add_argument("--save-fit", type=Path, default=None, metavar="FOLDER",
                    help="also write the fit (its draws: per-chain traces, sampler statistics) to this new folder (il2pkpd.io.fits.write_fit)")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    if args.save_fit is not None and args.save_fit.exists():  # refused before hours of sampling, not after
        ap.error(f"--save-fit: {args.save_fit} exists; give a new folder")
    if args.sampler == "numpyro":  # NumPyro runs the chains one after another on CPU; each splits its subjects over the cores
        os.environ.setdefault("IL2PKPD_CPU_DEVICES", "all")

    import il2pkpd
    from il2pkpd.design import designs, simulate_trial
    from il2pkpd.errors import Il2pkpdWarning
    from il2pkpd.io.nonmem import from_dataframe
    from il2pkpd.io.output import atomic_write
    from il2pkpd.solve import SolverOptions

    model = recovery_model()
    if args.no_mi:  # the model and data of bench_recovery_focei.py
        model = model.estimate_only(*(e for e in ESTIMATED if e != "p_mi_1y"))
    table = simulate_trial(designs.ivory(args.n_il2, args.n_placebo), model, seed=args.seed)
    events = table[(table["EVID"] == 0) & table["EVENT"].notna()]
    n_events = {arm: int(v) for arm, v in events.groupby("ARM")["DV"].sum().items()}
    if args.no_mi:
        table = table[table["EVENT"].isna()]
    data = from_dataframe(table)
    truth_model = model
    if args.fix_iiv_zero:
        unknown = set(args.fix_iiv_zero) - {p.name for p in model.parameters if p.iiv is not None}
        if unknown:
            ap.error(f"--fix-iiv-zero: {sorted(unknown)} have no IIV in the model")
        model = model.replace(parameters=tuple(dataclasses.replace(p, iiv=None) if p.name in args.fix_iiv_zero else p
                                               for p in model.parameters))
    init = None
    if args.init is not None:
        from il2pkpd.io.fits import load_fit

        init = load_fit(args.init, model=model)
    options = SolverOptions(rtol=1e-4, atol=1e-7, solver="rodas4")
    extra = {"init": init, "mass_matrix": args.mass_matrix} if init is not None else {}
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", Il2pkpdWarning)
        fit = il2pkpd.fit(model, data, draws=args.draws, tune=args.tune, chains=args.chains, seed=args.seed,
                          options=options, predictive_draws=0, sampler=args.sampler, progressbar=True, **extra)
    wall = time.perf_counter() - t0
    if args.save_fit is not None:
        from il2pkpd.io.fits import write_fit

        write_fit(fit, args.save_fit)
    truth = true_values(truth_model, {int(v) for v in table.loc[table["EVID"] == 0, "DVID"].dropna()} - {0})
    truth = {k: v for k, v in truth.items() if not (args.no_mi and k == "p_mi_1y") and k not in {f"omega_{n}" for n in args.fix_iiv_zero}}
    post = fit.idata["posterior"]
    rows = {}
    for name, value in truth.items():
        x = np.asarray(post[name].values).ravel()
        lo, med, hi = np.quantile(x, [0.05, 0.5, 0.95])
        rows[name] = {"true": value, "median": float(med), "q05": float(lo), "q95": float(hi), "covered": bool(lo <= value <= hi),
                      "r_hat": float(fit.summary.loc[name, "r_hat"]), "ess_bulk": float(fit.summary.loc[name, "ess_bulk"])}
    stats = fit.idata["sample_stats"]
    total = args.chains * args.draws
    divergences = int(np.asarray(stats["diverging"].values).sum())
    steps = np.asarray(stats["n_steps"].values) if "n_steps" in stats else None
    result = {
        "benchmark": "recovery", "date": time.strftime("%Y-%m-%d %H:%M"), "cpu_count": os.cpu_count(), "machine": platform.machine(),
        "synthetic": True, "design": "designs.ivory()", "subjects": {"aldesleukin": args.n_il2, "placebo": args.n_placebo}, "seed": args.seed,
        "chains": args.chains, "tune": args.tune, "draws": args.draws, "solver": dataclasses.asdict(options),
        "sampler": args.sampler, "mi_rows": not args.no_mi, "iiv_left_out": list(args.fix_iiv_zero),
        "init": str(args.init) if args.init is not None else None, "mass_matrix": fit.info.get("mass_matrix"),
        "chain_method": fit.info.get("chain_method"),
        "initial_values": fit.info.get("initial_values"), "parameterization": fit.info.get("parameterization"),
        "estimated": list(ESTIMATED), "wall_time_s": wall, "divergences": divergences, "divergence_rate": divergences / total,
        "mean_leapfrog_steps": float(steps.mean()) if steps is not None else None,
        "max_r_hat": max(r["r_hat"] for r in rows.values()), "min_ess_bulk": min(r["ess_bulk"] for r in rows.values()),
        "min_ess_bulk_per_s": min(r["ess_bulk"] for r in rows.values()) / wall,
        "all_covered": all(r["covered"] for r in rows.values()), "quantities": rows,
        "warnings": [str(w.message) for w in caught], "mi_events_by_arm": n_events,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"recovery-{time.strftime('%Y%m%d-%H%M%S')}.json"
    atomic_write(out, lambda p: p.write_text(json.dumps(result, indent=1)))
    print("| quantity | true | posterior median [90% interval] | covered | R-hat | ESS bulk |")
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['true']:.4g} | {r['median']:.4g} [{r['q05']:.4g}, {r['q95']:.4g}] | {'yes' if r['covered'] else '**no**'} "
              f"| {r['r_hat']:.3f} | {r['ess_bulk']:.0f} |")
    print(f"wall {wall:.0f} s; divergences {divergences}/{total}; mean leapfrog steps {result['mean_leapfrog_steps']}; "
          f"min ESS bulk/s {result['min_ess_bulk_per_s']:.3f}; wrote {out}")


if __name__ == "__main__":
    main()
