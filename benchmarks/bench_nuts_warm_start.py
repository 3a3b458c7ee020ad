"""How much a FOCE-I fit helps NUTS on the 60-subject IVORY trial (SYNTHETIC; issue 14).

HMC's step size is bounded by the largest eigenvalue of ``L^T H L`` (``H``: Hessian of the
negative log posterior on the sampler's unconstrained scale; ``L L^T``: the inverse mass
matrix) and a trajectory must be long enough for the smallest, so the number of leapfrog steps
per draw grows like the square root of that matrix's condition number. This script measures it
at the FOCE-I start for these metrics: the identity (where a cold warm-up starts), the diagonal
of the FOCE-I matrix, the FOCE-I matrix without its cross terms (population parameters and
random effects uncorrelated; fits without the modes' sensitivity), and the dense FOCE-I matrix
of :func:`il2pkpd.inference.warm_start.initial_inverse_mass_matrix`. ``H`` is central
differences of the JAX gradient of PyMC's log density (2d gradients).

With ``--nuts-warmup W --nuts-draws N`` it also runs NumPyro's NUTS, one chain, on the same log
density from the same start with the FOCE-I matrix held fixed, and reports the leapfrog steps per
iteration (warm-up and draws), the adapted step size and divergences, and the wall time
(compilation included); ``--nuts-cold`` adds the same run with NumPyro's defaults (a diagonal
matrix adapted from the identity), the cold start the FOCE-I matrix replaces.

The trial and model are those of ``bench_recovery_focei.py`` (no MI rows, ``p_mi_1y`` fixed);
``--init`` is its ``--save-fit`` folder of the same trial:

    .venv/bin/python benchmarks/bench_recovery_focei.py --fix-iiv-zero ec50 --save-fit /tmp/focei60
    .venv/bin/python benchmarks/bench_nuts_warm_start.py --init /tmp/focei60 --fix-iiv-zero ec50 [--nuts-warmup 40 --nuts-draws 20]

Results: benchmarks/results/nuts-warm-start-*.json (written atomically).
"""

from __future__ import annotations

import os

