"""The one batch interface: `EventBatch` (stacked events) and `BatchSolver` (model + options).

Oracles: the one-compartment oral closed form (Bateman function) for what a batch solve
returns; the stacked batch itself for what `take`/`tile`/`broadcast_to` must give; JAX's
traced program for whether the `batching` option reaches it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import il2pkpd
from il2pkpd.dosing import Record, Records
from il2pkpd.errors import OptionError
from il2pkpd.solve import BatchSolver, EventBatch, Kind, SolverOptions, build_events


@pytest.fixture(scope="module")
def pk1():
    return il2pkpd.load_model("pk1_oral")


def _subject(pk1, dose: float, times, subject):
    recs = Records([Record(0.0, 1, dose, 1)], subject=subject).with_outputs(np.asarray(times, dtype=float))
    return build_events(recs, pk1, output_rows="obs")


def _theta(pk1, **values):
    base = {p.name: p.value for p in pk1.parameters} | values
    return np.array([base[p.name] for p in pk1.parameters])


def test_stack_pads_shorter_subjects_and_keeps_their_lengths(pk1):
    a, b = _subject(pk1, 100.0, [1.0, 2.0, 4.0, 8.0], 1), _subject(pk1, 50.0, [3.0], 2)
    batch = EventBatch.stack([a, b])
    assert len(batch) == 2 and list(batch.n_times) == [4, 1]
    assert batch.events["kind"].shape == (2, a.n_events)
    # the shorter subject is padded with NOOP events and its last output time
    assert (batch.events["kind"][1, b.n_events:] == Kind.NOOP).all()
    np.testing.assert_array_equal(batch.out_times[1], [3.0, 3.0, 3.0, 3.0])
    np.testing.assert_array_equal(batch.t_start, [0.0, 0.0])


def test_take_tile_and_broadcast_reproduce_the_stacked_rows(pk1):
    a, b = _subject(pk1, 100.0, [1.0, 2.0], 1), _subject(pk1, 50.0, [3.0, 5.0], 2)
    batch = EventBatch.stack([a, b])
    tiled = batch.tile(3)
    assert len(tiled) == 6
    np.testing.assert_array_equal(np.asarray(tiled.events["amt"][4]), batch.events["amt"][0])
    one = batch.take(1)  # an int drops the subject axis
    assert one.out_times.shape == (2,)
    wide = one.broadcast_to(5)
    assert len(wide) == 5
    np.testing.assert_array_equal(np.asarray(wide.out_times[3]), batch.out_times[1])
    np.testing.assert_array_equal(np.asarray(batch.repeat(2).t_start), [0.0, 0.0, 0.0, 0.0])


@pytest.mark.parametrize("solver", ["tsit5", "rodas4"])
def test_batch_solve_equals_the_closed_form(pk1, solver):
    """C(t) = F D ka / (V (ka - k)) (exp(-k t) - exp(-ka t)), k = CL/V, for two subjects
    with different doses, output times and parameters in one batch."""
    times = [[0.5, 1.0, 3.0, 12.0], [2.0, 24.0]]
    doses = [100.0, 40.0]
    thetas = np.stack([_theta(pk1, ka=1.3, cl=2.0, v=20.0), _theta(pk1, ka=0.6, cl=0.8, v=35.0)])
    batch = EventBatch.stack([_subject(pk1, d, t, i) for i, (d, t) in enumerate(zip(doses, times, strict=True))])
    solver_ = BatchSolver(pk1.compiled, SolverOptions(solver=solver, rtol=1e-10, atol=1e-12))
    sol = solver_.solve(batch, thetas, np.zeros((2, 0)))
    cp = pk1.symbolic.output_names.index("cp")
    for i in range(2):
        ka, cl, v = (thetas[i, pk1.parameter_names.index(n)] for n in ("ka", "cl", "v"))
        t, k = np.asarray(times[i]), cl / v
        exact = doses[i] * ka / (v * (ka - k)) * (np.exp(-k * t) - np.exp(-ka * t))
        np.testing.assert_allclose(sol.outputs[i, : sol.n_times[i], cp], exact, rtol=1e-7)
    assert (sol.status == 0).all()
    # the jitted call on JAX arrays returns the same numbers
    outs, _, status, _ = solver_(batch.to_jax(), jnp.asarray(thetas), jnp.zeros((2, 0)))
    np.testing.assert_allclose(np.asarray(outs), sol.outputs, rtol=1e-12)


@pytest.mark.parametrize("batching, scans", [("map", True), ("vmap", False)])
def test_the_batching_option_shapes_the_compiled_program(pk1, batching, scans):
    """``lax.map`` traces to a scan over subjects; ``vmap`` has none at the top level."""
    batch = EventBatch.stack([_subject(pk1, 100.0, [1.0, 2.0], i) for i in range(3)]).to_jax()
    solver_ = BatchSolver(pk1.compiled, SolverOptions(solver="rodas4", batching=batching))
    jaxpr = jax.make_jaxpr(lambda th: solver_(batch, th, jnp.zeros((3, 0))))(jnp.tile(jnp.asarray(_theta(pk1)), (3, 1)))
    (call,) = [e for e in jaxpr.jaxpr.eqns if "jaxpr" in e.params]  # the jitted solve
    names = {e.primitive.name for e in call.params["jaxpr"].jaxpr.eqns}  # its body's first level
    assert ("scan" in names) is scans


def test_an_unknown_batching_is_refused():
    with pytest.raises(OptionError, match="`batching` must be 'auto', 'map' or 'vmap', got 'lockstep'"):
        SolverOptions(batching="lockstep")
