"""Gaussian-process regression: mathkit.gp against scikit-learn and GPyTorch, side by side.

    python -m benchmarks.gp            # the full run (about 15 minutes on 2 busy cores)
    python -m benchmarks.gp --quick    # small sizes, to check the script

One data set throughout (``mathkit.data.simulate_smooth_regression``): x uniform on [0, 10],
y = sin(2x) + 0.3 cos(7x) + N(0, 0.1^2).
Test error is the RMSE of the posterior mean against the noise-free function on 1,000
test points inside the training range. Writes ``benchmarks/gp_results.json`` (read by
chapter 10) and prints a markdown table for RESULTS.md.

1. n = 3,000: ``method="cholesky"`` fit + predict vs scikit-learn's GaussianProcessRegressor
   (ConstantKernel * RBF + WhiteKernel, L-BFGS, no restarts).
2. n = 5,000 and 10,000: ``method="cg"`` vs GPyTorch ExactGP with its tutorial recipe
   (ScaleKernel(RBF), Gaussian likelihood, 50 Adam steps at lr 0.1).
3. n = 10^4, 10^5, 10^6: ``method="ski"`` fit + predict.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import time
from pathlib import Path

import numpy as np
import scipy.optimize
import torch

from mathkit.data import simulate_smooth_regression, smooth_function
from mathkit.gp import GPRegressor

RESULTS = Path(__file__).with_name("gp_results.json")


def make_data(n: int, seed: int = 0, n_test: int = 1000):
    data = simulate_smooth_regression(n, rng=seed)
    x = data.X[:, 0]
    x_test = np.linspace(x.min(), x.max(), n_test)
    return x, data.y, x_test, smooth_function(x_test)


def rmse(a, b) -> float:
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


def run_mathkit(method: str, n: int) -> dict:
    x, y, xt, ft = make_data(n)
    start = time.perf_counter()
    # normalize_y=False: the zero-mean model scikit-learn and GPyTorch fit, so likelihoods compare
    gp = GPRegressor(method=method, normalize_y=False).fit(x, y)
    mean = gp.predict(xt)
    seconds = time.perf_counter() - start
    return {"library": "mathkit", "method": method, "n": n, "seconds": seconds, "rmse": rmse(mean, ft),
            "lml": gp.log_marginal_likelihood(), "lengthscale": gp.kernel_.lengthscale, "noise": gp.noise_,
            # likelihood evaluations on all n points (the subsets' warm start not counted)
            "full_evaluations": gp.n_evaluations_, "converged": gp.optimisation_.converged}


def run_sklearn(n: int) -> dict:
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    x, y, xt, ft = make_data(n)
    evaluations = []

    def lbfgs(obj_func, initial_theta, bounds):
        """scikit-learn's default optimiser (its documented callable form), reporting its count."""
        res = scipy.optimize.minimize(obj_func, initial_theta, method="L-BFGS-B", jac=True, bounds=bounds)
        evaluations.append(res.nfev)
        return res.x, res.fun

    start = time.perf_counter()
    gp = GaussianProcessRegressor(ConstantKernel() * RBF() + WhiteKernel(0.1), optimizer=lbfgs,
                                  random_state=0).fit(x[:, None], y)
    mean = gp.predict(xt[:, None])
    seconds = time.perf_counter() - start
    return {"library": "scikit-learn", "method": "cholesky", "n": n, "seconds": seconds, "rmse": rmse(mean, ft),
            "lml": float(gp.log_marginal_likelihood_value_),
            "lengthscale": float(gp.kernel_.k1.k2.length_scale), "noise": float(gp.kernel_.k2.noise_level),
            # L-BFGS-B's evaluations as scipy reports them, plus the final log_marginal_likelihood
            "full_evaluations": sum(evaluations) + 1}


