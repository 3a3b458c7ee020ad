"""Simulation-based calibration (Talts et al. 2018) of il2pkpd's NUTS fit, reduced PK + Treg model.

If the sampler and the likelihood are right, then for parameters drawn from the prior and
data simulated from them, the rank of each true value among its posterior draws is uniform.
Every replicate:

1. draws every free quantity from the PyMC model's own prior (`pm.draw`): typical values,
   omegas, residual SDs and each subject's standard-normal random effects ``z``;
2. simulates a SYNTHETIC LILACS-like trial with il2pkpd's solver: 8 subjects, 1.5 MIU s.c.
   daily x5; IL-2 at 2 h and 6 h after the first dose and 2 h after the fifth; Treg fold at
   days 2, 4, 5, 7, 10 and 14; proportional residual error at the drawn SDs;
3. fits it with `il2pkpd.fit` (nutpie, 2 chains x 150 draws after 150 tuning steps) and
   records, per population quantity, the rank of the true value among ``--keep`` evenly
   thinned posterior draws (0..keep). ``--keep 39``: ranks from autocorrelated draws are not
   uniform even for a correct sampler, so keep stays below the smallest bulk ESS a fit
   reaches (~50 for ec50, kprol and omega_kprol with these chains); each replicate's ESS
   and R-hat are recorded.

Uniformity: ranks binned into ``--bins`` equal bins, Pearson chi-square against the uniform
(df = bins - 1) per quantity, and over all quantities pooled (approximate: the quantities
of one replicate are not independent); p-values are reported with a Bonferroni threshold
over the quantities (0.05 / n). Replicates are appended to a JSONL file
as they finish, so an interrupted run resumes where it stopped.

    .venv/bin/python benchmarks/bench_sbc.py --replicates 100          # ~110 s per replicate on 2 cores
    .venv/bin/python benchmarks/bench_sbc.py --replicates 4 --out /tmp/sbc.jsonl   # smoke run

Model: benchmarks/sbc/pk_treg.toml. Results: benchmarks/results/sbc-*.json.
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
MODEL = HERE / "sbc" / "pk_treg.toml"
CONC_TIMES = (2 / 24, 6 / 24, 4 + 2 / 24)
TREG_TIMES = (2.0, 4.0, 5.0, 7.0, 10.0, 14.0)
DOSE_MIU, N_DOSES, N_SUBJECTS = 1.5, 5, 8


def design_records(dv_conc=None, dv_treg=None):
    """The trial's records per subject (DV placeholders of 1 unless given, per subject)."""
    from il2pkpd.dosing import Record, Records

    out = []
    for i in range(N_SUBJECTS):
        recs = [Record(float(d), 1, DOSE_MIU, 1) for d in range(N_DOSES)]
        for j, t in enumerate(CONC_TIMES):
            recs.append(Record(t, 0, cmt=1, dvid=1, dv=1.0 if dv_conc is None else float(dv_conc[i, j])))
        for j, t in enumerate(TREG_TIMES):
            recs.append(Record(t, 0, cmt=1, dvid=2, dv=1.0 if dv_treg is None else float(dv_treg[i, j])))
        recs.sort(key=lambda r: (r.time, -r.evid))
        out.append(Records([dataclasses.replace(r, row=k) for k, r in enumerate(recs)], subject=i + 1))
    return out


def draw_truth(pmodel, seed: int) -> dict[str, np.ndarray]:
    import pymc as pm

    names = [v.name for v in pmodel.free_RVs]
    values = pm.draw([pmodel[n] for n in names], random_seed=seed)
    return {n: np.asarray(v) for n, v in zip(names, values)}