os.environ.setdefault("IL2PKPD_CPU_DEVICES", "2")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--init", type=Path, required=True, help="bench_recovery_focei.py --save-fit folder of the same trial")
    ap.add_argument("--fix-iiv-zero", action="append", default=[], metavar="PARAMETER", help="as given to bench_recovery_focei.py")
    ap.add_argument("--n-il2", type=int, default=31)
    ap.add_argument("--n-placebo", type=int, default=29)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--nuts-warmup", type=int, default=0, help="also run NumPyro NUTS with the FOCE-I matrix fixed (0: no run)")
    ap.add_argument("--nuts-draws", type=int, default=20)
    ap.add_argument("--nuts-cold", action="store_true",
                    help="also run NumPyro's default NUTS (diagonal mass matrix adapted from the identity) from the same start, same iterations")
    ap.add_argument("--skip-hessian", action="store_true", help="only the NUTS runs (no condition numbers)")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()

    import sys

    sys.path.insert(0, str(HERE))
    import jax
    import jax.numpy as jnp
    import numpy as np
    from bench_recovery import ESTIMATED, recovery_model
    from pymc.sampling.jax import get_jaxified_logp

    from il2pkpd.design import designs, simulate_trial
    from il2pkpd.inference.estimators import ESTIMATORS
    from il2pkpd.inference.fit import initial_values
    from il2pkpd.inference.pymc_model import build_pymc_model
    from il2pkpd.inference.warm_start import _transform, flat_layout, has_cross_covariance, initial_inverse_mass_matrix
    from il2pkpd.io.fits import load_fit
    from il2pkpd.io.nonmem import from_dataframe
    from il2pkpd.io.output import atomic_write
    from il2pkpd.likelihood import subject_data
    from il2pkpd.solve import SolverOptions

    model = recovery_model().estimate_only(*(e for e in ESTIMATED if e != "p_mi_1y"))
    table = simulate_trial(designs.ivory(args.n_il2, args.n_placebo), model, seed=args.seed)
    data = from_dataframe(table[table["EVENT"].isna()])
    model = model.replace(parameters=tuple(dataclasses.replace(p, iiv=None) if p.name in args.fix_iiv_zero else p for p in model.parameters))
    init = load_fit(args.init, model=model)
    subjects = subject_data(model, data)
    chosen, rule = ESTIMATORS["nuts"].parameterization(model, "auto", init)
    options = SolverOptions(rtol=1e-4, atol=1e-7, solver="rodas4")
    pmodel = build_pymc_model(model, subjects, options=options, parameterization=chosen)
    start = initial_values(pmodel, init, subjects)
    inv_mass = initial_inverse_mass_matrix(pmodel, init, subjects)
    # the same matrix without the cross terms (random effects uncorrelated with the population
    # parameters: what fits without the modes' sensitivity give)
    block = initial_inverse_mass_matrix(pmodel, dataclasses.replace(init, info={**init.info, "ebe": {
        k: v for k, v in init.info["ebe"].items() if k != "sensitivity"}}), subjects) if has_cross_covariance(init) else None

    layout = flat_layout(pmodel)
    u0 = np.concatenate([_transform(pmodel, n)(start[n]).ravel() for n, _, _ in layout])
    # PyMC's flag reads backwards: negative_logp=False returns -log p (what pymc.sampling.jax hands
    # NumPyro as its potential), as a function of the value variables in initial_point() order
    neg_logp = get_jaxified_logp(pmodel, negative_logp=False)

    def unflatten(u):
        return [u[s].reshape(shape) for _, s, shape in layout]

    def potential(u):  # the negative log posterior
        return neg_logp(unflatten(u))

    grad = jax.jit(jax.grad(potential))
    t0 = time.perf_counter()
    g0 = np.asarray(grad(jnp.asarray(u0)))
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    g0 = np.asarray(grad(jnp.asarray(u0)))
    gradient_s = time.perf_counter() - t0
    d, h = len(u0), 1e-4
    hess = np.zeros((d, d))
    t0 = time.perf_counter()
    for j in range(0 if args.skip_hessian else d):
        e = np.zeros(d)
        e[j] = h
        hess[:, j] = (np.asarray(grad(jnp.asarray(u0 + e))) - np.asarray(grad(jnp.asarray(u0 - e)))) / (2 * h)
    hessian_s = time.perf_counter() - t0
    hess = 0.5 * (hess + hess.T)
    metrics = {}
    for label, matrix in () if args.skip_hessian else (("identity", np.eye(d)), ("focei_diagonal", np.diag(np.diag(inv_mass))),
                                                                  *((("focei_block_diagonal", block),) if block is not None else ()),
                                                                  ("focei_dense", inv_mass)):
        chol = np.linalg.cholesky(matrix)
        ev = np.linalg.eigvalsh(chol.T @ hess @ chol)
        positive = ev[ev > 0]
        metrics[label] = {"eigenvalue_min": float(ev[0]), "eigenvalue_max": float(ev[-1]), "negative": int((ev <= 0).sum()),
                          "condition_number": float(ev[-1] / positive[0]) if positive.size else None,
                          "eigenvalue_percentiles_1_50_99": np.percentile(ev, [1, 50, 99]).tolist()}
    result = {"benchmark": "nuts-warm-start", "date": time.strftime("%Y-%m-%d %H:%M"), "cpu_count": os.cpu_count(), "machine": platform.machine(),
              "devices": os.environ.get("IL2PKPD_CPU_DEVICES"), "synthetic": True, "design": "designs.ivory() without MI rows",
              "init": str(args.init), "iiv_left_out": list(args.fix_iiv_zero), "parameterization": chosen, "parameterization_rule": rule,
              "dimension": d, "gradient_compile_s": compile_s, "gradient_s": gradient_s, "hessian_s": hessian_s,
              "gradient_norm_at_start": float(np.linalg.norm(g0)), "metrics": metrics}
    if args.nuts_warmup:
        from numpyro.infer import MCMC, NUTS

        runs = {"nuts_focei_fixed": {"inverse_mass_matrix": inv_mass, "dense_mass": True, "adapt_mass_matrix": False}}
        if args.nuts_cold:  # NumPyro's defaults: a diagonal matrix adapted in warm-up, from the identity
            runs["nuts_cold"] = {}
        for label, settings in runs.items():
            kernel = NUTS(potential_fn=potential, target_accept_prob=0.8, **settings)
            mcmc = MCMC(kernel, num_warmup=args.nuts_warmup, num_samples=args.nuts_draws, num_chains=1, progress_bar=False)
            fields = ("num_steps", "adapt_state.step_size", "diverging")
            t0 = time.perf_counter()
            # warm-up and draws apart, so that the warm-up iterations' tree sizes are kept too
            mcmc.warmup(jax.random.PRNGKey(args.seed), init_params=jnp.asarray(u0), extra_fields=fields, collect_warmup=True)
            warm = {k: np.asarray(v) for k, v in mcmc.get_extra_fields().items()}  # np.asarray waits for the (asynchronous) run
            mcmc.run(mcmc.post_warmup_state.rng_key, extra_fields=fields)
            extra = {k: np.concatenate([warm[k], np.asarray(v)]) for k, v in mcmc.get_extra_fields().items()}
            wall = time.perf_counter() - t0
            steps = extra["num_steps"]
            result[label] = {"warmup": args.nuts_warmup, "draws": args.nuts_draws, "wall_s_with_compilation": wall,
                             "steps_per_iteration": steps.tolist(), "mean_steps_warmup": float(steps[:args.nuts_warmup].mean()),
                             "mean_steps": float(steps[args.nuts_warmup:].mean()), "step_size": float(extra["adapt_state.step_size"][-1]),
                             "divergences": int(extra["diverging"][args.nuts_warmup:].sum())}
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"nuts-warm-start-{time.strftime('%Y%m%d-%H%M%S')}.json"
    atomic_write(out, lambda p: p.write_text(json.dumps(result, indent=1)))
    print(f"dimension {d}; gradient {1e3 * gradient_s:.0f} ms (compile {compile_s:.1f} s); "
          + ("Hessian skipped (--skip-hessian)" if args.skip_hessian else f"Hessian by 2d gradients {hessian_s:.0f} s"))
    if metrics:
        print("| metric | smallest eigenvalue of L^T H L | largest | condition number | sqrt (steps per draw scale) |")
        print("|---|---|---|---|---|")
    for label, m in metrics.items():
        c = m["condition_number"]
        print(f"| {label} | {m['eigenvalue_min']:.3g} | {m['eigenvalue_max']:.3g} | {c:.3g} | {c ** 0.5:.1f} |" if c else f"| {label} | {m} |")
    for label, words in (("nuts_focei_fixed", "FOCE-I matrix fixed"), ("nuts_cold", "cold (diagonal, adapted from the identity)")):
        if label in result:
            r = result[label]
            print(f"NUTS, {words}: mean {r['mean_steps_warmup']:.0f} steps per warm-up iteration, {r['mean_steps']:.0f} per draw, "
                  f"step size {r['step_size']:.3g}, {r['divergences']} divergences, {r['wall_s_with_compilation']:.0f} s")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
