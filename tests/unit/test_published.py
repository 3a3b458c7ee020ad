"""The published-evidence set: no number without a source.

Every row must cite source ids that exist in BRIEF section 11 (S1..S112) and carry a tag
(R reported / I inferred); every reported number must appear in the BRIEF itself (as given,
as a percentage, or without its sign where the BRIEF words it as a reduction), so a typo in
the table fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import il2pkpd
from il2pkpd.datasets import PUBLISHED_COLUMNS, published


@pytest.fixture(scope="module")
def brief(conformance):
    path = conformance.parent / "domain" / "BRIEF.md"
    return path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def table():
    return published()


def _brief_sources(text: str) -> set[str]:
    section = text[text.index("## 11. Sources"):]
    return set(re.findall(r"^\* (S\d+) ", section, flags=re.MULTILINE))


PROJECT_SOURCES = Path(__file__).resolve().parents[2] / "docs" / "sources.md"


@pytest.fixture(scope="module")
def project_sources():
    """docs/sources.md: sources L1.. found by this project, with the numbers they report."""
    return PROJECT_SOURCES.read_text(encoding="utf-8")


def _project_sources(text: str) -> set[str]:
    return set(re.findall(r"^\* (L\d+) ", text, flags=re.MULTILINE))


def _brief_numbers(text: str) -> set[float]:
    text = text.replace("−", "-").replace("–", " ").replace("×", " ")
    return {round(float(x), 6) for x in re.findall(r"-?\d+(?:\.\d+)?", text)}


def test_columns_and_unique_ids(table):
    assert tuple(table.columns) == PUBLISHED_COLUMNS
    assert table["id"].is_unique
    assert len(table) >= 40


def test_every_row_cites_a_brief_source_and_a_tag(table, brief, project_sources):
    assert len(_brief_sources(brief)) == 112
    known = _brief_sources(brief) | _project_sources(project_sources)
    for row in table.itertuples():
        ids = [s.strip() for s in row.source.split(",")]
        assert ids and all(s in known for s in ids), f"{row.id}: unknown source {row.source!r}"
        assert row.tag in ("R", "I"), f"{row.id}: tag {row.tag!r}"
        if row.tag == "I":
            assert isinstance(row.note, str) and row.note.strip(), f"{row.id}: an inferred number must say how in `note`"


def test_every_reported_number_appears_in_the_brief(table, brief, project_sources):
    """... or, for a row citing this project's sources (L ids), in docs/sources.md."""
    for row in table[table.tag == "R"].itertuples():
        numbers = _brief_numbers(project_sources if row.source.startswith("L") else brief)
        for field in ("value", "lower", "upper"):
            v = getattr(row, field)
            if v != v:  # NaN: not given
                continue
            candidates = {round(v, 6), round(abs(v), 6), round(100 * v, 6), round(100 * abs(v), 6)}
            assert candidates & numbers, f"{row.id}.{field} = {v} does not appear in BRIEF.md"


def test_every_row_has_a_number_and_consistent_intervals(table):
    for row in table.itertuples():
        have = [x for x in (row.value, row.lower, row.upper) if x == x]
        assert have, f"{row.id}: no number"
        if row.lower == row.lower and row.upper == row.upper:
            assert row.lower <= row.upper, row.id
            if row.value == row.value:
                assert row.lower <= row.value <= row.upper, row.id


def test_regimens_are_in_the_regimen_language(table):
    for row in table.itertuples():
        if isinstance(row.regimen, str) and row.regimen.strip():
            reg = il2pkpd.parse_regimen(row.regimen.replace("<dose>", "1"))
            assert reg.blocks, row.id


def test_headline_ivory_result_is_present(table):
    row = table.set_index("id").loc["ivory_tbr_diff_index"]
    assert (row.value, row.lower, row.upper) == (-0.171, -0.308, -0.034)  # S12
    assert np.isclose(table.set_index("id").loc["lilacs_ed75"].value, 1.46)  # S22


def test_every_project_source_a_model_file_cites_is_listed(project_sources):
    """Model files may cite L ids (docs/sources.md) as they cite BRIEF's S ids."""
    known = _project_sources(project_sources)
    models = Path(__file__).resolve().parents[2] / "models"
    for path in sorted(models.glob("*.toml")):
        for cited in re.findall(r'source = "([^"]*)"', path.read_text()):
            ids = [s.strip() for s in cited.split(",") if s.strip().startswith("L")]
            assert set(ids) <= known, f"{path.name}: {ids} not all in docs/sources.md"
