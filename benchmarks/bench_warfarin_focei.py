"""FOCE-I estimation of the warfarin PK/PD model (emax4: 5 random effects) from a start away
from NONMEM's estimates, against NONMEM 7.4.3's run and the other tools of
``shared/conformance/warfarin/reference.json`` (issue 14).

NONMEM's emax4 run ended "MINIMIZATION SUCCESSFUL" at OFV 1418.923 with ktr = ka (tktr = tka
= 0), a stationary point of this model: depot -> gut -> centre is symmetric in (ktr, ka),
so only the pair is identified (reference.json's identifiability warning). Starting off that
line (ktr 2, ka 0.5) the optimiser is free to find the OFV's minimum along it; the script
reports our OFV, NONMEM's, our OFV at NONMEM's estimates, every estimate beside NONMEM's and
the wall time.

    .venv/bin/python benchmarks/bench_warfarin_focei.py [--max-iter 300]

Writes benchmarks/results/warfarin-focei-<time>.json (atomically, at the end) and prints a
table; one line per iteration while it runs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("IL2PKPD_SHARED", HERE.parent.parent / "shared"))
NO_IIV = ("ktr", "ka", "emax")  # NONMEM's emax4 run: random effects on cl, v, ec50, kout, e0
START = {"ktr": 2.0, "ka": 0.5, "cl": 0.16, "v": 6.5, "emax": 0.95, "ec50": 1.5, "kout": 0.04, "e0": 100.0,
         "omega2_cl": 0.1, "omega2_v": 0.1, "omega2_ec50": 0.3, "omega2_kout": 0.02, "omega2_e0": 0.01,
         "cp_add": 0.6, "cp_prop": 0.2, "pca_add": 4.0}


def nonmem_natural(theta: dict) -> dict:
    e = math.exp
    return {"ktr": e(theta["tktr"]), "ka": e(theta["tka"]), "cl": e(theta["tcl"]), "v": e(theta["tv"]),
            "emax": 1 / (1 + e(-theta["temax"])), "ec50": e(theta["tec50"]), "kout": e(theta["tkout"]), "e0": e(theta["te0"]),
            "cp_add": theta["pkadd.err"], "cp_prop": theta["prop.err"], "pca_add": theta["pdadd.err"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-iter", type=int, default=300)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()

    import numpy as np

    import il2pkpd
    from il2pkpd.inference.estimation import estimate
    from il2pkpd.io.nonmem import read_nonmem_csv
    from il2pkpd.io.output import atomic_write
    from il2pkpd.likelihood import MarginalLikelihood

    ref = json.loads((SHARED / "conformance" / "warfarin" / "reference.json").read_text())["B_estimation_results (weak: the model is poorly identified)"]
    nm = ref["nonmem_7.4.3_FOCEI_emax4"]
    model = il2pkpd.load_model("warfarin")
    model = model.replace(parameters=tuple(replace(p, iiv=None) if p.name in NO_IIV else p for p in model.parameters))
    data = read_nonmem_csv(SHARED / "conformance" / "warfarin" / "data.csv")
    t0 = time.perf_counter()

    def progress(iteration, ofv, grad):
        print(f"iteration {iteration:4d}  OFV {ofv:.4f}  max|gradient| {grad:.3g}  {time.perf_counter() - t0:.0f} s", flush=True)

    est = estimate(model, data, method="focei", start=START, max_iter=args.max_iter, progress=progress)
    wall = time.perf_counter() - t0
    nm_nat = nonmem_natural(nm["theta"])
    ml = MarginalLikelihood(model, data, method="focei")
    iiv = ml.iiv_names
    at_nonmem = ml.modes(np.array([nm_nat.get(p.name, p.value) for p in model.parameters]), np.diag(nm["omega"]),
                         {"cp": {"add": nm_nat["cp_add"], "prop": nm_nat["cp_prop"]}, "pca": {"add": nm_nat["pca_add"]}}).ofv
    nm_values = {**{k: v for k, v in nm_nat.items()}, **{f"omega2_{n}": w for n, w in zip(iiv, nm["omega"])}}
    rows = {name: {"ours": value, "nonmem": nm_values.get(name), "se": float(est.table.loc[name, "se"])} for name, value in est.estimates.items()}
    result = {"benchmark": "warfarin FOCE-I (emax4)", "date": time.strftime("%Y-%m-%d %H:%M"), "cpu_count": os.cpu_count(),
              "start": START, "ofv": est.ofv, "nonmem_ofv": nm["OFV"], "our_ofv_at_nonmem_estimates": at_nonmem,
              "nonmem_status": nm["status"], "converged": est.info["converged"], "message": est.info["message"],
              "iterations": est.info["iterations"], "evaluations": est.info["evaluations"], "wall_time_s": wall,
              "covariance_step": {k: v for k, v in est.info.get("covariance_step", {}).items() if k in ("ok", "reason", "matrix", "condition_number")},
              "eta_shrinkage_percent": est.info["eta_shrinkage_percent"], "estimates": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"warfarin-focei-{time.strftime('%Y%m%d-%H%M%S')}.json"
    atomic_write(out, lambda p: p.write_text(json.dumps(result, indent=1, default=float)))
    print("| quantity | il2pkpd FOCE-I | SE | NONMEM 7.4.3 |")
    print("|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['ours']:.4g} | {r['se']:.3g} | {r['nonmem']:.4g} |" if r["nonmem"] is not None else f"| {name} | {r['ours']:.4g} | {r['se']:.3g} | - |")
    print(f"OFV {est.ofv:.3f} (NONMEM {nm['OFV']:.3f}; ours at NONMEM's estimates {at_nonmem:.3f}); {est.info['iterations']} iterations, "
          f"{wall:.0f} s; converged: {est.info['converged']} ({est.info['message']}); wrote {out}")


if __name__ == "__main__":
    main()
