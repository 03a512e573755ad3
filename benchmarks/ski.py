"""Structured kernel interpolation at scale: mathkit's ``GPRegressor(method="ski")`` in 1-D and
2-D against GPyTorch's 2-D ``GridInterpolationKernel``, in the same run.

    OPENBLAS_NUM_THREADS=1 nice -n 5 python -m benchmarks.ski   # the full run
    python -m benchmarks.ski --quick              # small sizes, to check the script

Data: :func:`mathkit.data.simulate_smooth_regression` (noise sd 0.1, inputs on [0, 10]^d).
Each configuration runs in its own process (so its peak resident memory is its own) with a
time limit; it fits on n points and predicts the mean and sd at 10,000 fresh points; the RMSE
is the posterior mean's against the noise-free function (the noise floor is 0.1 for y, so a
mean within a few hundredths of f is near it). Writes ``benchmarks/ski_results.json``
(read by chapter 10) and prints a markdown table for RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing as mp
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np
import torch

from mathkit.data import simulate_smooth_regression, smooth_function

RESULTS = Path(__file__).with_name("ski_results.json")
#: torch threads per run; on a shared machine one thread (and OPENBLAS_NUM_THREADS=1) avoids
#: BLAS workers spinning against other jobs' processes
THREADS = int(os.environ.get("SKI_BENCH_THREADS", "1"))
N_TEST = 10_000


def _test_points(dims: int):
    X = np.random.default_rng(123).uniform(0, 10, (N_TEST, dims))
    return X, smooth_function(X)


def run_mathkit(n: int, dims: int) -> dict:
    from mathkit.gp import GPRegressor

    data = simulate_smooth_regression(n, dims=dims, rng=0)
    Xt, ft = _test_points(dims)
    start = time.perf_counter()
    gp = GPRegressor(method="ski").fit(data.X, data.y)
    fit = time.perf_counter() - start
    mean, sd = gp.predict(Xt, return_std=True)
    seconds = time.perf_counter() - start
    return {"library": "mathkit", "n": n, "dims": dims, "seconds": seconds, "fit_seconds": fit,
            "rmse": float(np.sqrt(np.mean((mean - ft) ** 2))), "lengthscale": gp.kernel_.lengthscale,
            "noise_sd": float(np.sqrt(gp.noise_)), "grid": list(gp.backend_.grid.shape),
            "backend": type(gp.backend_).__name__, "n_evaluations": gp.n_evaluations_,
            "converged": gp.optimisation_.converged, "optimiser": gp.optimisation_.message,
            "mean_sd": float(np.mean(sd))}


def run_gpytorch(n: int, dims: int, grid_size: int = 64, steps: int = 30) -> dict:
    """GPyTorch's KISS-GP recipe: ScaleKernel(GridInterpolationKernel(RBF)), Adam at lr 0.1."""
    import gpytorch

    data = simulate_smooth_regression(n, dims=dims, rng=0)
    Xt, ft = _test_points(dims)
    X, y = torch.as_tensor(data.X), torch.as_tensor(data.y)

    class Model(gpytorch.models.ExactGP):
        def __init__(self, X, y, likelihood):
            super().__init__(X, y, likelihood)
            self.mean_module = gpytorch.means.ConstantMean()
            self.covar_module = gpytorch.kernels.ScaleKernel(gpytorch.kernels.GridInterpolationKernel(
                gpytorch.kernels.RBFKernel(), grid_size=grid_size, num_dims=dims))

        def forward(self, x):
            return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))

    start = time.perf_counter()
    likelihood = gpytorch.likelihoods.GaussianLikelihood()
    model = Model(X, y, likelihood).double()
    model.train(), likelihood.train()
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, model)
    for _ in range(steps):
        opt.zero_grad()
        (-mll(model(X), y)).backward()
        opt.step()
    fit = time.perf_counter() - start
    model.eval(), likelihood.eval()
    with torch.no_grad(), gpytorch.settings.fast_pred_var():
        pred = model(torch.as_tensor(Xt))
        mean, sd = pred.mean.numpy(), pred.variance.sqrt().numpy()
    seconds = time.perf_counter() - start
    return {"library": "gpytorch", "n": n, "dims": dims, "seconds": seconds, "fit_seconds": fit,
            "rmse": float(np.sqrt(np.mean((mean - ft) ** 2))),
            "lengthscale": float(model.covar_module.base_kernel.base_kernel.lengthscale),
            "noise_sd": float(likelihood.noise.sqrt()), "grid": [grid_size] * dims, "mean_sd": float(np.mean(sd))}


def _child(name, n, dims, queue):
    torch.set_num_threads(THREADS)
    out = {"mathkit": run_mathkit, "gpytorch": run_gpytorch}[name](n, dims)
    out["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    queue.put(out)


def timed(name: str, n: int, dims: int, limit: float) -> dict:
    queue = mp.get_context("fork").Queue()
    proc = mp.get_context("fork").Process(target=_child, args=(name, n, dims, queue))
    start = time.perf_counter()
    proc.start()
    proc.join(limit)
    if proc.is_alive():
        proc.kill()
        proc.join()
        return {"library": name, "n": n, "dims": dims, "seconds": None, "timed_out_after": limit}
    try:
        return queue.get(timeout=5)
    except Exception:  # the child died (e.g. out of memory)
        return {"library": name, "n": n, "dims": dims, "seconds": None, "failed_after": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    small, mid, big = (1000, 3000, 10_000) if args.quick else (10_000, 100_000, 1_000_000)
    # the 2-D runs and GPyTorch's smallest first: on a shared machine the later ones may be cut
    plan = [("mathkit", small, 2, 600), ("gpytorch", small, 2, 300), ("mathkit", mid, 2, 600),
            ("mathkit", big, 2, 600), ("mathkit", small, 1, 300), ("mathkit", mid, 1, 300),
            ("mathkit", big, 1, 300), ("gpytorch", mid, 2, 300)]
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, no GPU",
            "torch": torch.__version__, "threads": THREADS, "load_average_start": os.getloadavg()[0],
            "n_test": N_TEST}
    rows = []
    for name, n, dims, limit in plan:
        smaller = [r for r in rows if r["library"] == name and r["dims"] == dims and r["n"] < n]
        if smaller and all(r.get("seconds") is None for r in smaller):
            # it did not finish a smaller size within its limit: the larger one would not either
            rows.append({"library": name, "n": n, "dims": dims, "seconds": None, "skipped": "smaller size did not finish"})
            continue
        rows.append(timed(name, n, dims, limit))
        print(rows[-1], flush=True)
        meta["load_average_end"] = os.getloadavg()[0]
        if not args.quick:  # after every run, so a cut-short session keeps what finished
            RESULTS.write_text(json.dumps({"meta": meta, "runs": rows}, indent=1))
    print(f"\n{meta}\n\n| library | d | n | fit + predict (s) | RMSE vs f | peak RSS (GB) |\n|---|---|---|---|---|---|")
    for r in rows:
        if r.get("skipped"):
            secs = "not run (a smaller size did not finish)"
        elif r.get("seconds"):
            secs = f"{r['seconds']:.1f}"
        else:
            secs = f"> {r.get('timed_out_after', r.get('failed_after', 0)):.0f} (stopped)"
        print(f"| {r['library']} | {r['dims']} | {r['n']:,} | {secs} | {r.get('rmse', float('nan')):.3f} | {r.get('peak_rss_gb', float('nan')):.2f} |")


if __name__ == "__main__":
    main()
