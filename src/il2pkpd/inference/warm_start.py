"""NUTS started from a maximum-likelihood fit: its inverse mass matrix and its chains' starts (issue 14).

HMC moves fastest when its inverse mass matrix is the posterior's covariance on the sampler's
unconstrained scale; a warm-up that starts from a good one needs few windows to finish. A
FOCE-I/FOCE/Laplace fit carries what that covariance needs:

* the population parameters' covariance (the covariance step: its correlation matrix and
  standard errors, on the fit's natural scale), mapped to the PyMC model's unconstrained
  variables by the derivative of each variable's own transform (delta method);
* each subject's conditional covariance of its random effects, ``H_i^-1`` at the conditional
  mode (the inner problem's Hessian), for the centred ``eta_<name>`` as is and for the
  non-centred ``z_<name> = eta / omega`` divided by ``omega^2``;
* how each conditional mode moves with the population parameters, ``J_i = d eta_hat_i / dx``
  (the inner problem's implicit derivative, ``info["ebe"]["sensitivity"]``), which gives the
  random effects' covariance with the population parameters and with each other:
  ``Cov(eta_i, x) = J_i Cov(x)``, ``Var(eta_i) = H_i^-1 + J_i Cov(x) J_i^T``. Without it the
  matrix misses the ridge of a centred parameter (a typical value and the mean of its random
  effects, of which the data measure only the sum): on the 60-subject IVORY recovery the
  block-diagonal matrix left ``tbr0`` at ESS 17 in 200 draws (benchmarks/README.md).

A fit written before the sensitivity was recorded gives the block-diagonal matrix (cross terms
zero), and :class:`~il2pkpd.inference.estimators.Nuts` says so.

The chains start at draws from the same normal approximation on the unconstrained scale
(chain 0 at the estimate itself), so that they start apart, as R-hat assumes, but inside the
posterior's bulk, not at PyMC's jitter of +-1 around it.
"""

from __future__ import annotations

import numpy as np

from ..errors import OptionError
from .fit import held_residual_parameters

__all__ = ["initial_inverse_mass_matrix", "dispersed_starts", "flat_layout", "has_cross_covariance"]


def flat_layout(pmodel) -> list[tuple[str, slice, tuple]]:
    """Where each free variable sits in the sampler's flat unconstrained vector:
    ``(random variable's name, slice, shape)`` in ``pmodel.initial_point()`` order (the order
    PyMC's JAX samplers ravel their initial points in)."""
    rv_of = {value.name: rv.name for rv, value in pmodel.rvs_to_values.items()}
    layout, offset = [], 0
    for value_name, value in pmodel.initial_point().items():
        size = int(np.size(value))
        layout.append((rv_of[value_name], slice(offset, offset + size), np.shape(value)))
        offset += size
    return layout


def _transform(pmodel, rv_name: str, direction: str = "forward"):
    """The PyMC transform of free variable ``rv_name`` (``"forward"``: natural -> unconstrained,
    ``"backward"``) as a NumPy function of a vector (identity when it has none)."""
    import pytensor
    import pytensor.tensor as pt

    rv = pmodel[rv_name]
    transform = pmodel.rvs_to_transforms.get(rv)
    if transform is None:
        return lambda x: np.atleast_1d(np.asarray(x, dtype=float))
    x = pt.dvector("x")
    fn = pytensor.function([x], getattr(transform, direction)(x, *rv.owner.inputs), on_unused_input="ignore")
    return lambda values: np.asarray(fn(np.atleast_1d(np.asarray(values, dtype=float))))


def _population_covariance(init) -> tuple[list[str], np.ndarray]:
    """The fit's covariance of its estimates, by its table's rows and on the table's scale
    (``omega2`` a variance): the covariance step's correlation and standard errors."""
    step = init.info.get("covariance_step") or {}
    if not step.get("ok"):
        raise OptionError("the init fit has no covariance step (it failed: "
                          f"{step.get('reason', 'not run')}), so no mass matrix can come from it: use mass_matrix='adapt'")
    table = init.summary
    se = np.asarray(table["se"], dtype=float)
    corr = np.asarray(step["correlation"], dtype=float)
    if corr.shape != (len(se), len(se)) or not np.all(np.isfinite(se)):
        raise OptionError(f"the init fit's covariance step does not match its table ({corr.shape} for {len(se)} estimates) "
                          "or has non-finite standard errors: use mass_matrix='adapt'")
    return list(table.index), corr * np.outer(se, se)


