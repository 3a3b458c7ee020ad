"""Groups derived from posterior draws: individual parameters, pointwise log-likelihood,
posterior predictive observations, observed data (for ArviZ: LOO, PPC, VPC, GOF).

Pointwise means per SUBJECT for the log-likelihood: in population models the exchangeable
unit is the subject (its observations share random effects), so PSIS-LOO here is
leave-one-subject-out.
"""

from __future__ import annotations

import numpy as np

from ..model import residual_parameter_name
from ..simulation import apply_iiv

__all__ = ["individual_theta_draws", "error_param_draws", "derived_groups", "thin_indices"]


def thin_indices(n_chains: int, n_draws: int, max_total: int) -> np.ndarray:
    """Draw indices kept per chain so that chains x kept <= ``max_total`` (evenly spaced)."""
    keep = max(1, min(n_draws, max_total // max(1, n_chains)))
    return np.unique(np.linspace(0, n_draws - 1, keep).round().astype(int))


def individual_theta_draws(model, posterior, n_subjects: int) -> np.ndarray:
    """(chain, draw, subject, parameter) individual parameters from a PyMC posterior
    (typical values under their names, random effects as ``eta_<name>``)."""
    some = posterior[next(iter(posterior.data_vars))].values
    c, d = some.shape[:2]
    out = np.empty((c, d, n_subjects, len(model.parameters)))
    for j, p in enumerate(model.parameters):
        pop = np.asarray(posterior[p.name].values)[:, :, None] if p.name in posterior else np.full((c, d, 1), p.value)
        eta_name = f"eta_{p.name}"
        eta = np.asarray(posterior[eta_name].values) if eta_name in posterior else np.zeros((c, d, n_subjects))
        out[..., j] = apply_iiv(p.iiv.kind if p.iiv is not None else "none", pop, eta)
    return out


def error_param_draws(model, posterior) -> dict[str, dict[str, np.ndarray]]:
    """``{observation: {add/prop/sigma: (chain, draw)}}`` from ``sigma_<obs>[_<key>]`` draws."""
    from ..likelihood import default_error_params

    out = {}
    for name, params in default_error_params(model).items():
        out[name] = {}
        for key, value in params.items():
            var = residual_parameter_name(name, key, len(params))
            out[name][key] = np.asarray(posterior[var].values) if var in posterior else np.full(posterior[next(iter(posterior.data_vars))].shape[:2], value)
    return out


def derived_groups(model, loglik, posterior, cov: np.ndarray, *, max_draws: int = 200, seed: int = 0) -> dict:
    """``log_likelihood``, ``posterior_predictive`` and ``observed_data`` datasets.

    Computed on at most ``max_draws`` posterior draws (evenly thinned per chain).
    """
    import jax
    import jax.numpy as jnp
    import xarray as xr

    from ..likelihood import residual_sd

    n = len(loglik.subjects)
    ids = [r.subject if r.subject is not None else i + 1 for i, r in enumerate(loglik.subjects)]
    theta = individual_theta_draws(model, posterior, n)
    errs = error_param_draws(model, posterior)
    c, d = theta.shape[:2]
    keep = thin_indices(c, d, max_draws)
    obs = loglik.observations()
    pointwise = jax.jit(lambda th, e: loglik._loglik(th, jnp.asarray(cov), e)[1])
    predict = jax.jit(lambda th: loglik._predict(th, jnp.asarray(cov))[0])
    rng = np.random.default_rng(seed)
    ll = np.empty((c, keep.size, n))
    yrep = np.empty((c, keep.size, obs["dv"].size))
    ipred = np.empty((c, keep.size, obs["dv"].size))
    specs = model.observations
    for ci in range(c):
        for k, di in enumerate(keep):
            e = {o: {kk: float(v[ci, di]) for kk, v in p.items()} for o, p in errs.items()}
            ll[ci, k] = np.asarray(pointwise(jnp.asarray(theta[ci, di]), e))
            pred = np.asarray(predict(jnp.asarray(theta[ci, di])))[obs["subject"], obs["slot"]]
            ipred[ci, k] = pred
            sim = np.empty_like(pred)
            for m, spec in enumerate(specs):
                sel = obs["observation"] == m
                if not sel.any():
                    continue
                sd = np.asarray(residual_sd(jnp.asarray(pred[sel]), spec.error.model, **e[spec.name]))
                eps = rng.standard_normal(sel.sum())
                sim[sel] = pred[sel] * np.exp(sd * eps) if spec.error.model == "lognormal" else pred[sel] + sd * eps
            yrep[ci, k] = sim
    coords_obs = {"obs": np.arange(obs["dv"].size), "obs_subject": ("obs", np.asarray(ids, dtype=object)[obs["subject"]].astype(str)),
                  "obs_time": ("obs", obs["time"]), "obs_name": ("obs", np.array([specs[m].name for m in obs["observation"]]))}
    base = {"chain": np.arange(c), "draw": keep}
    log_likelihood = xr.Dataset({"subject_loglik": (("chain", "draw", "subject"), ll)}, coords={**base, "subject": [str(i) for i in ids]})
    posterior_predictive = xr.Dataset({"dv": (("chain", "draw", "obs"), yrep), "ipred": (("chain", "draw", "obs"), ipred)}, coords={**base, **coords_obs})
    observed = xr.Dataset({"dv": (("obs",), obs["dv"]), "cens": (("obs",), obs["cens"])}, coords=coords_obs)
    return {"log_likelihood": log_likelihood, "posterior_predictive": posterior_predictive, "observed_data": observed}
