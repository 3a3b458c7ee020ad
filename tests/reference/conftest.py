"""Fixtures shared by the reference tests."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture
def linear_growth() -> dict:
    """The model of data/linear_growth.toml as a dict (for ``il2pkpd.build_model``): linear in
    its random effects with an additive error, so Laplace-type objectives are exact for it."""
    return tomllib.loads((DATA / "linear_growth.toml").read_text())