def simulate_data(model, truth: dict, seed: int):
    """Observations at the true parameters: predictions from il2pkpd's solver, times
    (1 + sigma * eps) (proportional error)."""
    from il2pkpd.likelihood import JointLoglik
    from il2pkpd.solve import SolverOptions

    loglik = JointLoglik(model, design_records(), SolverOptions(rtol=1e-8, atol=1e-10))
    theta = np.tile([p.value for p in model.parameters], (N_SUBJECTS, 1))
    names = model.parameter_names
    for p in model.parameters:
        if p.name in truth:
            col = np.full(N_SUBJECTS, float(truth[p.name]))
            if f"omega_{p.name}" in truth:
                col = col * np.exp(float(truth[f"omega_{p.name}"]) * truth[f"z_{p.name}"])
            theta[:, names.index(p.name)] = col
    cov = np.zeros((N_SUBJECTS, 0))
    pred, status = loglik._predict(theta, cov)
    pred, status = np.asarray(pred), np.asarray(status)
    if (status != 0).any():
        return None
    rng = np.random.default_rng(seed)
    kinds = np.array([1] * len(CONC_TIMES) + [2] * len(TREG_TIMES))
    order = np.argsort(np.r_[CONC_TIMES, TREG_TIMES], kind="stable")  # the records' time order
    dvid_by_slot = kinds[order]
    conc = np.empty((N_SUBJECTS, len(CONC_TIMES)))
    treg = np.empty((N_SUBJECTS, len(TREG_TIMES)))
    for i in range(N_SUBJECTS):
        p_i = pred[i][loglik._kind[i] == 1]
        c_pred, t_pred = p_i[dvid_by_slot == 1], p_i[dvid_by_slot == 2]
        conc[i] = c_pred * (1 + float(truth["sigma_conc"]) * rng.standard_normal(len(c_pred)))
        treg[i] = t_pred * (1 + float(truth["sigma_treg"]) * rng.standard_normal(len(t_pred)))
    return conc, treg


def one_replicate(model, pmodel, rep: int, seed: int, keep: int, draws: int, tune: int) -> dict:
    import il2pkpd

    truth = draw_truth(pmodel, seed + rep)
    data = simulate_data(model, truth, seed + 10_000 + rep)
    if data is None:
        return {"replicate": rep, "skipped": "the true parameters do not solve"}
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings are recorded below, not printed
        fit = il2pkpd.fit(model, design_records(*data), draws=draws, tune=tune, chains=2, sampler="nutpie", seed=seed + rep,
                          predictive_draws=0)
    wall = time.perf_counter() - t0
    post = fit.idata["posterior"]
    ranks, rhat, ess = {}, {}, {}
    for name in fit.summary.index:
        x = np.asarray(post[name].values).reshape(-1)
        thin = x[np.linspace(0, len(x) - 1, keep).round().astype(int)]
        ranks[name] = int(np.sum(thin < float(truth[name])))
        rhat[name] = float(fit.summary.loc[name, "r_hat"])
        ess[name] = float(fit.summary.loc[name, "ess_bulk"])
    return {"replicate": rep, "ranks": ranks, "rhat": rhat, "ess_bulk": ess, "divergences": fit.info["divergences"],
            "wall_s": wall, "truth": {k: float(truth[k]) for k in ranks}}


def chi_square(ranks: np.ndarray, keep: int, bins: int) -> tuple[float, float]:
    """Pearson chi-square of ranks (0..keep) in ``bins`` equal bins against the uniform."""
    from scipy import stats

    edges = np.linspace(0, keep + 1, bins + 1)
    counts, _ = np.histogram(ranks, bins=edges)
    expected = len(ranks) * np.diff(edges) / (keep + 1)
    chi2 = float(np.sum((counts - expected) ** 2 / expected))
    return chi2, float(stats.chi2.sf(chi2, bins - 1))


