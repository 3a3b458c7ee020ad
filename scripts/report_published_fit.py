"""Write fits/ivory-published/checks.csv and fits/README.md's tables from the stored fit.

    .venv/bin/python scripts/report_published_fit.py [--draws 100]

Posterior predictive checks against the published targets (il2pkpd.inference.calibration.
published_checks) and the prior vs posterior table of every estimated parameter.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import il2pkpd
from il2pkpd.inference.calibration import published_checks
from il2pkpd.io.fits import load_fit
from il2pkpd.io.output import atomic_write

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--draws", type=int, default=100)
    args = ap.parse_args()
    model = il2pkpd.load_model("ivory")
    fit = load_fit(ROOT / "fits" / "ivory-published", model=model)
    checks = published_checks(fit, model, draws=args.draws)
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
    text = (ROOT / "fits" / "README.template.md").read_text()
    text = (text.replace("{{PARAMS}}", params).replace("{{CHECKS}}", ppc)
            .replace("{{KHAT}}", f"{info['pareto_khat']:.2f}").replace("{{ESS}}", f"{info['importance_ess']:.0f}")
            .replace("{{DRAWS}}", str(info["draws"])).replace("{{WALL}}", f"{info['wall_time_s'] / 60:.0f}")
            .replace("{{LOGP}}", f"{info['log_posterior_mode']:.2f}").replace("{{NVIRT}}", str(info["n_virtual"]))
            .replace("{{NCHECK}}", str(args.draws)).replace("{{FAILED}}", str(info.get("proposals_failed_to_solve", "?")))
            .replace("{{APPROX}}", _approx_text(info))
            .replace("{{MI_IL2}}", f"{checks.set_index('target').loc['finale_mi_2y_il2_count', 'model_median']:.1f}")
            .replace("{{MI_PBO}}", f"{checks.set_index('target').loc['finale_mi_2y_placebo_count', 'model_median']:.1f}"))
    atomic_write(ROOT / "fits" / "README.md", lambda p: p.write_text(text))
    print(ppc)
    print(params)


def _approx_text(info: dict) -> str:
    if info.get("approximation") == "importance":
        return ("k-hat is below 0.7, so the stored draws are the importance-resampled ones: corrected towards the exact "
                "posterior.")
    return ("k-hat is not below 0.7, so the importance correction cannot be trusted and **the stored draws are the Laplace "
            "normal itself** (failed solves dropped): its spreads are local curvature, and tails, skew and any second mode "
            "of the exact posterior are not represented.")


if __name__ == "__main__":
    main()
