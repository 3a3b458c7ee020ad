"""Laplace's objective and exact gradient on the IVORY recovery model with MI rows: compile and run time (issue 14).

Laplace's Hessian of each subject's conditional objective is second order in the random
effects, so its gradient through the modes needs third derivatives of the ODE solution. The
code now reads them from the solution's Taylor polynomial at the modes (third order, triples
with two random effects); until commit 604aade it differentiated the solve inside the
objective (three nested forward passes, in two places). Both compute the same numbers; this
measures what each costs to compile and to evaluate, at the model file's values with the
random effects at zero, on ``--subjects`` subjects of the SYNTHETIC IVORY trial
(``designs.ivory()``, Treg/NK/TBR rows and the MI rows over two years), persistent compilation
cache off, one device.

    .venv/bin/python benchmarks/bench_laplace_gradient.py                          # this checkout
    PYTHONPATH=/path/to/checkout-of-604aade/src .venv/bin/python benchmarks/bench_laplace_gradient.py --label direct

Writes benchmarks/results/laplace-gradient-<label>-<time>.json (the objective and gradient
values included, to compare the two runs) and prints it.
"""

from __future__ import annotations

import os

os.environ["IL2PKPD_NO_COMPILE_CACHE"] = "1"
os.environ["IL2PKPD_CPU_DEVICES"] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=2, help="subjects of the trial (half on aldesleukin, default 2)")
    ap.add_argument("--label", default="taylor", help="a name for the code measured (the results file carries it)")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    if args.subjects < 1:
        ap.error(f"--subjects must be >= 1, got {args.subjects}")

    sys.path.insert(0, str(HERE))
    from bench_recovery import ESTIMATED, recovery_model

    import jax
    import jax.numpy as jnp
    import numpy as np

    import il2pkpd
    from il2pkpd.design import designs, simulate_trial
    from il2pkpd.io.nonmem import from_dataframe
    from il2pkpd.io.output import atomic_write
    from il2pkpd.likelihood import MarginalLikelihood, default_error_params
    from il2pkpd.solve import SolverOptions

    model = recovery_model().estimate_only(*ESTIMATED)
    n_il2 = args.subjects - args.subjects // 2
    data = from_dataframe(simulate_trial(designs.ivory(n_il2, args.subjects - n_il2), model, seed=1))
    ml = MarginalLikelihood(model, data, method="laplace", options=SolverOptions(rtol=1e-4, atol=1e-7, solver="rodas4"))
    theta = jnp.asarray([p.value for p in model.parameters])
    log_omega2 = jnp.log(jnp.asarray([p.iiv.omega**2 for p in model.parameters if p.iiv is not None]))
    err = {o: {k: jnp.asarray(float(v)) for k, v in p.items()} for o, p in default_error_params(model).items()}
    free = jnp.asarray(ml._varying)

    def unpack(u):  # every parameter that can vary, on its own scale, then log omega^2
        return theta.at[free].set(u[: free.size]), jnp.diag(jnp.exp(u[free.size:])), err

    u = jnp.concatenate([theta[free], log_omega2])
    eta = jnp.zeros((ml.n_subjects, len(ml.iiv)))
    fn = jax.jit(lambda u, eta: ml._objective_and_gradient(unpack, u, eta))
    t0 = time.perf_counter()
    compiled = fn.lower(u, eta).compile()
    compile_s = time.perf_counter() - t0
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        obj, grad = jax.block_until_ready(compiled(u, eta))
        runs.append(time.perf_counter() - t0)
    result = {"benchmark": "laplace-gradient", "label": args.label, "il2pkpd": os.path.dirname(il2pkpd.__file__), "date": time.strftime("%Y-%m-%d %H:%M"),
              "cpu_count": os.cpu_count(), "machine": platform.machine(), "synthetic": True, "subjects": ml.n_subjects,
              "random_effects": ml.iiv_names, "parameters_that_vary": len(ml._varying), "compile_s": compile_s, "run_s": runs,
              "objective": np.asarray(obj).tolist(), "gradient": np.asarray(grad).tolist()}
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"laplace-gradient-{args.label}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    atomic_write(out, lambda p: p.write_text(json.dumps(result, indent=1)))
    print(f"{args.label}: compile {compile_s:.0f} s, evaluation {min(runs):.2f} s (best of 3), {ml.n_subjects} subjects; wrote {out}")


if __name__ == "__main__":
    main()