def report(rows: list[dict], keep: int, bins: int) -> dict:
    done = [r for r in rows if "ranks" in r]
    names = list(done[0]["ranks"]) if done else []
    table = {}
    for n in names:
        rk = np.array([r["ranks"][n] for r in done])
        chi2, p = chi_square(rk, keep, bins)
        table[n] = {"chi2": chi2, "p": p, "mean_rank_fraction": float(np.mean(rk) / keep),
                    "max_rhat": float(max(r["rhat"][n] for r in done)), "min_ess_bulk": float(min(r["ess_bulk"][n] for r in done))}
    pooled = np.concatenate([[r["ranks"][n] for r in done] for n in names]) if names else np.array([])
    chi2, p = chi_square(pooled, keep, bins) if len(pooled) else (float("nan"), float("nan"))
    return {"replicates": len(done), "skipped": len(rows) - len(done), "quantities": table, "pooled": {"chi2": chi2, "p": p},
            "bonferroni_threshold": 0.05 / max(1, len(names)),
            "divergent_replicates": int(sum(r["divergences"] > 0 for r in done)),
            "divergences_total": int(sum(r["divergences"] for r in done)),
            "median_fit_wall_s": float(np.median([r["wall_s"] for r in done])) if done else float("nan")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--replicates", type=int, default=100)
    ap.add_argument("--keep", type=int, default=39, help="posterior draws kept per fit (ranks 0..keep)")
    ap.add_argument("--bins", type=int, default=5)
    ap.add_argument("--draws", type=int, default=150, help="NUTS draws per chain (2 chains)")
    ap.add_argument("--tune", type=int, default=150)
    ap.add_argument("--seed", type=int, default=20261121)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "sbc-pk_treg.jsonl", help="replicates so far (resumed)")
    ap.add_argument("--shard", default="0/1", help="K/N: run replicates with index %% N == K (one process per core)")
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args()
    if args.keep < args.bins:
        raise SystemExit(f"--keep ({args.keep}) must be at least --bins ({args.bins})")

    rows = [json.loads(line) for line in args.out.read_text().splitlines() if line.strip()] if args.out.exists() else []
    settings = {"keep": args.keep, "draws": args.draws, "tune": args.tune, "seed": args.seed}
    for r in rows:  # resuming with other settings would mix incomparable ranks
        differ = {k: (r["settings"][k], v) for k, v in settings.items() if r.get("settings", settings)[k] != v}
        if differ:
            raise SystemExit(f"{args.out} holds replicates run with other settings (file, now): {differ}; use another --out")
    if not args.report_only:
        import il2pkpd
        from il2pkpd.inference import build_pymc_model

        model = il2pkpd.load_model(MODEL)
        pmodel = build_pymc_model(model, design_records())
        k, n = (int(x) for x in args.shard.split("/"))
        done = {r["replicate"] for r in rows}
        todo = [i for i in range(args.replicates) if i % n == k and i not in done]
        print(f"{len(done)} replicates on file, {len(todo)} to run (shard {k}/{n})", flush=True)
        for rep in todo:
            row = {**one_replicate(model, pmodel, rep, args.seed, args.keep, args.draws, args.tune), "settings": settings}
            with open(args.out, "a") as fh:  # one line per replicate: a crash loses at most the one running
                fh.write(json.dumps(row) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            print(f"replicate {rep}: {row.get('wall_s', 0):.0f} s, divergences {row.get('divergences', '-')}", flush=True)
        rows = [json.loads(line) for line in args.out.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r["replicate"] < args.replicates]
    res = report(rows, args.keep, args.bins)
    res.update({"benchmark": "sbc", "model": str(MODEL.relative_to(HERE.parent)), "subjects": N_SUBJECTS, "keep": args.keep,
                "bins": args.bins, "draws_per_chain": args.draws, "tune": args.tune, "chains": 2, "seed": args.seed,
                "date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.machine(), "cpu_count": os.cpu_count()})
    print(f"{res['replicates']} replicates ({res['skipped']} skipped), {res['divergent_replicates']} with divergences; "
          f"median fit {res['median_fit_wall_s']:.0f} s")
    print(f"{'quantity':<14}{'chi2':>8}{'p':>8}{'mean rank':>11}{'max R-hat':>11}{'min ESS':>9}")
    for n, q in res["quantities"].items():
        print(f"{n:<14}{q['chi2']:>8.1f}{q['p']:>8.3f}{q['mean_rank_fraction']:>11.2f}{q['max_rhat']:>11.3f}{q['min_ess_bulk']:>9.0f}")
    print(f"pooled chi2 {res['pooled']['chi2']:.1f}, p {res['pooled']['p']:.3f}; Bonferroni threshold {res['bonferroni_threshold']:.4f}")
    out = HERE / "results" / f"sbc-{time.strftime('%Y%m%d-%H%M%S')}.json"
    from il2pkpd.io.output import atomic_write

    atomic_write(out, lambda tmp: Path(tmp).write_text(json.dumps(res, indent=1)))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
