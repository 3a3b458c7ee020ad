"""Write predictions (:func:`il2pkpd.prediction.predict`) to a CSV file (``il2pkpd predict``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .output import atomic_write

__all__ = ["write_predictions"]


def write_predictions(table: Any, path: str | Path) -> Path:
    """Write the prediction table (every dataset row plus ``PRED``, ``STATUS``) to ``path`` as
    CSV (ten significant digits), atomically: a temporary file renamed into place.

    Returns
    -------
    pathlib.Path
        The path written.
    """
    return atomic_write(path, lambda p: table.to_csv(p, index=False, float_format="%.10g"))
