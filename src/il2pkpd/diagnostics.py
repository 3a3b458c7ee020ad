"""Fit diagnostics: PSIS-LOO, goodness-of-fit tables, prediction-corrected VPC, KM-VPC.

All of them work from a :class:`~il2pkpd.inference.fit.Fit` made by NUTS (``idata`` with
``posterior``, ``log_likelihood``, ``posterior_predictive`` and ``observed_data`` groups)
and, for the VPCs, the model and the subjects' records to simulate new subjects with the
fitted design. Plots are in :mod:`il2pkpd.plot`; ArviZ's own trace and rank plots apply
directly to ``fit.idata``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import OptionError

__all__ = ["loo", "gof_table", "pc_vpc", "km_vpc", "population_theta_draws"]


def _require(fit, *groups: str) -> None:
    idata = getattr(fit, "idata", None)
    have = set(idata.children) if idata is not None else set()
    missing = [g for g in groups if g not in have]
    if missing:
        raise OptionError(f"`fit` has no {missing} group(s) (have {sorted(have)}): fit with sampler='nutpie' or 'pymc' and predictive_draws > 0")


def loo(fit):
    """Leave-one-SUBJECT-out PSIS-LOO (ArviZ) from the fit's ``subject_loglik``.

    Returns ArviZ's ELPD object (``elpd``, ``se``, ``p``, Pareto k per subject); k > 0.7
    flags subjects whose removal PSIS cannot approximate (refit without them to check).
    """
    import warnings

    import arviz as az

    from .errors import Il2pkpdWarning

    _require(fit, "log_likelihood")
    ll = fit.idata["log_likelihood"]["subject_loglik"]
    n_draws = ll.sizes["chain"] * ll.sizes["draw"]
    if n_draws < 100:
        raise OptionError(f"PSIS-LOO needs at least 100 posterior draws in the log_likelihood group, the fit has {n_draws}: "
                          "fit with more draws (or predictive_draws)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # re-said below, with what it means here
        result = az.loo(fit.idata, var_name="subject_loglik", pointwise=True)
    k = np.asarray(result.pareto_k)
    bad = int(np.sum(k > 0.7))
    if bad:
        warnings.warn(
            f"PSIS-LOO: Pareto k > 0.7 for {bad} of {k.size} subjects (max {k.max():.2f}). The log-likelihood is conditional on "
            "each subject's own random effects, so leaving a subject out changes the posterior a lot; treat the ELPD as "
            "approximate and check those subjects by refitting without them (K-fold by subject).", Il2pkpdWarning, stacklevel=2)
    return result


def gof_table(fit, model, subjects):
    # ``subjects``: what the fit was given (a dataset, a SubjectData, or records), see likelihood.subject_data
    """One row per observation: DV, PRED, IPRED and residuals (a pandas DataFrame).

    * PRED: the model at the posterior-mean typical values with random effects 0;
    * IPRED: posterior mean of the individual prediction;
    * IRES = DV - IPRED; CRES = (DV - E[y_rep]) / SD[y_rep], the conditional residual from
      the posterior predictive distribution (the Bayesian counterpart of NONMEM's CWRES:
      ~N(0, 1) when the model fits).

    For a maximum-likelihood fit (``fit(method="focei" | "foce" | "laplace")``) the table is
    NONMEM's: PRED at eta = 0, IPRED at the conditional modes, IWRES, and CRES = CWRES
    (Hooker et al. 2007) from the fit's residual table (``table.attrs["cres"]`` says which).
    """
    import jax.numpy as jnp
    import pandas as pd

    from .likelihood import JointLoglik, subject_data

    if fit.idata is None or "posterior_predictive" not in fit.idata.children:
        if "residuals" in fit.info:
            return _nonmem_gof_table(fit, model, subjects)
    _require(fit, "posterior_predictive", "observed_data")
    pp, obs = fit.idata["posterior_predictive"].to_dataset(), fit.idata["observed_data"].to_dataset()
    loglik = JointLoglik(model, subject_data(model, subjects))
    if loglik.observations()["dv"].size != obs.sizes["obs"]:
        raise OptionError(f"`subjects` have {loglik.observations()['dv'].size} observations, the fit {obs.sizes['obs']}: pass the data the fit used")
    typical = np.array([float(fit.estimates.get(p.name, p.value)) for p in model.parameters])
    n = len(loglik.subjects)
    pred_all, _ = loglik._predict(jnp.tile(jnp.asarray(typical), (n, 1)), jnp.asarray(loglik.covariates()))
    o = loglik.observations()
    pred = np.asarray(pred_all)[o["subject"], o["slot"]]
    yrep = np.asarray(pp["dv"].values).reshape(-1, obs.sizes["obs"])
    ipred = np.asarray(pp["ipred"].values).reshape(-1, obs.sizes["obs"]).mean(axis=0)
    dv = np.asarray(obs["dv"].values)
    sd = yrep.std(axis=0)
    return pd.DataFrame({
        "subject": obs["obs_subject"].values, "time": obs["obs_time"].values, "observation": obs["obs_name"].values,
        "dv": dv, "cens": obs["cens"].values, "pred": pred, "ipred": ipred, "ires": dv - ipred,
        "cres": np.where(sd > 0, (dv - yrep.mean(axis=0)) / np.where(sd > 0, sd, 1.0), np.nan),
    })


def _nonmem_gof_table(fit, model, subjects):
    """:func:`gof_table` of a maximum-likelihood fit, from its PRED/IPRED/IWRES/CWRES table."""
    import pandas as pd

    from .likelihood import subject_data

    res = fit.info["residuals"]
    ids = [str(r.subject) for r in subject_data(model, subjects).records]
    if fit.info.get("n_subjects") != len(ids) or not set(res["ID"]) <= set(ids):
        raise OptionError(f"`subjects` are not the data of this fit ({len(ids)} subjects, the fit {fit.info.get('n_subjects')}): pass the data the fit used")
    names = {o.dvid: o.name for o in model.observations}
    dv, ipred = np.asarray(res["DV"], dtype=float), np.asarray(res["IPRED"], dtype=float)
    table = pd.DataFrame({"subject": res["ID"], "time": res["TIME"], "observation": [names[d] for d in res["DVID"]], "dv": dv,
                          "cens": 0, "pred": res["PRED"], "ipred": ipred, "ires": dv - ipred, "iwres": res["IWRES"],
                          "cwres": res["CWRES"], "cres": res["CWRES"]})
    table.attrs["cres"] = f"CWRES (Hooker et al. 2007) of the {fit.info.get('method')} fit; censored rows are not in the table"
    return table


def population_theta_draws(fit, model, n_subjects: int, n_rep: int, seed: int = 0) -> np.ndarray:
    """(n_rep, n_subjects, P) parameters of NEW subjects: typical values and omegas from
    posterior draws, fresh random effects (for VPCs and predictive checks)."""
    from .simulation import apply_iiv

    rng = np.random.default_rng(seed)
    draws = fit.population_draws()
    n_draws = len(next(iter(draws.values()))) if draws else 1
    pick = rng.integers(0, n_draws, n_rep)
    out = np.empty((n_rep, n_subjects, len(model.parameters)))
    for j, p in enumerate(model.parameters):
        pop = draws[p.name][pick] if p.name in draws else np.full(n_rep, p.value)
        om_name = f"omega_{p.name}"
        omega = draws[om_name][pick] if om_name in draws else np.full(n_rep, p.iiv.omega if p.iiv is not None else 0.0)
        eta = omega[:, None] * rng.standard_normal((n_rep, n_subjects))
        out[..., j] = apply_iiv(p.iiv.kind if p.iiv is not None else "none", pop[:, None], eta)
    return out


def pc_vpc(fit, model, subjects, observation: str, *, n_rep: int = 100, bins: int | Sequence[float] = 8,
           quantiles: tuple[float, float, float] = (0.05, 0.5, 0.95), seed: int = 0):
    """Prediction-corrected VPC (Bergstrand et al. 2011) for one continuous observation.

    ``n_rep`` replicate trials of the fitted design are simulated with new subjects
    (posterior population parameters, fresh random effects, residual error). In each time
    bin, observed and simulated values are prediction-corrected, ``pcY = Y * PRED_bin / PRED``
    (PRED: population prediction, bin median), and the observed 5/50/95% quantiles are set
    against the 95% interval of the same quantiles over the replicates.

    Returns a DataFrame per bin: bin edges and mid time, observed quantiles ``obs_q05`` ...,
    and for each quantile the simulated 2.5/50/97.5% (``sim_q05_lo``, ``sim_q05_med``, ...),
    plus ``outside``: the observed quantile falls outside its simulated 95% interval.
    """
    import jax.numpy as jnp
    import pandas as pd

    from .likelihood import JointLoglik, residual_sd, subject_data

    names = [o.name for o in model.observations]
    if observation not in names:
        raise OptionError(f"`observation` must be one of {names}, got {observation!r}")
    spec = model.observations[names.index(observation)]
    loglik = JointLoglik(model, subject_data(model, subjects))
    o = loglik.observations()
    sel = o["observation"] == names.index(observation)
    sel &= o["cens"] == 0
    if sel.sum() < 3:
        raise OptionError(f"observation {observation!r} has {int(sel.sum())} uncensored rows; a VPC needs at least 3")
    n = len(loglik.subjects)
    cov = jnp.asarray(loglik.covariates())
    typical = np.array([float(fit.estimates.get(p.name, p.value)) for p in model.parameters])
    pred_pop = np.asarray(loglik._predict(jnp.tile(jnp.asarray(typical), (n, 1)), cov)[0])[o["subject"], o["slot"]][sel]
    times, dv = o["time"][sel], o["dv"][sel]
    edges = np.quantile(times, np.linspace(0, 1, bins + 1)) if isinstance(bins, int) else np.asarray(bins, dtype=float)
    edges = np.unique(edges)
    which = np.clip(np.searchsorted(edges, times, side="right") - 1, 0, len(edges) - 2)
    pred_bin = np.array([np.median(pred_pop[which == b]) if np.any(which == b) else np.nan for b in range(len(edges) - 1)])
    correction = np.where(pred_pop != 0, pred_bin[which] / np.where(pred_pop != 0, pred_pop, 1.0), 1.0)
    thetas = population_theta_draws(fit, model, n, n_rep, seed)
    errors = {k: {kk: float(v) for kk, v in d.items()} for k, d in _error_estimates(fit, model).items()}
    rng = np.random.default_rng(seed + 1)
    sim_q = np.full((n_rep, len(edges) - 1, len(quantiles)), np.nan)
    for r in range(n_rep):
        f = np.asarray(loglik._predict(jnp.asarray(thetas[r]), cov)[0])[o["subject"], o["slot"]][sel]
        sd = np.asarray(residual_sd(jnp.asarray(f), spec.error.model, **errors[observation]))
        eps = rng.standard_normal(f.size)
        y = f * np.exp(sd * eps) if spec.error.model == "lognormal" else f + sd * eps
        y = y * correction
        for b in range(len(edges) - 1):
            if np.any(which == b):
                sim_q[r, b] = np.quantile(y[which == b], quantiles)
    rows = []
    pc_dv = dv * correction
    for b in range(len(edges) - 1):
        inb = which == b
        if not inb.any():
            continue
        row = {"bin_lo": edges[b], "bin_hi": edges[b + 1], "time": float(np.median(times[inb])), "n": int(inb.sum())}
        outside = False
        for qi, q in enumerate(quantiles):
            tag = f"q{round(100 * q):02d}"
            obs_q = float(np.quantile(pc_dv[inb], q))
            lo, med, hi = np.nanquantile(sim_q[:, b, qi], [0.025, 0.5, 0.975])
            row.update({f"obs_{tag}": obs_q, f"sim_{tag}_lo": lo, f"sim_{tag}_med": med, f"sim_{tag}_hi": hi})
            outside |= not (lo <= obs_q <= hi)
        row["outside"] = outside
        rows.append(row)
    return pd.DataFrame(rows)


def _error_estimates(fit, model) -> dict:
    from .likelihood import default_error_params
    from .model import residual_parameter_name

    out = {}
    for name, params in default_error_params(model).items():
        out[name] = {}
        for key, value in params.items():
            var = residual_parameter_name(name, key, len(params))
            out[name][key] = float(fit.estimates.get(var, value))
    return out


def km_vpc(fit, model, subjects, event: str, *, n_rep: int = 100, grid: Sequence[float] | None = None, seed: int = 0):
    """Kaplan-Meier VPC for a time-to-event endpoint.

    Observed: the Kaplan-Meier estimate from the subjects' event rows (DV 1 event, 0
    censored). Simulated: ``n_rep`` replicate trials of new subjects; each subject's event
    time is drawn by inverting its cumulative hazard (``U ~ U(0,1)``, event when
    ``H(t) >= -log U``) and censored at its observed follow-up, and the KM curves' 2.5/50/97.5%
    bands are returned on ``grid``.

    Returns a DataFrame: ``time``, ``observed`` KM, ``sim_lo``, ``sim_med``, ``sim_hi``.
    """
    import pandas as pd

    from .simulation import simulate

    from .likelihood import subject_data

    names = [e.name for e in model.events]
    if event not in names:
        raise OptionError(f"`event` must be one of {names}, got {event!r}")
    data = subject_data(model, subjects)
    if data.row_cov is not None:
        raise OptionError("km_vpc simulates each subject with its first-record covariates; covariates that change within a subject "
                          "are not supported here")
    subjects = data.records
    obs_t, obs_d = [], []
    for recs in subjects:
        rows = [r for r in recs if r.evid == 0 and r.event == event]
        if rows:
            obs_t.append(rows[-1].time)
            obs_d.append(rows[-1].dv)
    if not obs_t:
        raise OptionError(f"no {event!r} event rows in `subjects`")
    obs_t, obs_d = np.asarray(obs_t), np.asarray(obs_d)
    grid = np.linspace(0.0, obs_t.max(), 50) if grid is None else np.asarray(grid, dtype=float)
    observed = _kaplan_meier(obs_t, obs_d, grid)
    keep = [i for i, recs in enumerate(subjects) if any(r.evid == 0 and r.event == event for r in recs)]
    with_event = [subjects[i] for i in keep]
    cov = {c.name: data.cov[keep, j] for j, c in enumerate(model.covariates)}
    n = len(with_event)
    thetas = population_theta_draws(fit, model, n, n_rep, seed)
    rng = np.random.default_rng(seed + 2)
    from .dosing import Record, Records

    curves = np.empty((n_rep, grid.size))
    # the observed follow-up times are on the simulation grid, so "event before the end of
    # follow-up" is decided exactly, not at the grid's resolution
    fine = np.union1d(np.union1d(grid, np.linspace(0.0, obs_t.max(), 400)), obs_t)
    dose_only = [Records([r for r in recs if r.evid != 0 and r.evid != 2] or [Record(time=0.0, evid=2)], subject=recs.subject) for recs in with_event]
    # every replicate trial in one simulate() call (one batch of n_rep x n subjects)
    table = {p.name: thetas[:, :, j].reshape(-1) for j, p in enumerate(model.parameters)}
    ds = simulate(model, dose_only * n_rep, fine, subject_params=table, covariates={k: np.tile(v, n_rep) for k, v in cov.items()} or None)
    cum_all = np.asarray(ds[f"cumhaz_{event}"].values).reshape(n_rep, n, fine.size)
    end = np.searchsorted(fine, obs_t)
    for r in range(n_rep):
        cum = cum_all[r]
        u = rng.random(n)
        t_sim = np.empty(n)
        d_sim = np.empty(n)
        for i in range(n):
            hit = np.nonzero(cum[i] >= -np.log(u[i]))[0]
            # an event at or before the subject's follow-up is at a grid time <= obs_t[i]
            t_sim[i], d_sim[i] = (fine[hit[0]], 1.0) if hit.size and hit[0] <= end[i] else (obs_t[i], 0.0)
        curves[r] = _kaplan_meier(t_sim, d_sim, grid)
    lo, med, hi = np.quantile(curves, [0.025, 0.5, 0.975], axis=0)
    return pd.DataFrame({"time": grid, "observed": observed, "sim_lo": lo, "sim_med": med, "sim_hi": hi})


def _kaplan_meier(times: np.ndarray, events: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Kaplan-Meier survival at ``grid`` (events at a tie come before censorings)."""
    order = np.lexsort((-events, times))
    t, d = times[order], events[order]
    at_risk = len(t) - np.arange(len(t))
    factors = np.where(d == 1, 1.0 - 1.0 / at_risk, 1.0)
    surv = np.cumprod(factors)
    idx = np.searchsorted(t, grid, side="right") - 1
    return np.where(idx >= 0, surv[np.maximum(idx, 0)], 1.0)
