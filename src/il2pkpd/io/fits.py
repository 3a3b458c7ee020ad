"""Fits on disk: ``fits/<name>/`` with ``posterior.nc`` (ArviZ DataTree, NetCDF),
``summary.csv`` (one row per population parameter) and ``fit.json`` (provenance).
Written atomically (a temporary folder renamed into place)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import pandas as pd

from ..errors import DataFormatError, Il2pkpdWarning

__all__ = ["write_fit", "load_fit", "fits_search_path"]


def fits_search_path() -> list[Path]:
    here = Path(__file__).resolve()
    return [Path.cwd() / "fits", here.parents[3] / "fits", here.parents[1] / "_fits"]


def write_fit(fit, folder: str | Path) -> Path:
    """Write ``fit`` to ``folder`` (replaced as a whole; never left half-written)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        if fit.idata is not None:
            fit.idata.to_netcdf(tmp / "posterior.nc", engine="h5netcdf")
        fit.summary.to_csv(tmp / "summary.csv")
        info = dict(fit.info, estimates={k: float(v) for k, v in fit.estimates.items() if getattr(v, "ndim", 0) == 0})
        (tmp / "fit.json").write_text(json.dumps(info, indent=1, default=float))
        old = None
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.rename(folder, old)
        os.rename(tmp, folder)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def load_fit(name_or_path: str | Path, model=None):
    """Load a fit by folder path or name (searched in ./fits, the repository's fits/ and
    the package). With ``model``, warn clearly when the model changed since the fit."""
    import xarray as xr

    from ..inference.fit import Fit, model_hash

    p = Path(name_or_path)
    candidates = [p] + [folder / str(name_or_path) for folder in fits_search_path()]
    folder = next((c for c in candidates if (c / "fit.json").is_file()), None)
    if folder is None:
        raise DataFormatError(f"`fit` {str(name_or_path)!r} not found (looked for fit.json in {[str(c) for c in candidates]})")
    info = json.loads((folder / "fit.json").read_text())
    estimates = info.pop("estimates", {})
    summary = pd.read_csv(folder / "summary.csv", index_col=0)
    idata = None
    if (folder / "posterior.nc").is_file():
        idata = xr.open_datatree(folder / "posterior.nc", engine="h5netcdf").load()
    if model is not None and info.get("model_hash") != model_hash(model):
        warnings.warn(
            f"model {model.name!r} has changed since fit {folder.name!r} was made (model hash {info.get('model_hash', '?')[:12]} "
            f"in fit.json, {model_hash(model)[:12]} now): its posterior may not apply; refit", Il2pkpdWarning, stacklevel=2)
    return Fit(info.get("model", ""), summary, info, estimates, idata)
