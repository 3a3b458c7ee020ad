"""Figures (matplotlib, imported lazily): time courses of simulated outputs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["plot_simulation"]


def plot_simulation(ds, outputs: Sequence[str] | None = None, path: str | Path | None = None):
    """Plot outputs over time: the median with a 5-95% band when there are several
    subjects (or draws). Returns the matplotlib Figure; writes it to ``path`` if given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    if path is not None:
        from .io.output import atomic_write

        atomic_write(path, lambda p: fig.savefig(p, dpi=120, format=Path(path).suffix.lstrip(".") or "png"))
    return fig
