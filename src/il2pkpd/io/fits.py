"""Fits on disk: ``fits/<name>/`` with ``posterior.nc`` (ArviZ DataTree, NetCDF),
``summary.csv`` (one row per population parameter) and ``fit.json`` (provenance).
Written atomically (a temporary folder renamed into place).

:func:`fit` is the public ``il2pkpd.fit``: it reads a model by name or path and a dataset
by path, then calls :func:`il2pkpd.inference.fit`, which takes loaded objects only."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import DataFormatError, Il2pkpdWarning
from ..inference.fit import Fit, fit as _fit
from ..model import Model
from .entry import documented_as
from .model_file import load_model

__all__ = ["fit", "write_fit", "load_fit", "fits_search_path"]


@documented_as(_fit)
def fit(model: Model | str | Path, data: Any, **kwargs: Any) -> Fit:
    if isinstance(data, (str, Path)):
        from .nonmem import read_nonmem_csv  # only when a file is given

        data = read_nonmem_csv(data)
    return _fit(load_model(model), data, **kwargs)


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
        info.pop("model_check", None)  # what load_fit found when it read the fit, not part of the fit
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
    the package), checking that its model has not changed since the fit was made.

    The model hash recorded in ``fit.json`` is compared with ``model`` (a :class:`Model`,
    a model name or a ``.toml`` path) or, without ``model``, with the current model file of
    the name the fit records (``models/<name>.toml`` or the copy shipped in the package).
    A difference, or a fit that records no hash, is an :class:`Il2pkpdWarning` naming
    both hashes: the posterior may not apply to the model as it now stands. A fit whose
    model is not found by name (a model file outside the search path) cannot be checked
    without ``model``; ``fit.info["model_check"]`` says which case applied.
    """
    import xarray as xr

    from ..errors import ModelSpecError
    from ..inference.fit import model_hash

    p = Path(name_or_path)
    candidates = [p] + [folder / str(name_or_path) for folder in fits_search_path()]
    folder = next((c for c in candidates if (c / "fit.json").is_file()), None)
    if folder is None:
        raise DataFormatError(f"`fit` {str(name_or_path)!r} not found (looked for fit.json in {[str(c) for c in candidates]})")
    try:
        info = json.loads((folder / "fit.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"{folder / 'fit.json'}: not valid JSON ({exc}); the fit folder is damaged") from None
    estimates = info.pop("estimates", {})
    summary = pd.read_csv(folder / "summary.csv", index_col=0)
    idata = None
    if (folder / "posterior.nc").is_file():
        idata = xr.open_datatree(folder / "posterior.nc", engine="h5netcdf").load()
    if isinstance(model, (str, Path)):
        model = load_model(model)
    recorded = info.get("model_hash")
    where = "`model`"
    if model is None and info.get("model"):
        from .model_file import _resolve

        try:
            model = load_model(info["model"])
            where = str(_resolve(info["model"]))
        except ModelSpecError:
            model = None
    if model is None:
        info["model_check"] = f"not checked: model {info.get('model', '?')!r} not found by name; pass `model=` to check it"
    elif recorded is None:
        info["model_check"] = "not checked: fit.json records no model hash"
        warnings.warn(f"fit {folder.name!r} records no model hash (made by an older il2pkpd?): whether model {model.name!r} changed "
                      f"since cannot be checked; refit to be sure", Il2pkpdWarning, stacklevel=2)
    else:
        now = model_hash(model)
        info["model_check"] = "same model" if now == recorded else f"model changed: {recorded[:12]} in fit.json, {now[:12]} now"
        if now != recorded:
            warnings.warn(
                f"model {model.name!r} has changed since fit {folder.name!r} was made: fit.json records model hash {recorded[:12]}, "
                f"{where} now hashes to {now[:12]}; its posterior may not apply: refit, or pass `model=` the model it was made with",
                Il2pkpdWarning, stacklevel=2)
    return Fit(info.get("model", ""), summary, info, estimates, idata)