def run_gpytorch(n: int, steps: int = 50) -> dict:
    import gpytorch

    x, y, xt, ft = make_data(n)
    # the tutorial's recipe, in the tutorial's float32
    train_x, train_y = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)

    class ExactGPModel(gpytorch.models.ExactGP):
        def __init__(self, train_x, train_y, likelihood):
            super().__init__(train_x, train_y, likelihood)
            self.mean_module = gpytorch.means.ConstantMean()
            self.covar_module = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel())

        def forward(self, inputs):
            return gpytorch.distributions.MultivariateNormal(self.mean_module(inputs), self.covar_module(inputs))

    start = time.perf_counter()
    likelihood = gpytorch.likelihoods.GaussianLikelihood()
    model = ExactGPModel(train_x, train_y, likelihood)
    model.train()
    likelihood.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, model)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = -mll(model(train_x), train_y)
        loss.backward()
        optimizer.step()
    model.eval()
    likelihood.eval()
    with torch.no_grad(), gpytorch.settings.fast_pred_var():
        mean = likelihood(model(torch.tensor(xt, dtype=torch.float32))).mean.numpy()
    seconds = time.perf_counter() - start
    return {"library": "GPyTorch", "method": "ExactGP (CG)", "n": n, "seconds": seconds, "rmse": rmse(mean, ft),
            "lml": float(-loss.detach()) * n, "lengthscale": float(model.covar_module.base_kernel.lengthscale.detach()),
            "noise": float(likelihood.noise.detach())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the script")
    parser.add_argument("--part", choices=["exact", "cg", "ski"], action="append",
                        help="rerun only these comparisons, keeping the others' rows in the results file")
    parser.add_argument("--cg-sizes", type=int, nargs="+", default=[5000, 10000],
                        help="training sizes of the CG vs GPyTorch comparison")
    parser.add_argument("--output", type=Path, default=RESULTS,
                        help="where to write the results (default: the file chapter 10 reads)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch and for scikit-learn's BLAS (default: library defaults)")
    args = parser.parse_args()
    if args.threads:
        # on a shared 2-core machine, multithreaded BLAS/OpenMP can be slower than one thread;
        # pinning both sides to the same count keeps the comparison fair
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)
    exact_n, cg_ns, ski_ns = (3000, args.cg_sizes, [10**4, 10**5, 10**6])
    if args.quick:
        exact_n, cg_ns, ski_ns = (600, [1200], [10**4])
    parts = {
        "exact": [lambda: run_mathkit("cholesky", exact_n), lambda: run_sklearn(exact_n)],
        "cg": [f for n in cg_ns for f in (lambda n=n: run_mathkit("cg", n), lambda n=n: run_gpytorch(n))],
        "ski": [lambda n=n: run_mathkit("ski", n) for n in ski_ns],
    }
    kept = {}
    if args.part and args.output.exists():
        previous = json.loads(args.output.read_text())
        kept = {part: [r for r in previous["rows"] if r.get("part") == part] for part in parts}
    rows = []
    for part, runs in parts.items():
        if args.part and part not in args.part:
            rows += kept.get(part, [])
            continue
        for run in runs:
            stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
            rows.append({**run(), "part": part, "date": stamp, "threads": torch.get_num_threads()})
            print(json.dumps(rows[-1]), flush=True)
    dates = sorted(r["date"] for r in rows)
    meta = {"date": dates[0] if dates[0] == dates[-1] else f"{dates[0]} to {dates[-1]}",
            "machine": f"{platform.machine()} 2-core CPU, no GPU, shared with other jobs",
            "torch": torch.__version__}
    if not args.quick:
        args.output.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    print(f"\n{meta['date']}, {meta['machine']}\n")
    print("| comparison | n | mathkit (s) | peer (s) | speed-up | mathkit RMSE | peer RMSE | mathkit LML | peer LML |")
    print("|---|---|---|---|---|---|---|---|---|")
    for ours, peer in zip(rows, rows[1:]):
        if ours["library"] == "mathkit" and peer["library"] != "mathkit" and ours["n"] == peer["n"]:
            print(f"| {ours['method']} vs {peer['library']} | {ours['n']:,} | {ours['seconds']:.1f} | "
                  f"{peer['seconds']:.1f} | {peer['seconds'] / ours['seconds']:.1f}x | {ours['rmse']:.2e} | "
                  f"{peer['rmse']:.2e} | {ours['lml']:.2f} | {peer['lml']:.2f} |")
    for row in rows:
        if row["method"] == "ski":
            print(f"| ski | {row['n']:,} | {row['seconds']:.1f} | - | - | {row['rmse']:.2e} | - | {row['lml']:.1f} | - |")


if __name__ == "__main__":
    main()
