"""Figures (matplotlib, imported lazily): time courses of simulated outputs, a regimen against
placebo over a posterior, GOF/VPC diagnostics and sweep heat maps.

Backends: il2pkpd never selects a matplotlib backend (no ``matplotlib.use``). Without
``path`` a figure is made through pyplot, in the user's backend (inline in a notebook, a window
in a desktop session); with ``path`` it is a bare :class:`matplotlib.figure.Figure` (no pyplot,
no backend, no global state) written to that file, so scripts and the CLI need no backend at
all. Every builder returns the Figure.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "plot_simulation",
    "plot_arms",
    "plot_regimen_vs_placebo",
    "simulate_regimen_vs_placebo",
    "quantity_label",
    "plot_gof",
    "plot_vpc",
    "plot_km_vpc",
    "plot_sweep_heatmap",
]

ARM_COLORS = ("#c0392b", "#555555", "#2471a3", "#229954", "#7d3c98")


def _figure(path, **kwargs):
    """A new Figure: through pyplot (the user's backend) when it is only to be shown, a bare
    ``Figure`` (no backend needed) when it is written to ``path``."""
    if path is None:
        import matplotlib.pyplot as plt

        return plt.figure(**kwargs)
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def _save(fig, path, dpi: int = 120):
    if path is not None:
        from .io.output import atomic_write

        atomic_write(path, lambda p: fig.savefig(p, dpi=dpi, format=Path(path).suffix.lstrip(".") or "png"))
    return fig


def _finish(fig, ax, ylabel: str, title: str, path):
    """Label a time-axis panel, add its legend, and save it."""
    ax.set_xlabel("time")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    return _save(fig, path)


# ----------------------------------------------------------------------------- labels
def _short(description: str) -> str:
    """A panel title from a description: the part before a colon, without a trailing
    parenthetical remark ("... (conventional CD4 cells held constant, cf. S54)")."""
    text = description.split(":")[0].strip()
    return re.sub(r"\s*\([^()]*\)\s*$", "", text) or text


def quantity_label(name: str, unit: str | None, description: str = "") -> tuple[str, str]:
    """``(title, y-axis label)`` of an output: the title from its description, the axis label
    its unit, with a dimensionless unit ("1") named for what it is (fold change from baseline,
    fraction event-free, change from baseline ...), never "1"."""
    title = _short(description) if description else name
    desc = description.lower()
    if unit in (None, "", "1", "dimensionless"):
        if name.startswith("surv_"):
            label = "fraction event-free"
        elif "fold" in name or "fold change" in desc or "relative to baseline" in desc:
            label = "fold change from baseline"
        elif name.endswith("_change") or "change from baseline" in desc:
            label = "change from baseline (dimensionless)"
        elif "fraction" in desc:
            label = "fraction"
        else:
            label = "dimensionless"
    else:
        label = unit
    if label == "fold change from baseline":  # "CD25 on Tregs, fold change from baseline" -> "CD25 on Tregs"
        title = re.sub(r",?\s*fold change from baseline$", "", title, flags=re.I) or title
    return title, label


def _describe(ds, name: str, model=None) -> str:
    """An output's description: its ``attrs``, else the model's event for ``surv_<event>`` /
    ``hazard_<event>`` outputs."""
    desc = ds[name].attrs.get("description", "") if name in ds else ""
    if not desc and model is not None:
        for prefix, what in (("surv_", "Free of {}"), ("hazard_", "Hazard of {}")):
            if name.startswith(prefix):
                event = next((e for e in model.events if e.name == name[len(prefix):]), None)
                if event is not None and event.description:
                    first = _short(event.description)
                    desc = what.format(first[:1].lower() + first[1:])
    if not desc:
        for prefix, what in (("surv_", "Free of event '{}'"), ("hazard_", "Hazard of event '{}'")):
            if name.startswith(prefix):
                desc = what.format(name[len(prefix):])
    return desc


# ----------------------------------------------------------------------------- time axis
def _days(ds) -> np.ndarray:
    from .units import conversion_factor

    return ds["time"].values * conversion_factor(ds.attrs.get("time_unit") or "day", "day")


def _split_scale(break_at: float, end: float, frac: float = 0.5):
    """Forward/inverse of a piecewise-linear axis: [0, break_at] on the first ``frac`` of the
    width, [break_at, end] compressed onto the rest (straight lines beyond both ends)."""
    a, b = frac / break_at, (1 - frac) / (end - break_at)

    def forward(x):
        x = np.asarray(x, dtype=float)
        return np.where(x <= break_at, x * a, frac + (x - break_at) * b)

    def inverse(y):
        y = np.asarray(y, dtype=float)
        return np.where(y <= frac, y / a, break_at + (y - frac) / b)

    return forward, inverse


def _time_axis(ax, t_end_days: float, break_at: float | None = None, since_dose: bool = False) -> str:
    """Set the x ticks of a time panel whose data are in days; returns the axis label.

    Hours up to 3 days, days up to 10 weeks, weeks beyond. With ``break_at`` (days) the axis
    is linear in weeks up to it on the left half and compressed beyond it (marked by a
    dotted line), so a dosing phase and a year of follow-up are both readable. ``since_dose``:
    time 0 is the first dose (the label says so)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator

    def label(unit: str) -> str:
        return f"{unit} since first dose" if since_dose else f"time ({unit})"

    if break_at is not None and t_end_days > break_at:
        ax.set_xscale("function", functions=_split_scale(break_at, t_end_days))
        bw = break_at / 7
        step = 1 if bw <= 5 else 2
        left = list(np.arange(0, np.floor(bw) + 1e-9, step) * 7)
        right = [w * 7 for w in (13, 26, 39, 52, 78, 104, 156, 208) if break_at + 21 <= w * 7 <= t_end_days + 1e-9]
        ax.xaxis.set_major_locator(FixedLocator(left + right))
        ax.xaxis.set_minor_locator(FixedLocator(list(np.arange(0, break_at + 1e-9, 7))))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 7:g}"))
        ax.axvline(break_at, color="0.55", lw=0.8, ls=":", zorder=0)
        ax.set_xlim(0, t_end_days)
        return label("weeks") + f" (axis compressed after the dotted line at week {bw:g})"
    if t_end_days <= 3:
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x * 24:g}"))
        ax.xaxis.set_major_locator(FixedLocator(list(np.arange(0, t_end_days * 24 + 1e-9, 6 if t_end_days > 1 else 2) / 24)))
        return label("hours")
    if t_end_days <= 70:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 7, 10]))
        return label("days")
    weeks = t_end_days / 7
    step = next(s for s in (1, 2, 4, 13, 26, 52, 104) if weeks / s <= 8)
    ax.xaxis.set_major_locator(FixedLocator(list(np.arange(0, weeks + 1e-9, step) * 7)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 7:g}"))
    return label("weeks")


def _dose_times_days(regimen) -> list[float]:
    if regimen is None:
        return []
    if isinstance(regimen, str):
        from .dosing import parse_regimen

        regimen = parse_regimen(regimen)
    if hasattr(regimen, "dose_times"):
        return [float(t) for t in regimen.dose_times("day")]
    return [float(t) for t in regimen]


def _mark_doses(ax, doses: Sequence[float], color: str, shade_to: float | None = None) -> None:
    """Dose markers (triangles on the top edge, pointing down into the panel) and a light band
    over the dosing phase."""
    if not len(doses):
        return
    from matplotlib.transforms import offset_copy

    trans = offset_copy(ax.get_xaxis_transform(), fig=ax.figure, y=3.5, units="points")  # just above the frame
    ax.plot(doses, np.ones(len(doses)), ls="none", marker="v", ms=5, color=color, transform=trans, clip_on=False, zorder=5)
    ax.axvspan(min(doses), shade_to if shade_to is not None else max(doses), color=color, alpha=0.06, lw=0, zorder=0)


def _band(ax, t, values: np.ndarray, color: str) -> None:
    """Median line, and the 5-95% band when there are several draws/subjects."""
    vals = values.reshape(-1, values.shape[-1])
    if vals.shape[0] > 1:
        lo, med, hi = np.nanpercentile(vals, [5, 50, 95], axis=0)
        ax.fill_between(t, lo, hi, color=color, alpha=0.22, lw=0.6)  # the edge keeps narrow peaks' bands visible
        ax.plot(t, med, color=color, lw=1.6)
    else:
        ax.plot(t, vals[0], color=color, lw=1.6)


# ----------------------------------------------------------------------------- simulations
def plot_simulation(ds, outputs: Sequence[str] | None = None, path: str | Path | None = None, *, regimen=None,
                    model=None, labels: Mapping[str, tuple[str, str]] | None = None, break_at: float | None = None):
    """Plot outputs over time: the median with a 5-95% band when there are several
    subjects (or draws). Returns the matplotlib Figure; writes it to ``path`` if given.

    Parameters
    ----------
    ds
        A :func:`il2pkpd.simulate` result.
    outputs
        Outputs to draw, every one of them (default: the first 6 of the dataset's outputs).
    path
        File to write (format from the suffix).
    regimen
        The simulated regimen (text, :class:`~il2pkpd.dosing.Regimen` or dose times in
        days): dose markers.
    model
        The model: titles of event outputs (``surv_<event>``).
    labels
        ``{output: (title, y label)}`` overriding :func:`quantity_label`.
    break_at
        Time (days) after which the time axis is compressed (e.g. the end of a dosing phase).
    """
    names = list(outputs) if outputs else [v for v in ds.data_vars if ds[v].attrs.get("kind") == "output"][:6]
    ncol = 2 if len(names) > 1 else 1
    nrow = int(np.ceil(len(names) / ncol))
    fig = _figure(path, figsize=(5.5 * ncol, 2.8 * nrow + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrow, ncol, squeeze=False, sharex=True)).ravel()
    t = _days(ds)
    doses = _dose_times_days(regimen)
    several = any(ds[n].values.reshape(-1, ds[n].sizes["time"]).shape[0] > 1 for n in names)
    for i, (ax, name) in enumerate(zip(axes, names)):
        _band(ax, t, ds[name].values, ARM_COLORS[2])
        title, ylabel = (labels or {}).get(name) or quantity_label(name, ds[name].attrs.get("unit"), _describe(ds, name, model))
        ax.set_title("\n".join(textwrap.wrap(title, 48)), fontsize=9, pad=9 if doses else None)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
        _mark_doses(ax, doses, ARM_COLORS[2])
        xlabel = _time_axis(ax, float(t[-1]), break_at, since_dose=bool(doses) and min(doses) == 0)
        if i >= len(names) - ncol:
            ax.set_xlabel(xlabel, fontsize=8)
            ax.tick_params(labelbottom=True)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    what = "median and 5-95% band" if several else "one subject"
    fig.suptitle(f"{ds.attrs.get('model', '')}: simulated ({what}); model predictions, not data", fontsize=10)
    return _save(fig, path)


def simulate_regimen_vs_placebo(model, fit, regimen, *, draws: int | None = 100, horizon: float = 365.0,
                                fine_until: float | None = 63.0, fine_step: float = 1 / 24, step: float = 1.0,
                                seed: int = 0, **simulate_kwargs) -> dict:
    """Simulate a regimen and placebo (no doses) over the same posterior draws.

    Typical-subject predictions for ``draws`` draws (picked at random, without replacement,
    by ``seed``) of ``fit``'s posterior (all of them when ``draws`` is None or exceeds them).
    Times are in days: every ``fine_step`` up to ``fine_until`` (so the peaks of a dosing
    phase are resolved), every ``step`` after it, to ``horizon``. Draws whose solve fails are
    dropped and counted, never hidden: each dataset's ``attrs['draws_failed']``.

    Returns ``{"regimen": Dataset, "placebo": Dataset}`` with dims ``draw, subject, time``.
    """
    from .io.entry import simulate  # takes ``model`` by name or path too

    pop = fit.population_draws() if hasattr(fit, "population_draws") else dict(fit)
    n = len(next(iter(pop.values())))
    if draws is not None and draws < n:
        idx = np.sort(np.random.default_rng(seed).choice(n, size=draws, replace=False))
        pop = {k: np.asarray(v)[idx] for k, v in pop.items()}
    fine_until = min(fine_until or 0.0, horizon)
    times = np.unique(np.concatenate([np.arange(0.0, fine_until, fine_step), np.arange(fine_until, horizon + step / 2, step)]))
    out = {}
    for arm, reg in (("regimen", regimen), ("placebo", None)):
        ds = simulate(model, reg, times, params=pop, time_unit="day", iiv=False, throw=False, **simulate_kwargs)
        ok = (np.asarray(ds["status"].values).reshape(ds.sizes["draw"], -1) == 0).all(axis=1)
        ds = ds.isel(draw=np.flatnonzero(ok))
        ds.attrs.update(draws_used=int(ok.sum()), draws_failed=int((~ok).sum()), draws_available=int(n))
        out[arm] = ds
    return out


def plot_arms(arms: Mapping[str, object], outputs: Sequence[str], path: str | Path | None = None, *,
              doses: Mapping[str, Sequence[float]] | None = None, model=None,
              labels: Mapping[str, tuple[str, str]] | None = None, break_at: float | None = None,
              ncols: int = 4, title: str = "", caption: str = "", band_label: str = "median, 5-95% band",
              figsize: tuple[float, float] | None = None, dpi: int = 150):
    """One panel per output, each arm's median and 5-95% band over the draws (or subjects).

    ``arms`` maps a legend label to a :func:`il2pkpd.simulate` dataset (same times);
    ``doses`` maps an arm's label to its dose times in days (markers along the top of every
    panel, in the arm's colour). Every requested output is drawn. Returns the Figure.
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    names = list(outputs)
    first = next(iter(arms.values()))
    for name in names:
        for label, ds in arms.items():
            if name not in ds:
                from .errors import OptionError

                raise OptionError(f"output {name!r} is not in the simulation of arm {label!r}; outputs: "
                                  f"{[v for v in ds.data_vars if ds[v].attrs.get('kind') == 'output']}")
    ncols = min(ncols, len(names))
    nrows = int(np.ceil(len(names) / ncols))
    width = figsize[0] if figsize else 4.0 * ncols
    chars = int(17 * width)  # caption characters per line at 8 pt
    lines = [line for para in caption.split("\n") for line in textwrap.wrap(para, chars)] if caption else []
    head = (0.3 + 0.25 * (title.count("\n") + 1) if title else 0.1) + 0.35  # inches: title lines + legend
    foot = 0.15 + 8 * 1.3 * len(lines) / 72 if lines else 0.05
    body = figsize[1] - head - foot if figsize else 3.0 * nrows + 0.4
    fig = _figure(path, figsize=(width, head + body + foot), layout="constrained")
    top, mid, bottom = fig.subfigures(3, 1, height_ratios=[head, body, foot], hspace=0)
    axes = np.atleast_1d(mid.subplots(nrows, ncols, squeeze=False, sharex=True)).ravel()
    t = _days(first)
    colors = {label: ARM_COLORS[i % len(ARM_COLORS)] for i, label in enumerate(arms)}
    doses = doses or {}
    xlabel = ""
    for i, (ax, name) in enumerate(zip(axes, names)):
        for label, ds in reversed(list(arms.items())):  # the first arm on top
            _band(ax, t, ds[name].values, colors[label])
        ptitle, ylabel = (labels or {}).get(name) or quantity_label(name, first[name].attrs.get("unit"), _describe(first, name, model))
        ax.set_title("\n".join(textwrap.wrap(ptitle, 44)), fontsize=10.5, pad=9 if doses else None)
        for label, times in doses.items():
            _mark_doses(ax, times, colors.get(label, "k"))
        ax.set_ylabel(ylabel, fontsize=9.5)
        ax.tick_params(labelsize=8.5)
        ax.grid(alpha=0.25, lw=0.5)
        first_doses = [min(d) for d in doses.values() if len(d)]
        xlabel = _time_axis(ax, float(t[-1]), break_at, since_dose=bool(first_doses) and min(first_doses) == 0)
        if i >= len(names) - ncols:
            ax.tick_params(labelbottom=True)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    mid.supxlabel(xlabel, fontsize=10)
    handles = [(Patch(color=colors[label], alpha=0.22, lw=0), Line2D([], [], color=colors[label], lw=1.8)) for label in arms]
    texts = [f"{label}: {band_label}" for label in arms]
    for label in doses:
        handles.append(Line2D([], [], ls="none", marker="v", ms=6, color=colors.get(label, "k")))
        texts.append("dose (shaded: dosing phase)")
    if title:
        top.text(0.5, 1 - 0.12 / head, title, ha="center", va="top", fontsize=12.5, linespacing=1.3)
    top.legend(handles, texts, loc="lower center", bbox_to_anchor=(0.5, 0.0), ncols=len(texts), fontsize=9.5, frameon=False)
    if lines:
        bottom.text(0.5, 0.5, "\n".join(lines), ha="center", va="center", fontsize=8, color="0.2", linespacing=1.3)
    return _save(fig, path, dpi=dpi)


def plot_regimen_vs_placebo(model, fit, regimen: str, outputs: Sequence[str], path: str | Path | None = None, *,
                            draws: int | None = 100, horizon: float = 365.0, break_at: float | None = 63.0,
                            fit_label: str = "", regimen_label: str = "", seed: int = 0,
                            labels: Mapping[str, tuple[str, str]] | None = None, caption: str = "", **kwargs):
    """A regimen against placebo over a fitted posterior: for every output, each arm's median
    and 5-95% band (90%) of typical-subject predictions over ``draws`` posterior draws.

    ``break_at`` (days): the time axis is linear up to it (the dosing phase, in weeks) and
    compressed after it, up to ``horizon`` days. The title says these are model predictions,
    not trial data, and names the fit (``fit_label``). Returns the Figure; writes ``path``.
    """
    from .io.model_file import load_model

    model = load_model(model)  # a Model passes through; a name or path is read
    sims = simulate_regimen_vs_placebo(model, fit, regimen, draws=draws, horizon=horizon,
                                       fine_until=break_at if break_at else min(horizon, 63.0), seed=seed, **kwargs)
    reg_label = regimen_label or regimen
    arms = {reg_label: sims["regimen"], "placebo (no IL-2)" if getattr(model, "drug", "") == "aldesleukin" else "placebo": sims["placebo"]}
    used = min(ds.attrs["draws_used"] for ds in sims.values())
    failed = {k: ds.attrs["draws_failed"] for k, ds in sims.items() if ds.attrs["draws_failed"]}
    source = f"calibrated posterior ({fit_label})" if fit_label else "posterior"
    title = f"{reg_label} vs placebo\nmodel prediction, {source}: not trial data"
    available = sims["regimen"].attrs["draws_available"]
    note = (f"Typical-subject model predictions (no inter-individual variability) for {used} of the posterior's {available} draws"
            + (f" ({'; '.join(f'{v} failed to solve in the {k} arm and are left out' for k, v in failed.items())})" if failed else "")
            + "; lines: median over draws, bands: 5-95% (90%).")
    full_caption = note + ("\n" + caption if caption else "")
    return plot_arms(arms, outputs, path, doses={reg_label: _dose_times_days(regimen)}, model=model, labels=labels,
                     break_at=break_at if break_at and horizon > break_at else None, title=title, caption=full_caption,
                     band_label="median and 90% band")


# ----------------------------------------------------------------------------- diagnostics
def plot_gof(table, path: str | Path | None = None):
    """GOF panels from :func:`il2pkpd.diagnostics.gof_table`: DV vs PRED, DV vs IPRED
    (identity lines), conditional residuals vs time and vs PRED (with +-1.96 lines)."""
    fig = _figure(path, figsize=(9, 7), layout="constrained")
    axes = fig.subplots(2, 2)
    t = table[table["cens"] == 0]
    for ax, x, title in ((axes[0, 0], "pred", "DV vs PRED"), (axes[0, 1], "ipred", "DV vs IPRED")):
        for name, g in t.groupby("observation"):
            ax.scatter(g[x], g["dv"], s=8, alpha=0.6, label=name)
        lim = [min(t[x].min(), t["dv"].min()), max(t[x].max(), t["dv"].max())]
        ax.plot(lim, lim, "k-", lw=0.8)
        ax.set_xlabel(x.upper())
        ax.set_ylabel("DV")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    for ax, x in ((axes[1, 0], "time"), (axes[1, 1], "pred")):
        ax.scatter(t[x], t["cres"], s=8, alpha=0.6)
        for y in (-1.96, 0.0, 1.96):
            ax.axhline(y, color="k", lw=0.8, ls="-" if y == 0 else "--")
        ax.set_xlabel(x.upper() if x == "pred" else "time")
        ax.set_ylabel("CWRES" if str(table.attrs.get("cres", "")).startswith("CWRES") else "CRES")
        ax.set_title(f"conditional residuals vs {x}", fontsize=9)
    return _save(fig, path)


def plot_vpc(vpc, title: str = "prediction-corrected VPC", path: str | Path | None = None):
    """Plot :func:`il2pkpd.diagnostics.pc_vpc`: observed 5/50/95% percentiles (lines)
    over the simulated 95% intervals of the same percentiles (bands)."""
    fig = _figure(path, figsize=(6.5, 4.2), layout="constrained")
    ax = fig.subplots()
    t = vpc["time"].values
    for tag, color in (("q05", "tab:blue"), ("q50", "tab:red"), ("q95", "tab:blue")):
        ax.fill_between(t, vpc[f"sim_{tag}_lo"], vpc[f"sim_{tag}_hi"], color=color, alpha=0.2, lw=0)
        ax.plot(t, vpc[f"obs_{tag}"], color=color, lw=1.5, marker="o", ms=3, label=f"observed {tag}")
    return _finish(fig, ax, "prediction-corrected value", title, path)


def plot_km_vpc(vpc, title: str = "Kaplan-Meier VPC", path: str | Path | None = None):
    """Plot :func:`il2pkpd.diagnostics.km_vpc`: observed KM (step) over the simulated 95% band."""
    fig = _figure(path, figsize=(6.5, 4.2), layout="constrained")
    ax = fig.subplots()
    ax.fill_between(vpc["time"], vpc["sim_lo"], vpc["sim_hi"], step="post", alpha=0.25, lw=0, label="simulated 95%")
    ax.step(vpc["time"], vpc["sim_med"], where="post", ls="--", lw=1, label="simulated median")
    ax.step(vpc["time"], vpc["observed"], where="post", lw=1.8, color="k", label="observed")
    return _finish(fig, ax, "event-free proportion", title, path)


def plot_sweep_heatmap(summary, column: str, path: str | Path | None = None):
    """Heat map of a sweep summary column over dose x interval (regimens labelled
    ``"<dose> <unit> q<interval>"``, as ``il2pkpd sweep --dose ... --interval ...`` names them)."""
    from .errors import OptionError

    if column not in summary.columns:
        raise OptionError(f"heat-map column {column!r} is not in the sweep summary (has e.g. {[c for c in summary.columns if c.endswith('median')][:6]})")
    pat = re.compile(r"^([0-9.]+) (\S+) q([0-9.]+)([hdw])$")
    cells = {}
    for _, row in summary.iterrows():
        m = pat.match(str(row["regimen"]))
        if m:
            cells[(float(m.group(1)), f"q{m.group(3)}{m.group(4)}")] = row[column]
    if not cells:
        raise OptionError("no regimen in the summary is a dose x interval flag regimen; nothing to draw")
    doses = sorted({k[0] for k in cells})
    intervals = sorted({k[1] for k in cells}, key=lambda s: float(s[1:-1]) * {"h": 1 / 24, "d": 1, "w": 7}[s[-1]])
    grid = np.full((len(intervals), len(doses)), np.nan)
    for (d, i), v in cells.items():
        grid[intervals.index(i), doses.index(d)] = v
    fig = _figure(path, figsize=(1.2 * len(doses) + 2.5, 0.8 * len(intervals) + 1.8), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(grid, aspect="auto", origin="lower", cmap="viridis")
    ax.set_xticks(range(len(doses)), [f"{d:g}" for d in doses])
    ax.set_yticks(range(len(intervals)), intervals)
    ax.set_xlabel("dose")
    ax.set_ylabel("maintenance interval")
    for (r, c), v in np.ndenumerate(grid):
        if np.isfinite(v):
            ax.text(c, r, f"{v:.3g}", ha="center", va="center", color="w", fontsize=8)
    fig.colorbar(im, ax=ax, label=column)
    ax.set_title(f"{column} (simulated)")
    return _save(fig, path)


_FLAG_REGIMEN = re.compile(r"^([0-9.]+) (\S+) q([0-9.]+)([hdw])$")


def plot_dose_response(summary, column: str, path: str | Path | None = None, *, window: tuple[float | None, float | None] | None = None,
                       ax=None):
    """A sweep summary column against dose, one line per maintenance interval (regimens
    labelled ``"<dose> <unit> q<interval>"`` as ``il2pkpd sweep --dose ... --interval ...``
    names them): a metric's median with its 5-95% band across draws and subjects (``column``
    names the metric, e.g. ``"cmax(treg_fold)"``), or a probability column as it is
    (``"P(...)"``). ``window`` shades a target range (``None`` for an open end), e.g. the
    therapeutic window."""
    from .errors import OptionError

    band = f"{column} median" in summary.columns
    if not band and column not in summary.columns:
        raise OptionError(f"column {column!r} is not in the sweep summary (metrics: {[c[:-7] for c in summary.columns if c.endswith(' median')]}; "
                          f"probabilities: {[c for c in summary.columns if c.startswith('P(')]})")
    lines: dict[str, list] = {}
    unit = ""
    for _, row in summary.iterrows():
        m = _FLAG_REGIMEN.match(str(row["regimen"]))
        if m:
            unit = m.group(2)
            values = (row[f"{column} q05"], row[f"{column} median"], row[f"{column} q95"]) if band else (np.nan, row[column], np.nan)
            lines.setdefault(f"q{m.group(3)}{m.group(4)}", []).append((float(m.group(1)), *values))
    if not lines:
        raise OptionError("no regimen in the summary is a dose x interval flag regimen; nothing to draw")
    if ax is None:
        fig = _figure(path, figsize=(5.5, 3.6), layout="constrained")
        ax = fig.subplots()
    else:
        fig = ax.figure
    for k, (label, pts) in enumerate(sorted(lines.items())):
        pts = np.array(sorted(pts))
        color = ARM_COLORS[k % len(ARM_COLORS)]
        ax.plot(pts[:, 0], pts[:, 2], "o-", color=color, label=label, ms=3)
        if band:
            ax.fill_between(pts[:, 0], pts[:, 1], pts[:, 3], color=color, alpha=0.15, lw=0)
    if window is not None:
        lo, hi = window
        ylo, yhi = ax.get_ylim()
        ax.axhspan(ylo if lo is None else lo, yhi if hi is None else hi, color="#229954", alpha=0.12, lw=0, label="target window")
        ax.set_ylim(ylo, yhi)
    ax.set_xlabel(f"dose ({unit})")
    ax.set_ylabel(f"{column} median, 5-95%" if band else column)
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_power_curve(table, path: str | Path | None = None, *, target: float | None = None, ax=None):
    """Power or assurance against total sample size (a :func:`~il2pkpd.design.power.trial_power`
    table), one line per analysis and comparison, with 95% Monte Carlo error bars and the
    ``target`` as a dashed line."""
    if ax is None:
        fig = _figure(path, figsize=(5.5, 3.6), layout="constrained")
        ax = fig.subplots()
    else:
        fig = ax.figure
    quantity = str(table["quantity"].iloc[0])
    for k, ((analysis, comparison), g) in enumerate(table.groupby(["analysis", "comparison"], sort=False)):
        g = g.sort_values("n_total")
        ax.errorbar(g["n_total"], g["value"], yerr=1.96 * g["mc_se"], fmt="o-", ms=3, capsize=2, color=ARM_COLORS[k % len(ARM_COLORS)],
                    label=f"{analysis}: {comparison}")
    if target is not None:
        ax.axhline(target, ls="--", color="#555555", lw=0.8, label=f"target {target:g}")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("total sample size")
    ax.set_ylabel(f"{quantity} (95% Monte Carlo error)")
    ax.legend(fontsize=7)
    return _save(fig, path)