def has_cross_covariance(init) -> bool:
    """Whether ``init`` records how its conditional modes move with its estimates
    (``info["ebe"]["sensitivity"]``), from which the random effects' covariance with the
    population parameters comes; fits written before it was recorded have none."""
    return "sensitivity" in (init.info.get("ebe") or {})


def _prior_variance(pmodel, rv_name: str, draws: int = 4000) -> float:
    """Variance of a scalar free variable's prior on its unconstrained scale (prior draws, fixed seed)."""
    import pymc as pm

    x = np.asarray(pm.draw(pmodel[rv_name], draws=draws, random_seed=0), dtype=float).ravel()
    return float(np.var(_transform(pmodel, rv_name)(x)))


def initial_inverse_mass_matrix(pmodel, init, subjects) -> np.ndarray:
    """A dense inverse mass matrix for NUTS on ``pmodel``'s unconstrained variables, from ``init``.

    Parameters
    ----------
    pmodel
        The PyMC model of :func:`~il2pkpd.inference.pymc_model.build_pymc_model`.
    init
        A maximum-likelihood :class:`~il2pkpd.inference.fit.Fit` of the same model and data, with
        a successful covariance step and its conditional modes (``info["ebe"]``: modes,
        conditional covariances and, where recorded, their sensitivity to the estimates).
    subjects
        The data (its subject IDs must be the fit's).

    Returns
    -------
    numpy.ndarray
        ``(d, d)``, symmetric positive definite, in the order of ``pmodel.initial_point()``
        (each variable flattened), which is the order NumPyro ravels PyMC's initial points in.

    Raises
    ------
    OptionError
        No covariance step, no conditional covariances, other subjects, or a free variable the
        fit does not estimate.
    """
    table_names, cov_fit = _population_covariance(init)
    renamed = init.info.get("fit_names")
    if not renamed:
        raise OptionError("the init fit does not record its estimates' names (fitted by an older il2pkpd): refit it, or use mass_matrix='adapt'")
    index = {renamed.get(n, n): j for j, n in enumerate(table_names)}
    ebe = init.info.get("ebe") or {}
    ids = [str(r.subject) for r in subjects.records]
    if ebe.get("subjects") != ids:
        raise OptionError("`init` was fitted to other subjects than this data's: no mass matrix from it")
    cond = np.asarray(ebe.get("conditional_cov", []), dtype=float)
    iiv = list(ebe.get("names", []))
    if cond.shape != (len(ids), len(iiv), len(iiv)):
        raise OptionError("the init fit has no conditional covariances of its random effects (fitted before they were recorded): "
                          "refit it, or use mass_matrix='adapt'")

    n_rows = len(table_names)
    sens = np.asarray(ebe["sensitivity"], dtype=float) if has_cross_covariance(init) else np.zeros((len(ids), len(iiv), n_rows))
    if sens.shape != (len(ids), len(iiv), n_rows):
        raise OptionError(f"the init fit's sensitivity of its modes has shape {sens.shape}, not (subjects, random effects, estimates) = "
                          f"{(len(ids), len(iiv), n_rows)}: refit it, or use mass_matrix='adapt'")
    eta_hat = np.asarray(ebe["eta"], dtype=float)

    # The Laplace approximation, linearised: the estimates x ~ N(x_hat, cov_fit) and, given
    # them, eta_i ~ N(eta_hat_i + J_i (x - x_hat), C_i). Every sampled coordinate is then
    # (to first order) A_j (x - x_hat) + its own conditional noise, so the covariance of the
    # sampled vector is A cov_fit A^T + the conditional block E.
    layout = flat_layout(pmodel)
    size = layout[-1][1].stop if layout else 0
    a_map = np.zeros((size, n_rows))
    cond_block = np.zeros((size, size))

    population = [(s, n) for n, s, _ in layout if not n.startswith(("z_", "eta_"))]
    # residual parameters of an observation type without rows: the data say nothing of them,
    # so their posterior is their prior, whose variance on the unconstrained scale is taken
    # from prior draws
    held_names = held_residual_parameters(init)
    held = [(s, n) for s, n in population if n not in index and n in held_names]
    for s, name in held:
        cond_block[s, s] = _prior_variance(pmodel, name)
    population = [(s, n) for s, n in population if (s, n) not in held]
    missing = [n for _, n in population if n not in index]
    if missing:
        raise OptionError(f"the init fit has no covariance for {missing}: fit the same model by maximum likelihood first")

    def per_table_unit(name: str) -> float:
        """d (the Fit's value of ``name``) / d (its table row): 1, or d omega / d omega^2."""
        return 0.5 / float(init.estimates[name]) if table_names[index[name]].startswith("omega2_") else 1.0

    # delta method: d u / d x of each transform at the estimate, by central differences on a
    # step well inside the estimate's uncertainty
    for s, name in population:
        x = float(init.estimates[name])
        h = 1e-4 * max(abs(x), 1e-8)
        forward = _transform(pmodel, name)
        a_map[s.start, index[name]] = float((forward(x + h) - forward(x - h))[0] / (2 * h)) * per_table_unit(name)

    # each sampled random effect: (its index in the fit's eta, its slice, omega for the
    # non-centred z = eta / omega or None for the centred eta itself)
    effects = []
    for n, s, _ in layout:
        if n.startswith(("z_", "eta_")):
            name = n.split("_", 1)[1]
            if name not in iiv:
                raise OptionError(f"the init fit has no random effect on {name!r}: fit the same model by maximum likelihood first")
            effects.append((iiv.index(name), s, float(init.estimates[f"omega_{name}"]) if n.startswith("z_") else None))
    subject = np.arange(len(ids))
    for k, s, omega in effects:
        rows = s.start + subject
        if omega is None:
            a_map[rows] = sens[:, k, :]
        else:  # z = eta / omega moves with eta and with omega: dz = d eta / omega - eta / omega^2 d omega
            a_map[rows] = sens[:, k, :] / omega
            name = f"omega_{iiv[k]}"
            a_map[rows, index[name]] -= eta_hat[:, k] / omega**2 * per_table_unit(name)
    for k, sk, dk in effects:  # within a subject: its conditional covariance; across subjects: none
        for m, sm, dm in effects:
            cond_block[sk.start + subject, sm.start + subject] = cond[:, k, m] / ((dk or 1.0) * (dm or 1.0))

    inv_mass = a_map @ cov_fit @ a_map.T + cond_block
    inv_mass = 0.5 * (inv_mass + inv_mass.T)
    eig = np.linalg.eigvalsh(inv_mass)
    if not np.all(np.isfinite(inv_mass)) or eig[0] <= 0:
        raise OptionError(f"the inverse mass matrix from the init fit is not positive definite (smallest eigenvalue {eig[0]:.3g}): "
                          "use mass_matrix='adapt'")
    return inv_mass


def dispersed_starts(pmodel, start: dict, inv_mass: np.ndarray, chains: int, seed: int) -> list[dict]:
    """One starting point per chain (natural scale, by free variable, as PyMC's ``initvals``):
    chain 0 at ``start``, the others at ``u + L e`` with ``u`` the start on the unconstrained
    scale, ``L L^T = inv_mass`` and ``e`` standard normal (a draw from the normal approximation)."""
    rng = np.random.default_rng(seed)
    chol = np.linalg.cholesky(inv_mass)
    layout = flat_layout(pmodel)
    forward = {n: _transform(pmodel, n) for n, _, _ in layout}
    backward = {n: _transform(pmodel, n, "backward") for n, _, _ in layout}
    u0 = np.concatenate([forward[n](start[n]).ravel() for n, _, _ in layout])
    starts = [dict(start)]
    for _ in range(1, chains):
        u = u0 + chol @ rng.standard_normal(len(u0))
        starts.append({n: backward[n](u[s]).reshape(shape) if shape else float(backward[n](u[s])[0]) for n, s, shape in layout})
    return starts
