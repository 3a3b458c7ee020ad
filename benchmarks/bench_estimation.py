"""FOCE-I estimation against NUTS on the same data, in one run (issue 14).

R's theophylline data (12 subjects, ``pk1_oral``, proportional error; the data of
tests/reference/data/theoph): ``fit(method="focei")`` (estimate, covariance step) and
``fit(sampler="nutpie")`` (2 chains x ``--draws`` after as many warm-up iterations, Rodas4 at
the fit defaults' tolerances, as tests/reference/test_theophylline_fit.py), each run twice in
this process: the first run includes compilation (the persistent compilation cache is off),
the second is the warm run time. Also timed: the warfarin FOCE-I objective at NONMEM's
estimates (32 subjects, 8 random effects; the conditional modes from zero), cold and warm.

    IL2PKPD_NO_COMPILE_CACHE=1 .venv/bin/python benchmarks/bench_estimation.py [--draws 300]

Writes benchmarks/results/estimation-<time>.json and prints it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
import warnings
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = Path(os.environ.get("IL2PKPD_SHARED", ROOT.parent / "shared"))


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def theophylline(draws: int) -> dict:
    import il2pkpd
    from il2pkpd.io.nonmem import read_nonmem_csv

    model = il2pkpd.load_model("pk1_oral")
    data = read_nonmem_csv(ROOT / "tests" / "reference" / "data" / "theoph" / "data.csv")
    out = {}
    for label in ("cold", "warm"):
        fit, wall = _timed(lambda: il2pkpd.fit(model, data, method="focei"))
        out[f"focei_{label}_s"] = wall
    out.update(focei_ofv=fit.info["ofv"], focei_iterations=fit.info["iterations"], focei_evaluations=fit.info["evaluations"],
               focei_estimates=fit.estimates)
    nuts_options = il2pkpd.SolverOptions(solver="rodas4", rtol=1e-6, atol=1e-9)
    for label in ("cold", "warm"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nuts, wall = _timed(lambda: il2pkpd.fit(model, data, draws=draws, tune=draws, chains=2, seed=1, predictive_draws=0,
                                                    options=nuts_options))
        out[f"nuts_{label}_s"] = wall
    out.update(nuts_draws=draws, nuts_ess_bulk_min=float(nuts.summary["ess_bulk"].min()),
               ratio_nuts_to_focei_warm=out["nuts_warm_s"] / out["focei_warm_s"])
    return out


def warfarin_objective() -> dict:
    import numpy as np

    import il2pkpd
    from il2pkpd.io.nonmem import read_nonmem_csv
    from il2pkpd.likelihood import MarginalLikelihood

    ref = json.loads((SHARED / "conformance" / "warfarin" / "reference.json").read_text())["A_fixed_parameter_checks (strong)"]["emax3"]
    th, om = ref["nonmem_final_estimates"]["theta"], ref["nonmem_final_estimates"]["omega_diag"]
    e = math.exp
    typical = {"ktr": e(th["tktr"]), "ka": e(th["tka"]), "cl": e(th["tcl"]), "v": e(th["tv"]), "emax": 1 / (1 + e(-th["temax"])),
               "ec50": e(th["tec50"]), "kout": e(th["tkout"]), "e0": e(th["te0"])}
    model = il2pkpd.load_model("warfarin")
    model = model.replace(parameters=tuple(p if p.name in om else replace(p, iiv=None) for p in model.parameters))
    ml = MarginalLikelihood(model, read_nonmem_csv(SHARED / "conformance" / "warfarin" / "data.csv"), method="focei")
    theta = np.array([typical[p.name] for p in model.parameters])
    omega = np.diag([om[n] for n in ml.iiv_names])
    err = {"cp": {"add": th["pkadd.err"], "prop": th["prop.err"]}, "pca": {"add": th["pdadd.err"]}}
    out = {}
    for label in ("cold", "warm"):
        modes, wall = _timed(lambda: ml.modes(theta, omega, err))
        out[f"modes_{label}_s"] = wall
    out.update(ofv=modes.ofv, nonmem_ofv=ref["OFV_FOCEI_without_constant"], newton_iterations=modes.iterations)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=300)
    args = parser.parse_args()
    from il2pkpd.io.output import atomic_write

    result = {"machine": f"{os.cpu_count()} CPUs", "compile_cache": os.environ.get("IL2PKPD_NO_COMPILE_CACHE", "") == "",
              "warfarin_focei_objective": warfarin_objective(), "theophylline": theophylline(args.draws)}
    out = HERE / "results" / f"estimation-{time.strftime('%Y%m%d-%H%M%S')}.json"
    atomic_write(out, lambda p: p.write_text(json.dumps(result, indent=1, default=float)))
    print(json.dumps(result, indent=1, default=float))


if __name__ == "__main__":
    main()
