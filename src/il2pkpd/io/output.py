"""Write simulation results atomically (temporary file + rename): an interrupted write
never leaves a half-written file under the requested name."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write", "write_simulation"]


def atomic_write(path: str | Path, writer: Callable[[Path], None]) -> Path:
    """Call ``writer(tmp_path)`` then rename ``tmp_path`` to ``path`` (same folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        writer(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_simulation(ds, path: str | Path) -> Path:
    """Write a simulation Dataset: ``.csv`` (long table, one row per subject x time) or
    ``.nc`` (NetCDF with units in attributes)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        table = ds.drop_vars([v for v in ds.data_vars if ds[v].attrs.get("kind") not in ("output", "state")]).to_dataframe().reset_index()
        units = {v: ds[v].attrs.get("unit", "") for v in ds.data_vars}
        table = table.rename(columns={c: f"{c} [{units[c]}]" for c in table.columns if units.get(c)})
        if "time" in table.columns:
            table = table.rename(columns={"time": f"time [{ds.attrs.get('time_unit', '')}]"})
        return atomic_write(path, lambda p: table.to_csv(p, index=False, float_format="%.8g"))
    if suffix in (".nc", ".netcdf"):
        return atomic_write(path, lambda p: ds.to_netcdf(p, engine="h5netcdf"))
    from ..errors import DataFormatError

    raise DataFormatError(f"`--out` must end in .csv or .nc, got {str(path)!r}")
