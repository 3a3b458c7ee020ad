"""Test configuration: strict JAX numerics, Hypothesis profiles, shared paths.

* x64 and ``jax_numpy_rank_promotion = "raise"`` (diffrax/equinox habit);
* Hypothesis: profile ``ci`` (default, few examples, every test stays fast) and ``nightly``
  (``HYPOTHESIS_PROFILE=nightly``, many examples);
* ``SHARED``: the project's ``shared/`` folder beside the repository (conformance data);
* ``XLA_FLAGS`` is put back after every test (``_child_processes_see_one_cpu_device``).
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

# XLA_FLAGS as the session started; see _child_processes_see_one_cpu_device
_XLA_FLAGS = os.environ.get("XLA_FLAGS")

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("IL2PKPD_SHARED", ROOT.parent / "shared"))
CONFORMANCE = SHARED / "conformance"


@pytest.fixture(autouse=True)
def _child_processes_see_one_cpu_device():
    """Put ``XLA_FLAGS`` back as the session started after each test.

    PyMC sets ``XLA_FLAGS=--xla_force_host_platform_device_count=100`` in ``os.environ``
    when ``pymc.sampling.jax`` is imported, which ``fit(sampler="numpyro"|"blackjax")`` does
    (tests/integration/test_fit.py). JAX in this process has started and ignores it, but
    every process started afterwards (CLI tests, the notebook kernel, the fuzz workers)
    inherits it, sees 100 CPU devices and splits its batch solves over them
    (il2pkpd.solve._jax): test_cli_fit_writes_the_fit_folder took 220 s after the numpyro
    test and 12 s without it. No test here asks for more than one device that way
    (test_sharding.py sets IL2PKPD_CPU_DEVICES in its child's environment).
    """
    yield
    if os.environ.get("XLA_FLAGS") != _XLA_FLAGS:
        if _XLA_FLAGS is None:
            del os.environ["XLA_FLAGS"]
        else:
            os.environ["XLA_FLAGS"] = _XLA_FLAGS


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
