"""Figures (matplotlib, imported lazily): time courses of simulated outputs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["plot_simulation", "plot_gof", "plot_vpc", "plot_km_vpc"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path):
    if path is not None:
        from .io.output import atomic_write

        atomic_write(path, lambda p: fig.savefig(p, dpi=120, format=Path(path).suffix.lstrip(".") or "png"))
    return fig


def _finish(fig, ax, ylabel: str, title: str, path):
    """Label a time-axis panel, add its legend, and save it."""
    ax.set_xlabel("time")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def plot_gof(table, path: str | Path | None = None):
    """GOF panels from :func:`il2pkpd.diagnostics.gof_table`: DV vs PRED, DV vs IPRED
    (identity lines), conditional residuals vs time and vs PRED (with +-1.96 lines)."""
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(9, 7))
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
        ax.set_ylabel("CRES")
        ax.set_title(f"conditional residuals vs {x}", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def plot_vpc(vpc, title: str = "prediction-corrected VPC", path: str | Path | None = None):
    """Plot :func:`il2pkpd.diagnostics.pc_vpc`: observed 5/50/95% percentiles (lines)
    over the simulated 95% intervals of the same percentiles (bands)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    t = vpc["time"].values
    for tag, color in (("q05", "tab:blue"), ("q50", "tab:red"), ("q95", "tab:blue")):
        ax.fill_between(t, vpc[f"sim_{tag}_lo"], vpc[f"sim_{tag}_hi"], color=color, alpha=0.2, lw=0)
        ax.plot(t, vpc[f"obs_{tag}"], color=color, lw=1.5, marker="o", ms=3, label=f"observed {tag}")
    return _finish(fig, ax, "prediction-corrected value", title, path)


def plot_km_vpc(vpc, title: str = "Kaplan-Meier VPC", path: str | Path | None = None):
    """Plot :func:`il2pkpd.diagnostics.km_vpc`: observed KM (step) over the simulated 95% band."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ax.fill_between(vpc["time"], vpc["sim_lo"], vpc["sim_hi"], step="post", alpha=0.25, lw=0, label="simulated 95%")
    ax.step(vpc["time"], vpc["sim_med"], where="post", ls="--", lw=1, label="simulated median")
    ax.step(vpc["time"], vpc["observed"], where="post", lw=1.8, color="k", label="observed")
    return _finish(fig, ax, "event-free proportion", title, path)


def plot_simulation(ds, outputs: Sequence[str] | None = None, path: str | Path | None = None):
    """Plot outputs over time: the median with a 5-95% band when there are several
    subjects (or draws). Returns the matplotlib Figure; writes it to ``path`` if given."""
    plt = _pyplot()
    names = list(outputs) if outputs else [v for v in ds.data_vars if ds[v].attrs.get("kind") == "output"][:6]
    ncol = 2 if len(names) > 1 else 1
    nrow = int(np.ceil(len(names) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(5.5 * ncol, 3.0 * nrow), squeeze=False)
    t = ds["time"].values
    for ax, name in zip(axes.flat, names):
        da = ds[name]
        vals = da.values.reshape(-1, da.sizes["time"])
        if vals.shape[0] > 1:
            lo, med, hi = np.nanpercentile(vals, [5, 50, 95], axis=0)
            ax.fill_between(t, lo, hi, alpha=0.3, lw=0, label="5-95%")
            ax.plot(t, med, lw=1.5, label="median")
            ax.legend(fontsize=7)
        else:
            ax.plot(t, vals[0], lw=1.5)
        ax.set_title(name, fontsize=9)
        ax.set_ylabel(da.attrs.get("unit", ""), fontsize=8)
        ax.set_xlabel(f"time ({ds.attrs.get('time_unit', '')})", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    fig.suptitle(f"{ds.attrs.get('model', '')}: simulated (model predictions, not data)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_sweep_heatmap(summary, column: str, path: str | Path | None = None):
    """Heat map of a sweep summary column over dose x interval (regimens labelled
    ``"<dose> <unit> q<interval>"``, as ``il2pkpd sweep --dose ... --interval ...`` names them)."""
    import re

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
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.2 * len(doses) + 2.5, 0.8 * len(intervals) + 1.8))
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
