"""Test configuration: strict JAX numerics, Hypothesis profiles, shared paths.

* x64 and ``jax_numpy_rank_promotion = "raise"`` (diffrax/equinox habit);
* Hypothesis: profile ``ci`` (default, few examples, every test stays fast) and ``nightly``
  (``HYPOTHESIS_PROFILE=nightly``, many examples);
* ``SHARED``: the project's ``shared/`` folder beside the repository (conformance data).
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
import pytest
from hypothesis import HealthCheck, settings

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

settings.register_profile("ci", max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
settings.register_profile("nightly", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("IL2PKPD_SHARED", ROOT.parent / "shared"))
CONFORMANCE = SHARED / "conformance"


@pytest.fixture(scope="session")
def conformance() -> Path:
    """Path of ``shared/conformance`` (NONMEM outputs nobody here wrote)."""
    if not CONFORMANCE.is_dir():
        pytest.fail(f"conformance data not found at {CONFORMANCE}; set IL2PKPD_SHARED to the shared/ folder")
    return CONFORMANCE


@pytest.fixture(scope="session")
def ivory():
    import il2pkpd

    return il2pkpd.load_model("ivory")


@pytest.fixture(scope="session")
def pk1():
    import il2pkpd

    return il2pkpd.load_model("pk1_oral")


@pytest.fixture(scope="session")
def pk2():
    import il2pkpd

    return il2pkpd.load_model("pk2_oral")
