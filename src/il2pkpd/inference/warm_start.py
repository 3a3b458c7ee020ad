"""NUTS started from a maximum-likelihood fit: its inverse mass matrix and its chains' starts (issue 14).

HMC moves fastest when its inverse mass matrix is the posterior's covariance on the sampler's
unconstrained scale; a warm-up that starts from a good one needs few windows to finish. A
FOCE-I/FOCE/Laplace fit carries what that covariance needs:

* the population parameters' covariance (the covariance step: its correlation matrix and
  standard errors, on the fit's natural scale), mapped to the PyMC model's unconstrained
  variables by the derivative of each variable's own transform (delta method);
* each subject's conditional covariance of its random effects, ``H_i^-1`` at the conditional
  mode (the inner problem's Hessian), for the centred ``eta_<name>`` as is and for the
  non-centred ``z_<name> = eta / omega`` divided by ``omega^2``.

Population parameters and random effects are taken as uncorrelated (a block-diagonal matrix):
the fit gives no cross term, and the warm-up's adaptation (``mass_matrix="init"``) learns it.

The chains start at draws from the same normal approximation on the unconstrained scale
(chain 0 at the estimate itself), so that they start apart, as R-hat assumes, but inside the
posterior's bulk, not at PyMC's jitter of +-1 around it.
"""

from __future__ import annotations

import numpy as np

from ..errors import OptionError
from .fit import held_residual_parameters

__all__ = ["initial_inverse_mass_matrix", "dispersed_starts", "flat_layout"]


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
    """The fit's covariance of its estimates, by its table's rows, on the scale of its estimates
    (``omega`` as an SD): the covariance step's correlation and SEs, with ``omega2 -> omega`` by
    the delta method (``d sqrt(v) / dv = 1 / (2 sqrt(v))``)."""
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
    cov = corr * np.outer(se, se)
    scale = np.ones(len(se))
    for j, name in enumerate(table.index):
        if name.startswith("omega2_"):
            scale[j] = 0.5 / np.sqrt(float(table["estimate"].iloc[j]))
    return list(table.index), cov * np.outer(scale, scale)


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
        a successful covariance step and its conditional modes (``info["ebe"]``).
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

    layout = flat_layout(pmodel)
    size = layout[-1][1].stop if layout else 0
    inv_mass = np.zeros((size, size))

    population = [(s, n) for n, s, _ in layout if not n.startswith(("z_", "eta_"))]
    # residual parameters of an observation type without rows: the data say nothing of them,
    # so their posterior is their prior, whose variance on the unconstrained scale is taken
    # from prior draws
    held_names = held_residual_parameters(init)
    held = [(s, n) for s, n in population if n not in index and n in held_names]
    for s, name in held:
        inv_mass[s, s] = _prior_variance(pmodel, name)
    population = [(s, n) for s, n in population if (s, n) not in held]
    missing = [n for _, n in population if n not in index]
    if missing:
        raise OptionError(f"the init fit has no covariance for {missing}: fit the same model by maximum likelihood first")
    # delta method: d u / d x of each transform at the estimate, by central differences on a
    # step well inside the estimate's uncertainty
    rows = [index[n] for _, n in population]
    jac = np.zeros(len(rows))
    for k, (_, name) in enumerate(population):
        x = float(init.estimates[name])
        h = 1e-4 * max(abs(x), 1e-8)
        forward = _transform(pmodel, name)
        jac[k] = float((forward(x + h) - forward(x - h))[0] / (2 * h))
    pop_cov = cov_fit[np.ix_(rows, rows)] * np.outer(jac, jac)
    flat = np.concatenate([np.arange(s.start, s.stop) for s, _ in population]) if population else np.array([], int)
    inv_mass[np.ix_(flat, flat)] = pop_cov

    # each sampled random effect: (its index in the fit's eta, its slice, the divisor taking
    # eta to the sampled coordinate: omega for the non-centred z = eta / omega, 1 for eta)
    effects = []
    for n, s, _ in layout:
        if n.startswith(("z_", "eta_")):
            name = n.split("_", 1)[1]
            if name not in iiv:
                raise OptionError(f"the init fit has no random effect on {name!r}: fit the same model by maximum likelihood first")
            effects.append((iiv.index(name), s, float(init.estimates[f"omega_{name}"]) if n.startswith("z_") else 1.0))
    subject = np.arange(len(ids))
    for k, sk, dk in effects:  # within a subject: its conditional covariance; across subjects: none
        for m, sm, dm in effects:
            inv_mass[sk.start + subject, sm.start + subject] = cond[:, k, m] / (dk * dm)

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
