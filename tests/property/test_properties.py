"""Invariants that must hold for any parameters (Hypothesis; profile `ci` by default).

ADDL equals listing the doses; dose linearity and superposition for linear models; mass
balance; non-negativity; zero dose keeps baselines at steady state; the cumulative hazard
never decreases; vmap over subjects equals solving them one at a time. Shapes are kept
fixed within each test so that examples reuse one compiled solver.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import il2pkpd
from il2pkpd.dosing import Record, Records

T = np.linspace(0.0, 96.0, 33)
pos = lambda lo, hi: st.floats(lo, hi, allow_nan=False, allow_infinity=False)  # noqa: E731
pk2_params = st.fixed_dictionaries({"ka": pos(0.05, 5.0), "cl": pos(0.1, 10.0), "v1": pos(1.0, 100.0), "q": pos(0.1, 10.0), "v2": pos(1.0, 200.0)})


def sim(model, records, params, times=T, **kw):
    return il2pkpd.simulate(model, [Records(records, subject=1)], times, params=params, **kw)


def close(a, b, rel=1e-6):
    a, b = np.asarray(a), np.asarray(b)
    scale = max(np.max(np.abs(b)), 1e-300)
    assert np.max(np.abs(a - b)) <= rel * scale, f"max difference {np.max(np.abs(a - b)):.3e} vs scale {scale:.3e}"


@given(params=pk2_params, amt=pos(1.0, 1000.0), ii=pos(1.0, 30.0), lag=pos(0.0, 5.0), f1=pos(0.1, 1.0), infusion=st.booleans())
def test_addl_equals_listing_the_doses(pk2, params, amt, ii, lag, f1, infusion):
    rate = amt / 2.0 if infusion else 0.0
    p = dict(params, alag1=lag, f1=f1)
    a = sim(pk2, [Record(0.0, 1, amt, 1, rate=rate, ii=ii, addl=3)], p)
    b = sim(pk2, [Record(k * ii, 1, amt, 1, rate=rate) for k in range(4)], p)
    close(a["cp"].values, b["cp"].values, rel=1e-7)


@given(params=pk2_params, amt=pos(1.0, 500.0), factor=pos(0.01, 100.0))
def test_dose_linearity(pk2, params, amt, factor):
    a = sim(pk2, [Record(0.0, 1, amt, 1, ii=12.0, addl=2)], params)
    b = sim(pk2, [Record(0.0, 1, amt * factor, 1, ii=12.0, addl=2)], params)
    close(b["cp"].values, factor * a["cp"].values)


@given(params=pk2_params, a1=pos(1.0, 500.0), a2=pos(1.0, 500.0), t2=pos(0.0, 60.0))
def test_superposition_of_two_doses(pk2, params, a1, a2, t2):
    both = sim(pk2, [Record(0.0, 1, a1, 1), Record(t2, 1, a2, 2)], params)
    first = sim(pk2, [Record(0.0, 1, a1, 1), Record(t2, 1, 1e-300, 2)], params)
    second = sim(pk2, [Record(0.0, 1, 1e-300, 1), Record(t2, 1, a2, 2)], params)
    close(both["cp"].values, first["cp"].values + second["cp"].values)


MASS = il2pkpd.build_model({
    "model": {"name": "mass", "time_unit": "h"},
    "parameters": {"ka": {"value": 1.0, "unit": "1/h"}, "k": {"value": 0.2, "unit": "1/h"}, "f": {"value": 0.7, "unit": "1"}},
    "states": {"gut": {"unit": "mg", "dose": True, "bioavailability": "f"}, "central": {"unit": "mg", "dose": True}, "elim": {"unit": "mg"}},
    "odes": {"gut": "-ka*gut", "central": "ka*gut - k*central", "elim": "k*central"},
    "outputs": {"total": {"expr": "gut + central + elim", "unit": "mg"}},
})


@given(ka=pos(0.05, 5.0), k=pos(0.01, 2.0), f=pos(0.1, 1.0), amt=pos(1.0, 500.0), rate=pos(1.0, 100.0))
def test_mass_balance_with_bolus_and_infusion(ka, k, f, amt, rate):
    ds = sim(MASS, [Record(0.0, 1, amt, 1), Record(10.0, 1, amt, 2, rate=rate)], {"ka": ka, "k": k, "f": f})
    infused = np.clip((T - 10.0) * rate, 0.0, amt)
    close(ds["total"].values[0], f * amt + infused, rel=1e-7)


@given(params=pk2_params, amt=pos(1.0, 1000.0))
def test_pk_states_stay_non_negative(pk2, params, amt):
    ds = sim(pk2, [Record(0.0, 1, amt, 1, ii=8.0, addl=5)], params)
    for name in ("depot", "central", "peripheral"):
        assert ds[name].values.min() >= -1e-9 * amt


ivory_params = st.fixed_dictionaries({
    "ka": pos(0.05, 0.6), "cl": pos(4.0, 25.0), "ec50": pos(2.0, 50.0), "kprol": pos(0.1, 3.0), "hill": pos(0.8, 3.0),
    "kout_t": pos(0.05, 0.4), "mtt": pos(1.0, 5.0), "phi": pos(0.0, 1.0), "tbr0": pos(1.5, 3.5), "imax": pos(0.0, 0.6),
})
T_IV = np.linspace(0.0, 120.0, 41)


@given(params=ivory_params)
def test_zero_dose_keeps_baselines_at_steady_state(ivory, params):
    ds = il2pkpd.simulate(ivory, None, T_IV, params=dict(params, a_acs=0.0))
    for name in ivory.state_names:
        v = ds[name].values[0]
        np.testing.assert_allclose(v, v[0], rtol=1e-9, atol=1e-12, err_msg=name)
    assert np.all(np.diff(ds["cumhaz_mi"].values[0]) > 0)


@given(params=ivory_params, dose=pos(0.1, 5.0))
def test_immune_states_non_negative_and_cumulative_hazard_non_decreasing(ivory, params, dose):
    ds = il2pkpd.simulate(ivory, f"{dose} MIU sc qd x5 then {dose} MIU sc qw x7", T_IV, params=params)
    assert np.all(np.diff(ds["cumhaz_mi"].values[0]) >= 0)
    for name in ("treg_rest", "treg_p1", "treg_p2", "treg_p3", "cd25", "nk", "xs", "depot", "periph"):
        assert ds[name].values.min() >= -1e-9, name
    assert ds["conc"].values.min() >= -1e-6  # pM; round-off between doses only


@given(seed=st.integers(0, 2**31 - 1))
def test_vmap_over_subjects_equals_a_loop(ivory, seed):
    from il2pkpd.simulation import individual_parameters
    from il2pkpd.solve import SolverOptions, build_events, solve_subjects

    ev = build_events(Records(il2pkpd.parse_regimen("1.5 MIU sc qd x5").to_records(ivory)).with_outputs(T_IV), ivory, output_rows="obs")
    theta, cov, _ = individual_parameters(ivory, 3, seed=seed)
    opts = SolverOptions()
    batch = solve_subjects(ivory, [ev] * 3, theta[0], cov, SolverOptions(batching="vmap"), chunk_size=None)  # one vmapped call
    loop = solve_subjects(ivory, [ev] * 3, theta[0], cov, opts, chunk_size=1, workers=1)  # one call per subject
    threads = solve_subjects(ivory, [ev] * 3, theta[0], cov, opts, chunk_size=2, workers=2)  # padded chunk, 2 threads
    assert (batch.status == 0).all() and (loop.status == 0).all()
    for other in (loop, threads):
        for j in range(batch.outputs.shape[2]):
            # equal to within the solver's tolerance: vectorised XLA code may round differently,
            # and adaptive steps carry that difference at the rtol/atol level (e.g. 1e-9 pM
            # between doses), never more
            b = batch.outputs[:, :, j]
            np.testing.assert_allclose(other.outputs[:, :, j], b, rtol=1e-7, atol=1e-7 * np.abs(b).max() + 1e-8)
