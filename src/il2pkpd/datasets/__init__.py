"""Datasets shipped with il2pkpd.

:func:`published` is the published-evidence set: every public number il2pkpd calibrates
against, one row per result, each with its BRIEF source id (``shared/domain/BRIEF.md``
section 11) and a tag: ``R`` reported by the source, ``I`` inferred (arithmetic or judgement,
explained in ``note``). IVORY's individual data are not public; nothing here is trial data
beyond these published summaries.
"""

from __future__ import annotations

from importlib import resources

__all__ = ["published", "PUBLISHED_COLUMNS"]

PUBLISHED_COLUMNS = (
    "id", "study", "population", "regimen", "endpoint", "statistic", "value", "lower", "upper",
    "n", "unit", "time", "source", "tag", "note",
)


def published():
    """The published-evidence set as a :class:`pandas.DataFrame` (one row per result).

    Columns: ``id`` (unique key), ``study``, ``population``, ``regimen`` (regimen language;
    ``<dose>`` marks the quantity being estimated), ``endpoint``, ``statistic``, ``value``,
    ``lower``/``upper`` (CI or range), ``n``, ``unit``, ``time``, ``source`` (BRIEF ids),
    ``tag`` (R/I), ``note``.
    """
    import pandas as pd

    with resources.files(__package__).joinpath("published.csv").open("r", encoding="utf-8") as fh:
        table = pd.read_csv(fh, dtype={"id": str, "regimen": str, "source": str, "tag": str, "note": str})
    return table
