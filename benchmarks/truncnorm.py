"""TruncatedNormal (mathkit) against scipy.stats.truncnorm: speed and accuracy in the same run.

    python -m benchmarks.truncnorm            # print the tables
    python -m benchmarks.truncnorm --record   # and append them to benchmarks/RESULTS.md

Workloads ("mixes"): 10^6 values, every element with its own (loc, scale, low, high), in
standard units a = (low - loc)/scale, b = (high - loc)/scale:

- "central": a uniform in [-3, 0], b uniform in [0, 3];
- "one-sided at 0": the book's demand model, low = 0 and high = inf, loc uniform in [-5, 20],
  scale in [1, 5] (a from about -20 to 5);
- "typical": a uniform in [-6, 6], width exponential with mean 2, a quarter of the laws
  unbounded below and a quarter unbounded above;
- "far tails": a uniform in [-40, 38], width exponential with mean 1;
- "everything": a quarter each of central, one-sided (either side), near-tail (a in [3, 8],
  either side) and far-tail (a in [8, 38], either side) intervals, shuffled.

Timed as best of a few repeats, interleaved with scipy's, float64, mathkit including the
construction of the distribution with argument validation on. scipy is single-threaded, and
so is mathkit here: the timings run with ONE torch thread (set for the timing only and
restored after it, never in the library). Accuracy: worst errors against mpmath at 50 digits
on a grid of extreme cases plus random laws of the workloads; sampling: probability-integral
transform of each side's draws by the *other* side's cdf, KS test against uniform, and draws
outside [low, high].
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import platform
import time
from pathlib import Path

import mpmath
import numpy as np
import scipy
import scipy.stats as ss
import torch

from mathkit.distributions import TruncatedNormal

mpmath.mp.dps = 50
RESULTS = Path(__file__).with_name("RESULTS.md")

# (loc, scale, low, high): the extreme cases of the test suite
GRID = [
    (0.0, 1.0, 38.0, 40.0),
    (0.0, 1.0, -40.0, -39.0),
    (100.0, 1e-3, 100.0005, 100.0009),
    (0.0, 1.0, -math.inf, -38.0),
    (0.0, 1.0, 35.0, math.inf),
    (0.0, 1.0, -40.0, 40.0),
    (2.0, 3.0, -1.0, 11.0),
    (-3.0, 0.5, 5.0, 5.5),
    (0.0, 1.0, 13.0, 15.0),
    (0.0, 2.0, -80.0, -79.0),
]


def _standard_bounds(n: int, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if kind == "central":
        return rng.uniform(-3.0, 0.0, n), rng.uniform(0.0, 3.0, n)
    if kind == "typical":
        a = rng.uniform(-6.0, 6.0, n)
        b = a + rng.exponential(2.0, n)
        one_sided = rng.uniform(size=n)
        a[one_sided < 0.25] = -np.inf
        b[one_sided > 0.75] = np.inf
        return a, b
    if kind == "far tails":
        a = rng.uniform(-40.0, 38.0, n)
        return a, a + rng.exponential(1.0, n)
    # everything: central, one-sided, near tails, far tails, each mirrored at random
    quarter = n // 4
    parts = [_standard_bounds(quarter, "central", rng)]
    lower = rng.uniform(-3.0, 3.0, quarter)
    parts.append((lower, np.full(quarter, np.inf)))
    near = rng.uniform(3.0, 8.0, quarter)
    parts.append((near, near + rng.exponential(1.0, quarter)))
    far = rng.uniform(8.0, 38.0, n - 3 * quarter)
    parts.append((far, far + rng.exponential(1.0, len(far))))
    a, b = (np.concatenate(v) for v in zip(*parts))
    flip = rng.uniform(size=n) < 0.5
    a, b = np.where(flip, -b, a), np.where(flip, -a, b)
    order = rng.permutation(n)
    return a[order], b[order]


def workload(n: int, kind: str, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    if kind == "one-sided at 0":
        loc, scale = rng.uniform(-5.0, 20.0, n), rng.uniform(1.0, 5.0, n)
        low, high = np.zeros(n), np.full(n, np.inf)
        return dict(loc=loc, scale=scale, a=(low - loc) / scale, b=(high - loc) / scale, low=low, high=high)
    loc, scale = rng.normal(0.0, 5.0, n), rng.uniform(0.2, 3.0, n)
    a, b = _standard_bounds(n, kind, rng)
    return dict(loc=loc, scale=scale, a=a, b=b, low=loc + scale * a, high=loc + scale * b)


MIXES = ("central", "one-sided at 0", "typical", "far tails", "everything")


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def ours(w: dict[str, np.ndarray]) -> TruncatedNormal:
    return TruncatedNormal(*(torch.from_numpy(w[k]) for k in ("loc", "scale", "low", "high")))


def time_both(w: dict[str, np.ndarray], repeats: int) -> list[tuple[str, float, float]]:
    """(operation, mathkit on one torch thread, scipy) best times, the two sides interleaved."""
    a, b, loc, scale = w["a"], w["b"], w["loc"], w["scale"]
    rng = np.random.default_rng(1)
    x = ss.truncnorm.rvs(a, b, loc=loc, scale=scale, random_state=rng)
    xt = torch.from_numpy(x)
    pairs = [
        ("sample / rvs", lambda: ours(w).sample(),
         lambda: ss.truncnorm.rvs(a, b, loc=loc, scale=scale, random_state=rng)),
        ("log_prob / logpdf", lambda: ours(w).log_prob(xt), lambda: ss.truncnorm.logpdf(x, a, b, loc=loc, scale=scale)),
        ("log_cdf / logcdf", lambda: ours(w).log_cdf(xt), lambda: ss.truncnorm.logcdf(x, a, b, loc=loc, scale=scale)),
    ]
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # scipy's conditions, for the timing only; restored below whatever happens
    try:
        return [(name, *best_interleaved(mine, theirs, repeats)) for name, mine, theirs in pairs]
    finally:
        torch.set_num_threads(previous)


def best_interleaved(mine, theirs, repeats: int) -> tuple[float, float]:
    """Best times of the two sides, run alternately so that both meet the same load."""
    best_mine, best_theirs = math.inf, math.inf
    for _ in range(repeats):
        best_mine = min(best_mine, best_time(mine, 1))
        best_theirs = min(best_theirs, best_time(theirs, 1))
    return best_mine, best_theirs


def mp_log_mass(a, b):
    if a > 0:
        a, b = -b, -a
    return mpmath.log(mpmath.ncdf(b) - mpmath.ncdf(a))


def mp_reference(loc, scale, low, high, x):
    """log pdf and log cdf of the truncated normal at x, at 50 digits."""
    loc, scale = mpmath.mpf(loc), mpmath.mpf(scale)
    a, b, z = ((mpmath.mpf(v) - loc) / scale for v in (low, high, x))
    log_mass = mp_log_mass(a, b)
    log_pdf = -z * z / 2 - mpmath.log(mpmath.sqrt(2 * mpmath.pi) * scale) - log_mass
    log_cdf = mp_log_mass(a, z) - log_mass if z > a else -mpmath.inf
    return float(log_pdf), float(log_cdf)


def accuracy_points(workloads: dict[str, dict[str, np.ndarray]], per_workload: int = 150) -> list[tuple]:
    points = []
    for loc, scale, low, high in GRID:
        lo = low if math.isfinite(low) else high - 10 * scale
        hi = high if math.isfinite(high) else low + 10 * scale
        points += [(loc, scale, low, high, x) for x in np.linspace(lo, hi, 9)[1:-1]]
    rng = np.random.default_rng(2)
    for w in workloads.values():
        for i in rng.choice(len(w["loc"]), per_workload, replace=False):
            lo = w["low"][i] if math.isfinite(w["low"][i]) else w["high"][i] - 5 * w["scale"][i]
            hi = w["high"][i] if math.isfinite(w["high"][i]) else lo + 5 * w["scale"][i]
            points.append((w["loc"][i], w["scale"][i], w["low"][i], w["high"][i], lo + rng.uniform() * (hi - lo)))
    return points


def worst_errors(points: list[tuple]) -> dict[str, tuple[float, float]]:
    loc, scale, low, high, x = (np.array(c) for c in zip(*points))
    ref = np.array([mp_reference(*p) for p in points])
    d = TruncatedNormal(*(torch.from_numpy(v) for v in (loc, scale, low, high)))
    xt = torch.from_numpy(x)
    ours_vals = (d.log_prob(xt).numpy(), d.log_cdf(xt).numpy())
    a, b = (low - loc) / scale, (high - loc) / scale
    scipy_vals = (ss.truncnorm.logpdf(x, a, b, loc=loc, scale=scale), ss.truncnorm.logcdf(x, a, b, loc=loc, scale=scale))

    def worst(got, want):
        err = np.abs(got - want)
        err[np.isinf(want) & (got == want)] = 0.0
        return float(np.nanmax(np.where(np.isnan(err), np.inf, err)))

    return {name: (worst(o, ref[:, k]), worst(s, ref[:, k]))
            for k, (name, o, s) in enumerate(zip(("log_prob", "log_cdf"), ours_vals, scipy_vals))}


def sampling_checks(w: dict[str, np.ndarray]) -> dict[str, tuple[float, float, int, int]]:
    """KS p-values of each side's draws, transformed by the other side's cdf; draws outside the bounds."""
    torch.manual_seed(3)
    mine = ours(w).sample().numpy()
    theirs = ss.truncnorm.rvs(w["a"], w["b"], loc=w["loc"], scale=w["scale"], random_state=np.random.default_rng(3))
    u_mine = ss.truncnorm.cdf(mine, w["a"], w["b"], loc=w["loc"], scale=w["scale"])
    u_theirs = ours(w).cdf(torch.from_numpy(theirs)).numpy()
    outside = [int(np.sum((s < w["low"]) | (s > w["high"]))) for s in (mine, theirs)]
    return ss.kstest(u_mine, "uniform").pvalue, ss.kstest(u_theirs, "uniform").pvalue, *outside


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = "GPU present" if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, {gpu}; torch {torch.__version__}, scipy {scipy.__version__}"


def report(n: int, repeats: int) -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    workloads = {kind: workload(n, kind) for kind in MIXES}
    lines = [
        f"### TruncatedNormal vs scipy.stats.truncnorm, n = {n:,} per-element laws, one torch thread",
        "",
        f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; {machine()}; load average {load:.1f} at start "
        "(the machine is shared with other jobs, so absolute times vary; ratios come from the same run, "
        "the two sides interleaved).",
        "",
        "| mix | operation | mathkit, 1 thread (s) | scipy (s) | speed-up |",
        "|---|---|---|---|---|",
    ]
    for kind, w in workloads.items():
        for name, mine, t_scipy in time_both(w, repeats):
            lines.append(f"| {kind} | {name} | {mine:.3f} | {t_scipy:.3f} | {t_scipy / mine:.1f}x |")
    lines += ["", "| worst abs. error vs mpmath (50 digits) | mathkit | scipy |", "|---|---|---|"]
    for name, (e_ours, e_scipy) in worst_errors(accuracy_points(workloads)).items():
        lines.append(f"| {name} | {e_ours:.1e} | {e_scipy:.1e} |")
    lines += ["", "| mix | KS p (mathkit draws, scipy cdf) | KS p (scipy draws, mathkit cdf) | outside bounds (mathkit / scipy) |",
              "|---|---|---|---|"]
    for kind, w in workloads.items():
        p_mine, p_theirs, out_mine, out_theirs = sampling_checks(w)
        lines.append(f"| {kind} | {p_mine:.2f} | {p_theirs:.2f} | {out_mine} / {out_theirs} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--record", action="store_true", help="append the tables to benchmarks/RESULTS.md")
    args = parser.parse_args()
    text = report(args.n, args.repeats)
    print(text)
    if args.record:
        header = "" if RESULTS.exists() else "# Benchmark results\n\nAppended by the scripts in this folder, newest last.\n"
        with RESULTS.open("a") as f:
            f.write(header + "\n" + text)


if __name__ == "__main__":
    main()
