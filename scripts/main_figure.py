"""The main job's figure: the IVORY regimen against placebo over the calibrated posterior.

    .venv/bin/python scripts/main_figure.py [--out out/ivory.png] [--draws 100] [--horizon 365]

Typical-subject model predictions (no inter-individual variability) for ``--draws`` draws of
``fits/ivory-published``, IL-2 and placebo arms over the same draws, one panel per output of the
main job (concentration, Tregs, CD25, NK, TBR, TBR change, MI-free survival): the median and the
5-95% band, on a time axis that is linear over the 9 weeks of dosing and compressed over the
rest of the year. Model predictions, not trial data; the figure says so. About 30 s on 2 cores
with 100 draws (the stored posterior has 400).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

REGIMEN = "1.5 MIU sc qd x5 then 1.5 MIU sc qw x7"
REGIMEN_LABEL = "IL-2 1.5 MIU s.c. daily ×5, then weekly ×7 (IVORY)"
OUTPUTS = ("conc", "treg_fold", "treg_pct_cd4", "cd25_fold", "nk_fold", "tbr", "tbr_change", "surv_mi")
FIT = "fits/ivory-published"
ROOT = Path(__file__).resolve().parents[1]
# (title, y-axis label) where the model file's description reads poorly on a slide; the rest
# come from the model file (descriptions and units) through il2pkpd.plot.quantity_label.
LABELS = {
    "treg_fold": ("Regulatory T cells (Tregs)", "fold change from baseline"),
    "treg_pct_cd4": ("Tregs as % of CD4 T cells", "% of CD4 T cells"),
    "nk_fold": ("CD56bright NK cells", "fold change from baseline"),
    "tbr": ("Index-vessel TBRmax (FDG-PET)", "TBRmax (target-to-background ratio)"),
    "tbr_change": ("TBRmax change from baseline", "ΔTBRmax (ratio units)"),
    "surv_mi": ("Free of recurrent myocardial infarction", "fraction MI-free"),
}
CAPTION = (
    "Model prediction, not trial data. Posterior: {fit}, a Laplace approximation calibrated to published summaries "
    "(IVORY, IVORY-FINALE, LILACS, DILT1D, DILfrequency; see fits/README.md). The published data do not inform the TBR-to-MI-hazard link: MI-free survival is "
    "prior-driven. Time axis: weeks 0-9 (dosing) on the left half of each panel, weeks 9-52 compressed on the right."
)


def main(argv: list[str] | None = None):
    """Parse the options, draw the figure, write it; returns the matplotlib Figure."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("out/ivory.png"))
    ap.add_argument("--draws", type=int, default=100, help="posterior draws (default 100 of the fit's 400)")
    ap.add_argument("--horizon", type=float, default=365.0, help="days")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fit", default=FIT)
    args = ap.parse_args(argv)

    import il2pkpd
    from il2pkpd.plot import plot_regimen_vs_placebo

    t0 = time.perf_counter()
    model = il2pkpd.load_model("ivory")
    with warnings.catch_warnings(record=True) as caught:  # a changed model must be said, not hidden
        warnings.simplefilter("always")
        fit = il2pkpd.load_fit(args.fit if Path(args.fit).exists() else ROOT / args.fit, model=model)
    for w in caught:
        print(f"warning: {w.message}")
    total = len(next(iter(fit.population_draws().values())))
    used = min(args.draws, total)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig = plot_regimen_vs_placebo(
        model, fit, REGIMEN, OUTPUTS, args.out, draws=args.draws, horizon=args.horizon, seed=args.seed,
        fit_label=str(args.fit), regimen_label=REGIMEN_LABEL, labels=LABELS,
        caption=CAPTION.format(fit=args.fit),
    )
    print(f"wrote {args.out} (IVORY vs placebo, {used} posterior draws of {args.fit}; {time.perf_counter() - t0:.1f} s)")
    return fig


if __name__ == "__main__":
    main()
