"""A sweep's (or a power run's) output folder: atomic Parquet partitions, a manifest, resume.

Output folder layout::

    OUT/manifest.json                          design, fingerprint, cells (written once, atomically)
    OUT/cells/cell=00003/draws-000000.parquet  one chunk: metrics per (draw, subject)
    OUT/summary.csv                            one row per cell (rewritten atomically at the end)

Each chunk file is written to a temporary name in the same folder and renamed into place,
so a file that exists is complete: rerunning the same command skips it, and killing the
process at any moment loses at most the chunks in flight. A folder whose manifest holds a
different design (or model, or fit) is refused, never mixed. Running the chunks is
:mod:`il2pkpd.design.sweep_run`'s job; this module only reads and writes the files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..errors import OptionError
from .output import atomic_write

if TYPE_CHECKING:
    from ..design.sweep_design import SweepDesign

__all__ = ["SweepFolder", "read_sweep"]


@dataclass(frozen=True)
class SweepFolder:
    """The output folder of one sweep (a :class:`il2pkpd.design.sweep_run.ChunkStore`).

    Holds only its path, so it travels to Dask workers, which write their chunks themselves
    (two workers never write the same file: a chunk's name is its cell and first draw)."""

    path: Path

    def chunk_path(self, cell: int, first: int) -> Path:
        """The file of the chunk of ``cell`` whose first draw is ``first``."""
        return self.path / "cells" / f"cell={cell:05d}" / f"draws-{first:06d}.parquet"

    def claim(self, design: SweepDesign, fingerprint: str, model_hash: str, fit_hash: str, dose_offsets=None) -> None:
        """Write the manifest of a new (empty) folder, or check that an existing one holds the
        same sweep; delete temporary files left by a killed run (never complete, never read).
        ``dose_offsets`` (days), where the runs have an output grid, are recorded with it.

        Raises
        ------
        OptionError
            When the folder holds a different sweep (naming what changed) or other files.
        """
        manifest = _manifest(design, fingerprint, model_hash, fit_hash)
        if dose_offsets is not None:
            manifest["dose_offsets_days"] = [round(float(x), 12) for x in dose_offsets]
        path = self.path / "manifest.json"
        if self.path.exists() and not self.path.is_dir():
            raise OptionError(f"output folder {str(self.path)!r} is a file; give a folder (it is created if missing)")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OptionError(f"output folder {str(self.path)!r} cannot be created: {exc.strerror or exc}") from None
        if path.is_file():
            old = json.loads(path.read_text())
            if old.get("fingerprint") != manifest["fingerprint"]:
                new = json.loads(json.dumps(manifest["design"]))  # tuples -> lists, as stored
                diff = sorted(k for k in new if old.get("design", {}).get(k) != new[k])
                what = (f"design keys {diff}" if diff else "the model file" if old.get("model_hash") != manifest["model_hash"]
                        else "the output grid's times after each dose (set by the il2pkpd version)"
                        if old.get("dose_offsets_days") != manifest.get("dose_offsets_days") else "the fit's draws")
                raise OptionError(f"output folder {str(self.path)!r} holds a different sweep (changed: {what}); "
                                  "refusing to mix them: choose another --out or delete the folder")
        elif self.path.exists() and any(self.path.iterdir()):
            raise OptionError(f"output folder {str(self.path)!r} exists, is not empty and has no sweep manifest; choose another --out")
        else:
            atomic_write(path, lambda p: p.write_text(json.dumps(manifest, indent=1)))
        for stale in self.path.glob("cells/*/.*.tmp"):
            stale.unlink(missing_ok=True)

    def has_chunk(self, cell: int, first: int) -> bool:
        return self.chunk_path(cell, first).is_file()

    def write_chunk(self, cell: int, first: int, table: Any) -> None:
        atomic_write(self.chunk_path(cell, first), lambda p: table.to_parquet(p, index=False))

    def read(self) -> Any:
        return read_sweep(self.path)

    def write_summary(self, summary: Any) -> None:
        atomic_write(self.path / "summary.csv", lambda p: summary.to_csv(p, index=False))


def _manifest(design: SweepDesign, fingerprint: str, model_hash: str, fit_hash: str) -> dict:
    return {"il2pkpd_version": __version__, "fingerprint": fingerprint, "model_hash": model_hash, "fit_hash": fit_hash,
            "design": design.to_dict(), "cells": design.manifest_cells(),
            "layout": "cells/cell=<5-digit cell>/draws-<6-digit first draw or trial>.parquet"}


def read_sweep(out: str | Path):
    """All finished chunks of a sweep folder as one DataFrame (cell, draw, subject, metrics)."""
    import pandas as pd

    out = Path(out)
    parts = []
    for f in sorted(out.glob("cells/cell=*/draws-*.parquet")):
        t = pd.read_parquet(f)
        t.insert(0, "cell", int(f.parent.name.split("=")[1]))
        parts.append(t)
    if not parts:
        raise OptionError(f"{str(out)!r} holds no finished sweep chunks")
    table = pd.concat(parts, ignore_index=True)
    keys = [k for k in ("cell", "draw", "subject", "trial") if k in table]  # sweeps: draw, subject; power runs: trial
    return table.sort_values(keys, kind="stable").reset_index(drop=True)
