"""Fixtures shared by the fuzz suites."""

from __future__ import annotations

import pytest

from _fuzz import Worker


@pytest.fixture(scope="session")
def worker():
    """One fuzz worker process (il2pkpd imported once) for both fuzz suites; it is
    restarted inside `Worker.run` when a case kills or hangs it."""
    w = Worker()
    yield w
    w.close()
