"""Virtual populations: model outputs of fixed virtual subjects as a function of the
population parameters, pure JAX and differentiable.

Aggregate-data likelihoods (a published mean, count or dose-response) compare a summary of
a virtual population with the reported number. The subjects' random effects are FIXED
quasi-random normals (:func:`fixed_normals`), shared by every arm, so that:

* the likelihood is a smooth, deterministic function of the population parameters (NUTS,
  optimisers and finite-difference Hessians all see the same surface);
* arms are compared on the same virtual subjects (a paired, low-noise contrast).

Individual parameters follow the model file's IIV: lognormal ``theta * exp(omega z)``,
normal ``theta + omega z``, logit ``sigmoid(logit theta + omega z)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from ..dosing import Record, Records
from ..simulation import apply_iiv
from ..errors import OptionError
from ..solve import BatchSolver, EventBatch, SolverOptions, build_events
from ..solver_options import DEFAULT_SOLVER_OPTIONS
from ._aggregate import fixed_normals

__all__ = ["VirtualPopulation", "individual_theta"]


def individual_theta(model, theta_pop, omegas, z):
    """Individual parameters (N, P) from population values (P,), IIV SDs (P,) and normals (N, P).

    Parameters without IIV (or with omega 0) are the population value for every subject.
    """
    kinds = [p.iiv.kind if p.iiv is not None else "none" for p in model.parameters]
    return jnp.stack([apply_iiv(kind, theta_pop[j], omegas[j] * z[:, j], xp=jnp) for j, kind in enumerate(kinds)], axis=1)


class VirtualPopulation:
    """Outputs of ``n`` virtual subjects under several arms (regimens), in one solve.

    Parameters
    ----------
    model
        The model.
    arms
        Arm name -> (dose records of one subject, output times in the model's time unit).
        Every virtual subject receives every arm (the same random effects in each arm).
    n
        Number of virtual subjects.
    seed
        Seed of the scrambled Sobol normals.
    options
        Solver settings.
    covariates
        Covariate values (default: the model's), the same for every subject.

    Notes
    -----
    :meth:`outputs` returns, per arm, an array (n, n_times, n_outputs) in the outputs'
    declared units (``model.symbolic.output_names`` order, hazards and survivals included).
    """

    def __init__(self, model, arms: Mapping[str, tuple[Sequence[Record], Sequence[float]]], *, n: int = 32, seed: int = 0,
                 options: SolverOptions | None = None, covariates: Mapping[str, float] | None = None):
        if not arms:
            raise OptionError("`arms` must name at least one arm")
        if int(n) != n or n < 1:
            raise OptionError(f"`n` must be a positive integer, got {n!r}")
        self.model, self.n, self.arm_names = model, int(n), list(arms)
        self.options = options or DEFAULT_SOLVER_OPTIONS["calibration"]
        cov = {c.name: c.value for c in model.covariates}
        for k, v in (covariates or {}).items():
            if k not in cov:
                raise OptionError(f"`covariates`: {k!r} is not a covariate of model {model.name!r} (has {sorted(cov)})")
            cov[k] = float(v)
        self._cov = np.array([cov[c.name] for c in model.covariates], dtype=float)
        subjects, self._n_times = [], []
        for name, (doses, times) in arms.items():
            times = np.asarray(times, dtype=float)
            if times.ndim != 1 or times.size == 0 or np.any(np.diff(times) < 0):
                raise OptionError(f"arm {name!r}: output times must be a non-empty increasing 1-D array, got {times!r}")
            subjects.append(build_events(Records(doses, subject=name).with_outputs(times), model, output_rows="obs"))
            self._n_times.append(times.size)
        # arm-major: arm k is rows k*n ... (k+1)*n - 1
        self._batch = EventBatch.stack(subjects).repeat(self.n)
        self._z = fixed_normals(self.n, max(1, len(model.parameters)), seed=seed)
        self._solver = BatchSolver(model.compiled, self.options)

    def outputs(self, theta_pop, omegas=None):
        """Per arm, outputs (n, n_times, n_outputs) and the solver status (n,).

        ``theta_pop`` (P,) population values in declared units; ``omegas`` (P,) IIV SDs
        (default: the model file's). Returns ``{arm: (outputs, status)}``.
        """
        model, n_arms = self.model, len(self.arm_names)
        if omegas is None:
            omegas = jnp.array([p.iiv.omega if p.iiv is not None else 0.0 for p in model.parameters])
        theta = individual_theta(model, jnp.asarray(theta_pop), jnp.asarray(omegas), jnp.asarray(self._z))
        theta = jnp.tile(theta, (n_arms, 1))
        cov = jnp.tile(jnp.asarray(self._cov), (n_arms * self.n, 1))
        outs, _, status, _ = self._solver(self._batch.to_jax(), theta, cov)
        result = {}
        for k, name in enumerate(self.arm_names):
            sl = slice(k * self.n, (k + 1) * self.n)
            result[name] = (outs[sl, : self._n_times[k]], status[sl])
        return result
