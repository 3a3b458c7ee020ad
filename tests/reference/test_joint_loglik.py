"""Joint log-likelihood through the ODE solve: value and gradient.

* value: equals an independent sum of scipy.stats log-densities over simulate() predictions;
* gradient: reverse-mode AD through diffrax matches central finite differences (relative
  1e-5, the issue's bar) on the IVORY model with every data type (IL-2 concentration,
  Treg and NK fold change, TBR, MI time-to-event), at rtol 1e-10 so that finite differences
  of the adaptive solve mean something (BRIEF/STACK: AD differentiates the discretised
  solution).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import il2pkpd
from il2pkpd.design import Arm, Sample, TrialDesign, simulate_trial
from il2pkpd.io.nonmem import from_dataframe
from il2pkpd.likelihood import JointLoglik, default_error_params, subject_data
from il2pkpd.solve import SolverOptions


@pytest.fixture(scope="module")
def data(ivory):
    design = TrialDesign(
        "grad-check", (Arm("IL-2", "1.5 MIU sc qd x5 then 1.5 MIU sc qw x3", 2), Arm("placebo", None, 1)),
        (Sample("conc", (0.1, 0.25, 4.1)), Sample("treg", (0.0, 5.0, 25.0)), Sample("nk", (5.0, 25.0)), Sample("tbr", (0.0, 40.0))),
        followup=120.0, events=("mi",), randomisation="sequential",
    )
    tab = simulate_trial(design, ivory, seed=3)
    # events at known times so that both branches (event, censored) are exercised
    tab.loc[tab.EVENT == "mi", "DV"] = [1.0, 0.0, 1.0]
    tab.loc[tab.EVENT == "mi", "TIME"] = [50.0, 120.0, 80.0]
    tab = tab[~((tab.ARM == "placebo") & (tab.DVID == 1))].sort_values(["ID", "TIME"], kind="stable")  # no PK on placebo
    return tab, from_dataframe(tab).subject_records(ivory)


def test_loglik_value_matches_scipy_on_simulated_predictions(ivory, data):
    tab, subjects = data
    L = JointLoglik(ivory, subject_data(ivory, from_dataframe(tab)), SolverOptions(rtol=1e-10, atol=1e-14))
    theta = np.tile([p.value for p in ivory.parameters], (3, 1))
    total, per_subject, status = L(theta)
    assert (np.asarray(status) == 0).all() and L.n_observations == 2 * 10 + 7 and L.n_events == 3  # placebo has no PK samples
    ds = il2pkpd.simulate(ivory, from_dataframe(tab), iiv=False, rtol=1e-10, atol=1e-14)
    want = 0.0
    for i, sid in enumerate(ds.subject.values):
        rows = tab[tab.ID == sid].reset_index(drop=True)
        for k, r in rows.iterrows():
            if r.EVID != 0:
                continue
            if isinstance(r.EVENT, str) and r.EVENT:
                h, big_h = float(ds.hazard_mi.values[i, k]), float(ds.cumhaz_mi.values[i, k])
                want += (np.log(h) if r.DV == 1 else 0.0) - big_h
                continue
            spec = ivory.observation_for_dvid(int(r.DVID))
            f = float(ds[spec.output].values[i, k])
            sd = spec.error.add if spec.error.model == "additive" else spec.error.prop * abs(f)
            want += stats.norm.logpdf(r.DV, f, sd)
    assert float(total) == pytest.approx(want, rel=1e-8)


@pytest.mark.parametrize("solver", ["tsit5", "rodas4"])
def test_gradient_matches_central_finite_differences(ivory, data, solver):
    tab, subjects = data
    L = JointLoglik(ivory, subject_data(ivory, from_dataframe(tab)), SolverOptions(rtol=1e-10, atol=1e-14, solver=solver))
    cov = jnp.tile(jnp.array([c.value for c in ivory.covariates]), (3, 1))
    errors = default_error_params(ivory)
    names = list(ivory.parameter_names)
    log_typical = jnp.log(jnp.array([max(p.value, 1e-3) for p in ivory.parameters]))

    def f(log_p):  # population parameters on the log scale, shared by the subjects
        return L._loglik(jnp.tile(jnp.exp(log_p), (3, 1)), cov, errors)[0]

    grad = jax.grad(f)(log_typical)
    h = 1e-4
    for name in ["ka", "cl", "f_sc", "ec50", "kprol", "imax", "beta_tbr", "k_weib"]:  # PK, Treg, TBR, hazard
        j = names.index(name)
        fd = (f(log_typical.at[j].add(h)) - f(log_typical.at[j].add(-h))) / (2 * h)
        assert abs(float(grad[j]) - float(fd)) <= 1e-5 * abs(float(fd)), f"{name}: AD {float(grad[j])} vs FD {float(fd)}"


def test_error_parameters_are_validated(ivory, data):
    tab, subjects = data
    L = JointLoglik(ivory, subject_data(ivory, from_dataframe(tab)))
    theta = np.tile([p.value for p in ivory.parameters], (3, 1))
    bad = default_error_params(ivory)
    bad["tbr"] = {"add": -0.1}
    with pytest.raises(il2pkpd.OptionError, match="-0.1"):
        L(theta, error_params=bad)
