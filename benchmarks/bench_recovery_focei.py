"""FOCE-I (or Laplace) recovery on the 60-subject IVORY design (SYNTHETIC; issue 14).

The trial of ``bench_recovery.py`` (``designs.ivory()``: 31:29, Treg and NK at the 7 registry
visits, TBR at baseline and day 61, MI over two years) simulated from ``models/ivory.toml`` at
its typical values, then fitted by ``il2pkpd.fit(method="focei")``: the population parameters
the Gaussian rows inform (``ESTIMATED`` less the MI risk), their omegas and the residual SDs.
By default the MI rows are left out (FOCE-I takes Gaussian rows only; NONMEM needs LAPLACIAN
for events) and ``p_mi_1y`` is fixed at its true value; ``--method laplace --mi`` keeps them
and estimates ``p_mi_1y`` (third derivatives of the solve: slower).

The subjects are split over both cores (``IL2PKPD_CPU_DEVICES=2``, set here before JAX starts:
the forward-mode solves of FOCE-I shard like the reverse-mode ones).

Reports, per quantity, the truth, the estimate, the SE-based 90% interval (estimate +- 1.645
SE on the natural scale, from the sandwich covariance) and whether it covers the truth (with
``--sir N``, also the SIR 90% interval: the 5th-95th percentiles of the N/5 resamples); the OFV,
iterations, evaluations and wall time (compilation included: a fresh process, persistent
compile cache off).

``--fix-iiv-zero ec50`` fits without ec50's IIV while the data keep it (a misspecified fit, as
NONMEM practice makes one on real data); ``--simulate-reduced`` simulates without it too, which
separates the estimator's own coverage from the misspecification's bias.

    IL2PKPD_NO_COMPILE_CACHE=1 .venv/bin/python benchmarks/bench_recovery_focei.py
    .venv/bin/python benchmarks/bench_recovery_focei.py --fix-iiv-zero ec50 --simulate-reduced --seed 2

Results: benchmarks/results/recovery-focei-*.json (written atomically).
"""

from __future__ import annotations

import os

