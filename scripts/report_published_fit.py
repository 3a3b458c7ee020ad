"""Write fits/ivory-published/checks.csv and fits/README.md's tables from the stored fit.

    .venv/bin/python scripts/report_published_fit.py [--draws 100]

Posterior predictive checks against the published targets (il2pkpd.inference.calibration.
published_checks), the importance rounds, the IVORY-FINALE event split (finale_split), the
power-scaling prior sensitivity (arviz_stats.psense_summary) and the prior vs posterior table of
every estimated parameter.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import il2pkpd
from il2pkpd.inference.calibration import finale_split, posterior_predictions, published_checks
from il2pkpd.io.fits import load_fit
from il2pkpd.io.output import atomic_write

ROOT = Path(__file__).resolve().parents[1]
#: the parameters between TBR and the MI hazard (BRIEF 8.4)
EVENT_LINK = ("beta_tbr", "k_m", "delta", "p_mi_1y", "k_weib")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--draws", type=int, default=100)
    args = ap.parse_args()
    model = il2pkpd.load_model("ivory")
    fit = load_fit(ROOT / "fits" / "ivory-published", model=model)
    predictions = posterior_predictions(fit, model, draws=args.draws)  # solved once, read by both tables
    checks = published_checks(fit, model, predictions=predictions)
    atomic_write(ROOT / "fits" / "ivory-published" / "checks.csv", lambda p: checks.to_csv(p, index=False))
    s = fit.summary
    lines = ["| parameter | prior mean (sd) | posterior mean (sd) | 90% interval | sd ratio | informed |", "|---|---|---|---|---|---|"]
    for name, r in s.iterrows():
        lines.append(f"| `{name}` | {r.prior_mean:.4g} ({r.prior_sd:.3g}) | {r['mean']:.4g} ({r.sd:.3g}) | {r.q5:.4g} - {r.q95:.4g} | "
                     f"{r.sd_ratio:.2f} | {'**yes**' if r.informed else 'no (prior)'} |")
    params = "\n".join(lines)
    lines = ["| target | reported | model: posterior median (5-95%) | replicated 90% interval | reported inside |", "|---|---|---|---|---|"]
    for _, r in checks.iterrows():
        lines.append(f"| `{r.target}` ({r.unit}) | {r.reported:.4g} | {r.model_median:.4g} ({r.model_q05:.4g} - {r.model_q95:.4g}) | "
                     f"{r.replicated_q05:.4g} - {r.replicated_q95:.4g} | {'yes' if r.inside else '**no**'} |")
    ppc = "\n".join(lines)
    info = fit.info
    split = finale_split(fit, model, predictions=predictions)
    finale = _finale_text(split, s, bool(info.get("event_evidence")))
    psense = _psense_table(fit, s)
    text = (ROOT / "fits" / "README.template.md").read_text()
    text = (text.replace("{{PARAMS}}", params).replace("{{CHECKS}}", ppc)
            .replace("{{DIAGNOSTICS}}", _diagnostics_text(info)).replace("{{WALL}}", f"{info['wall_time_s'] / 60:.0f}")
            .replace("{{LOGP}}", f"{info['log_posterior_mode']:.2f}").replace("{{NVIRT}}", str(info["n_virtual"]))
            .replace("{{NCHECK}}", str(args.draws)).replace("{{METHOD}}", info["method"]).replace("{{FINALE}}", finale)
            .replace("{{PSENSE}}", psense))
    atomic_write(ROOT / "fits" / "README.md", lambda p: p.write_text(text))
    print(ppc)
    print(params)


def _finale_text(split: dict, summary, event_evidence: bool) -> str:
    """The predicted IVORY-FINALE split, the hazard ratio and the evidence behind them, in words
    that follow the numbers (nothing here is written before the fit is known)."""
    rows = ["| arm | n | observed MI by 2 years | expected MIs: median (90%) | posterior predictive count, 90% |", "|---|---|---|---|---|"]
    for arm, label in (("il2", "aldesleukin"), ("placebo", "placebo")):
        a = split[arm]
        e = a["expected_count"]
        rows.append(f"| {label} | {a['n']} | {a['observed']} | {e['median']:.2f} ({e['q05']:.2f} - {e['q95']:.2f}) | "
                    f"{a['predictive_count_90'][0]} - {a['predictive_count_90'][1]} |")
    hr = split["hazard_ratio"]
    link = [n for n in EVENT_LINK if n in summary.index]
    informed = [n for n in link if bool(summary.loc[n, "informed"])]
    prior_only = [n for n in link if not bool(summary.loc[n, "informed"])]
    words = (f"Two-year hazard ratio, aldesleukin vs placebo (ratio of the arms' cumulative hazards): median {hr['median']:.3f}, "
             f"90% interval {hr['q05']:.3f} - {hr['q95']:.3f}; posterior probability that it is below 1: {hr['p_below_1']:.2f} "
             f"(from {split['draws']} posterior draws). ")
    words += ("The evidence behind it: the IVORY-FINALE counts themselves (0/28 vs 3/27, inferred [I]), the IVORY TBR difference at "
              "day 61 (S1)" + (", and the Figueroa and BIOVASC hazard ratios on `beta_tbr` (S80, S90). " if event_evidence else
                               "; the TBR-to-hazard link has only its prior (BRIEF 8.4). "))
    words += (f"Of the event-link parameters, {informed} are informed by the data (posterior SD below 80% of the prior's); "
              if informed else "None of the event-link parameters is informed by the data (each posterior SD is at least 80% of the prior's); ")
    words += (f"{prior_only} stay at their priors, so the split is only as certain as those priors." if prior_only else "")
    diff = split["placebo"]["expected_count"]["median"] - split["il2"]["expected_count"]["median"]
    inside = all(split[a]["predictive_count_90"][0] <= split[a]["observed"] <= split[a]["predictive_count_90"][1] for a in ("il2", "placebo"))
    words += (f" In arms of this size the posterior expects {diff:.2f} fewer MIs on aldesleukin over two years; the observed 0 vs 3 "
              f"{'lies inside' if inside else 'falls outside'} the two arms' 90% predictive counts.")
    if hr["q95"] > 1.0 > hr["q05"]:
        words += (" The interval includes 1: the posterior does not predict a clear treatment effect on MI, and the observed 0 vs 3 "
                  "lies inside the predictive counts because the counts are small.")
    return "\n".join(rows) + "\n\n" + words


def _psense_table(fit, summary) -> str:
    import warnings

    from arviz_stats import psense_summary

    if not {"log_prior", "log_likelihood"} <= set(fit.idata.children):
        return ("Not available for this fit: it stores no log prior and log-likelihood per draw (it was made before "
                "`calibrate_published` recorded them).")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its advice line is about interpretation, printed below instead
        ps = psense_summary(fit.idata)
    atomic_write(ROOT / "fits" / "ivory-published" / "psense.csv", lambda p: ps.to_csv(p, index_label="parameter"))
    informed = [n for n in ps.index if n in summary.index and bool(summary.loc[n, "informed"])]
    # the parameters the data do not inform have a true likelihood sensitivity near 0: what they
    # show is the Monte Carlo noise of these importance-resampled draws
    floor = float(ps.loc[[n for n in ps.index if n not in informed], "likelihood"].max()) if len(informed) < len(ps) else float("nan")
    lines = ["| parameter | prior sensitivity | likelihood sensitivity | psense_summary's diagnosis (threshold 0.05) |", "|---|---|---|---|"]
    for name in informed:
        r = ps.loc[name]
        lines.append(f"| `{name}` | {r['prior']:.3f} | {r['likelihood']:.3f} | {r['diagnosis']} |")
    note = (f"\n\nThe parameters the data inform (posterior SD below 80% of the prior's) are listed. Read the numbers against the "
            f"noise of this estimate: the parameters the data do not inform, whose likelihood sensitivity is near 0 in truth, show up "
            f"to {floor:.3f} here ({_draws_origin(fit.info)}), so a likelihood "
            "sensitivity below that, and the 0.05 threshold of the diagnosis column, cannot be told from 0 with these draws. The prior "
            "sensitivities of all parameters are in `fits/ivory-published/psense.csv`.")
    return "\n".join(lines) + note


def _diagnostics_text(info: dict) -> str:
    """The sampler's own check, in words and a table: importance rounds, or SMC stages."""
    smc = info.get("smc")
    if smc is not None:
        lines = ["| stage | beta | ESS share before resampling | acceptance | Metropolis steps | moved | correlation with start |",
                 "|---|---|---|---|---|---|---|"]
        for r in smc["stages"]:
            lines.append(f"| {r['stage']} | {r['beta']:.4g} | {r['ess_share']:.2f} | {r['acceptance']:.2f} | {r['steps']} | "
                         f"{r['moved_share']:.0%} | {r['correlation_with_start']:.3f} |")
        verdict = ("every stage's moves passed that check." if smc["moves_mixed"] else
                   "**some stages stopped their moves at the step limit before passing it**: the draws may under-represent the spread.")
        return (f"{info['draws']} stored draws of {smc['particles']} particles, {smc['evaluations']} evaluations of the log posterior; "
                f"log marginal likelihood {smc['log_evidence']:.2f}. The check: {smc['check']}; {verdict}\n\n" + "\n".join(lines))
    rounds = ["| round | proposals | Pareto k-hat (pool so far) | importance ESS | failed to solve |", "|---|---|---|---|---|"]
    for r in info.get("importance_rounds", []):
        rounds.append(f"| {r['round']} | {r['proposals']} | {r['pareto_khat']:.3f} | {r['importance_ess']:.1f} | {r['failed_to_solve']} |")
    rounds = "\n".join(rounds) if "importance_rounds" in info else "(One importance round from the Laplace normal: this fit predates the adaptive rounds.)"
    return (f"{info['draws']} stored draws from {info.get('proposals', info['draws'])} proposals; Pareto k-hat = {info['pareto_khat']:.2f}, "
            f"importance ESS = {info['importance_ess']:.0f}, {info.get('proposals_failed_to_solve', '?')} proposals failed to solve. "
            f"{_approx_text(info)}\n\n{rounds}")


def _draws_origin(info: dict) -> str:
    if info.get("smc") is not None:
        return f"the draws are {info['draws']} SMC particles"
    return f"the draws are resampled from an importance ESS of {info['importance_ess']:.0f}"


def _approx_text(info: dict) -> str:
    if info.get("approximation") == "importance":
        return ("k-hat is below 0.7, so the stored draws are the importance-resampled ones: draws from the exact posterior "
                "of this likelihood, up to the importance sampling's Monte Carlo error.")
    return ("k-hat is not below 0.7, so the importance correction cannot be trusted and **the stored draws are the Laplace "
            "normal itself** (failed solves dropped): its spreads are local curvature, and tails, skew and any second mode "
            "of the exact posterior are not represented.")


if __name__ == "__main__":
    main()
