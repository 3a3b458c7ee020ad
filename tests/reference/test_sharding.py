"""Subjects split over host CPU devices (``IL2PKPD_CPU_DEVICES``) give the one-device answer.

The sharded batch solver pads the batch to a multiple of the device count (repeating the last
subject) and drops the padding: values and gradients must equal the one-device computation
exactly up to summation order. The NONMEM dosing scenarios without steady state (an odd
number of subjects, so the padding is exercised) go through the Rodas4 loop and its adjoint
in a second process started with two CPU devices (the device count is fixed when JAX starts).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

SCRIPT = r"""
import json, sys
import jax, jax.numpy as jnp, numpy as np
import il2pkpd
from il2pkpd.io.nonmem import read_nonmem_csv
from il2pkpd.solve import BatchSolver, EventBatch, SolverOptions, build_events
from il2pkpd.solve._config import subject_devices

pk1 = il2pkpd.load_model("pk1_oral")
subjects = [r for r in read_nonmem_csv(sys.argv[1]).subject_records(pk1) if not any(x.ss for x in r)][:7]
batch = EventBatch.stack([build_events(r, pk1) for r in subjects]).to_jax()
theta = jnp.tile(jnp.asarray([p.value for p in pk1.parameters]), (len(subjects), 1))
theta = theta * (1.0 + 0.05 * jnp.arange(len(subjects)))[:, None]
solve = BatchSolver(pk1.compiled, SolverOptions(solver="rodas4", rtol=1e-8, atol=1e-10, batching="map"))

def total(th):
    outs, _, status, _ = solve(batch, th, jnp.zeros((len(subjects), len(pk1.covariates))))
    return jnp.sum(jnp.where(jnp.isfinite(outs), outs, 0.0) ** 2), status

(value, status), grad = jax.value_and_grad(total, has_aux=True)(theta)
# Tsit5 (diffrax, not split over devices) must still differentiate in a many-device process
tsit5 = BatchSolver(pk1.compiled, SolverOptions(solver="tsit5", rtol=1e-8, atol=1e-10, batching="map"))
def total5(th):
    outs = tsit5(batch.take(slice(0, 2)), th, jnp.zeros((2, len(pk1.covariates))))[0]
    return jnp.sum(jnp.where(jnp.isfinite(outs), outs, 0.0) ** 2)
grad5 = jax.grad(total5)(theta[:2])
print(json.dumps({"grad_tsit5": np.asarray(grad5).tolist(), "devices": jax.device_count(), "split": len(subject_devices()), "value": float(value), "status": np.asarray(status).tolist(),
                  "grad": np.asarray(grad).tolist()}))
"""


def _run(devices: int | None, data: Path, xla_flags: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("IL2PKPD_CPU_DEVICES", "XLA_FLAGS")}
    if devices is not None:
        env["IL2PKPD_CPU_DEVICES"] = str(devices)
    if xla_flags is not None:
        env["XLA_FLAGS"] = xla_flags
    res = subprocess.run([sys.executable, "-c", SCRIPT, str(data)], capture_output=True, text=True, env=env, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_two_cpu_devices_give_the_one_device_value_and_gradient(conformance):
    data = conformance / "nonmem-dosing" / "data.csv"
    one, two = _run(1, data), _run(2, data)
    assert (one["devices"], two["devices"]) == (1, 2) and (one["split"], two["split"]) == (0, 2)
    assert one["status"] == two["status"] and one["status"].count(0) >= 6  # one scenario needs its own dose columns
    np.testing.assert_allclose(two["value"], one["value"], rtol=1e-13)
    np.testing.assert_allclose(np.array(two["grad"]), np.array(one["grad"]), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.array(two["grad_tsit5"]), np.array(one["grad_tsit5"]), rtol=1e-12, atol=1e-14)


def test_devices_forced_by_another_library_are_not_split_over(conformance):
    """PyMC's JAX module sets XLA_FLAGS to 100 host devices when imported, and child
    processes inherit it: subjects must still run on one device unless IL2PKPD_CPU_DEVICES
    asks (the CI notebook kernel once split 16 subjects over 100 devices and nutpie failed)."""
    data = conformance / "nonmem-dosing" / "data.csv"
    forced = _run(None, data, xla_flags="--xla_force_host_platform_device_count=8")
    assert forced["devices"] == 8 and forced["split"] == 0