os.environ.setdefault("IL2PKPD_CPU_DEVICES", "2")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-il2", type=int, default=31)
    ap.add_argument("--n-placebo", type=int, default=29)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--ofv-tol", type=float, default=1e-3, help="the OFV-change stopping rule (estimate(ofv_tol=...))")
    ap.add_argument("--fix-iiv-zero", action="append", default=[], metavar="PARAMETER",
                    help="fit without the IIV of this parameter (NONMEM practice when its variance went to 0); the data keep it")
    ap.add_argument("--method", default="focei", choices=["focei", "foce", "laplace"], help="the estimation method (default focei)")
    ap.add_argument("--priors", action="store_true",
                    help="MAP-FOCE-I (fit(priors=True)): the model file's priors added, the covariance R^-1 of the penalised objective "
                         "(a starting mass matrix closer to the NUTS posterior, which has the same priors)")
    ap.add_argument("--mi", action="store_true", help="keep the MI rows (two years) and estimate p_mi_1y: needs --method laplace")
    ap.add_argument("--simulate-reduced", action="store_true",
                    help="simulate the trial without the IIV --fix-iiv-zero leaves out (a correctly specified fit; default: the data keep it)")
    ap.add_argument("--sir", type=int, default=0, metavar="N",
                    help="also draw N SIR samples (Dosne et al. 2016; a fifth kept) and report SIR 90%% intervals (percentiles 5-95)")
    ap.add_argument("--sir-iterations", type=int, default=1, help="iterate SIR (fit(sir_iterations=...); Dosne et al. 2017)")
    ap.add_argument("--save-fit", type=Path, default=None, metavar="FOLDER",
                    help="also write the fit folder (write_fit): bench_recovery.py --init FOLDER starts NUTS from it")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()

    import sys

    sys.path.insert(0, str(HERE))
    from bench_recovery import ESTIMATED, recovery_model, true_values

    import numpy as np

    import il2pkpd
    from il2pkpd.design import designs, simulate_trial
    from il2pkpd.errors import Il2pkpdWarning
    from il2pkpd.io.nonmem import from_dataframe
    from il2pkpd.io.output import atomic_write
    from il2pkpd.solve import SolverOptions

    if args.mi and args.method != "laplace":
        ap.error(f"--mi: the MI rows are time-to-event rows, which only --method laplace takes (NONMEM's LAPLACIAN), not {args.method!r}")
    estimated = tuple(e for e in ESTIMATED if args.mi or e != "p_mi_1y")
    model = recovery_model().estimate_only(*estimated)
    reduced = model
    if args.fix_iiv_zero:
        from dataclasses import replace

        unknown = set(args.fix_iiv_zero) - {p.name for p in model.parameters if p.iiv is not None}
        if unknown:
            ap.error(f"--fix-iiv-zero: {sorted(unknown)} have no IIV in the model")
        reduced = model.replace(parameters=tuple(replace(p, iiv=None) if p.name in args.fix_iiv_zero else p for p in model.parameters))
    if args.simulate_reduced and not args.fix_iiv_zero:
        ap.error("--simulate-reduced: give the IIV left out with --fix-iiv-zero")
    # by default the data keep the IIV the fit leaves out (NONMEM practice on real data: a
    # misspecified fit); --simulate-reduced simulates from the fitted model itself
    truth_model = reduced if args.simulate_reduced else model
    table = simulate_trial(designs.ivory(args.n_il2, args.n_placebo), truth_model, seed=args.seed)
    if not args.mi:
        table = table[table["EVENT"].isna()]
    data = from_dataframe(table)
    model = reduced
    options = SolverOptions(rtol=1e-4, atol=1e-7, solver="rodas4")
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", Il2pkpdWarning)
        fit = il2pkpd.fit(model, data, method=args.method, options=options, priors=args.priors, ofv_tol=args.ofv_tol, progressbar=True,  # a line per iteration
                          sir_samples=args.sir, **({"sir_iterations": args.sir_iterations} if args.sir else {}))
    wall = time.perf_counter() - t0
    if args.save_fit is not None:
        from il2pkpd.io.fits import write_fit

        write_fit(fit, args.save_fit)
    dvids = {int(v) for v in table.loc[table["EVID"] == 0, "DVID"].dropna()} - {0}
    truth = {k: v for k, v in true_values(truth_model, dvids).items() if (args.mi or k != "p_mi_1y") and k not in {f"omega_{n}" for n in args.fix_iiv_zero}}
    # the OFV at the truth tells an optimiser that stopped short (OFV(truth) < OFV(estimate))
    # from a likelihood whose maximum lies elsewhere on this data set (a ridge, chance); the
    # likelihood-ratio statistic against chi2(number estimated) is a joint test of the truth
    from scipy.stats import chi2

    from il2pkpd.likelihood import MarginalLikelihood, default_error_params

    ml = MarginalLikelihood(model, data, method=args.method, options=options)
    errors = default_error_params(model)  # the model file's values are the truth (recovery_model)
    # (with --fix-iiv-zero this is the OFV of the truth's typical values in the reduced model)
    ofv_truth = ml.modes(np.array([p.value for p in model.parameters]), np.diag([truth[f"omega_{n}"] ** 2 for n in ml.iiv_names]), errors).ofv
    n_est = len(fit.summary)
    lrt = {"ofv_at_truth": ofv_truth, "ofv_at_estimate": fit.info.get("ofv"), "difference": ofv_truth - fit.info.get("ofv"),
           "df": n_est, "p_value": float(chi2.sf(ofv_truth - fit.info.get("ofv"), n_est))}
    rows = {}
    table_ = fit.summary  # NONMEM's table: THETA by name, OMEGA as omega2_<name> (a variance), SIGMA as <observation>_<add|prop>
    z90 = 1.6448536269514722
    for name, r in table_.iterrows():
        e, se = float(r["estimate"]), float(r["se"])
        lo, hi = e - z90 * se, e + z90 * se
        if name.startswith("omega2_"):  # the truth is an SD: the interval's ends map through sqrt
            key, e, lo, hi = f"omega_{name[7:]}", e**0.5, max(lo, 0.0) ** 0.5, max(hi, 0.0) ** 0.5
        elif r["kind"] == "SIGMA":
            key = next((k for k in truth if k.startswith(f"sigma_{name.rsplit('_', 1)[0]}")), name)
        else:
            key = name
        if key in truth:
            rows[key] = {"true": truth[key], "estimate": e, "se_estimation_scale": se, "q05": lo, "q95": hi,
                         "covered": bool(lo <= truth[key] <= hi) if np.isfinite(se) else None}
    sir = fit.info.get("sir")
    if sir is not None and fit.idata is not None:
        post = fit.idata["posterior"]
        for name in post.data_vars:
            key = name if name in truth else next((k for k in truth if name.startswith("sigma_") and k.startswith(name)), None)
            if key in rows:
                q05, q95 = np.percentile(np.asarray(post[name]).ravel(), [5, 95])
                rows[key].update(sir_q05=float(q05), sir_q95=float(q95), sir_covered=bool(q05 <= truth[key] <= q95))
    result = {"benchmark": "recovery-focei", "date": time.strftime("%Y-%m-%d %H:%M"), "cpu_count": os.cpu_count(), "machine": platform.machine(),
              "devices": os.environ.get("IL2PKPD_CPU_DEVICES"), "synthetic": True, "design": "designs.ivory()" + ("" if args.mi else " without MI rows"), "method": args.method, "priors": args.priors,
              "subjects": {"aldesleukin": args.n_il2, "placebo": args.n_placebo}, "seed": args.seed, "estimated": list(estimated),
              "iiv_left_out": list(args.fix_iiv_zero), "data_simulated_with_that_iiv": not args.simulate_reduced,
              "ofv_tol": args.ofv_tol, "message": fit.info.get("message"), "wall_time_s": wall, "ofv": fit.info.get("ofv"), "iterations": fit.info.get("iterations"), "evaluations": fit.info.get("evaluations"),
              "converged": fit.info.get("converged"), "covariance_step": {k: v for k, v in fit.info.get("covariance_step", {}).items()
                                                                           if k in ("ok", "reason", "matrix", "condition_number")},
              "likelihood_ratio_test_of_the_truth": lrt,
              "all_covered": all(r["covered"] for r in rows.values()) if rows and all(r["covered"] is not None for r in rows.values()) else None, "quantities": rows,
              "sir": sir, "sir_all_covered": all(r.get("sir_covered", False) for r in rows.values()) if sir and sir.get("ok", True) else None,
              "warnings": [str(w.message) for w in caught]}
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"recovery-focei-{time.strftime('%Y%m%d-%H%M%S')}.json"
    atomic_write(out, lambda p: p.write_text(json.dumps(result, indent=1, default=str)))
    yes_no = {True: "yes", False: "**no**", None: "no SE"}
    print("| quantity | true | estimate [SE-based 90% interval] | covered | SIR 90% interval | covered |")
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        sir_cells = f"[{r['sir_q05']:.4g}, {r['sir_q95']:.4g}] | {yes_no[r['sir_covered']]}" if "sir_q05" in r else "- | -"
        print(f"| {name} | {r['true']:.4g} | {r['estimate']:.4g} [{r['q05']:.4g}, {r['q95']:.4g}] | {yes_no[r['covered']]} | {sir_cells} |")
    if sir:
        print(f"SIR: {({k: sir.get(k) for k in ('n_samples', 'n_resamples', 'ess', 'max_weight', 'failed_samples', 'dofv_resamples_q95', 'chi2_q95')})}")
    print(f"covariance step: {result['covariance_step']}")
    print(f"OFV at the truth {ofv_truth:.3f}, at the estimate {result['ofv']:.3f}: LRT {lrt['difference']:.2f} on {n_est} df, p = {lrt['p_value']:.3f}")
    print(f"wall {wall:.0f} s; OFV {result['ofv']}; iterations {result['iterations']}; evaluations {result['evaluations']}; wrote {out}")


if __name__ == "__main__":
    main()
