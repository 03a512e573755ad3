"""Coverage of `fit_sir`'s 95% intervals on simulated outbreaks with known truth.

    OMP_NUM_THREADS=1 python -m benchmarks.sir_coverage [--per-setting 7] [--seed 2026] [--write LABEL]
        [--rows PATH]

Every combination of population (300, 3,000, 30,000, 10^6), observation (prevalence,
incidence), count law (Poisson, negative binomial) and initial state (i0 given, i0 fitted) gets
``--per-setting`` outbreaks with R0 log-uniform on [1.3, 8], a mean infectious period
log-uniform on [2, 10] days, i0 a random fraction of the population (at least one person)
and, for negative-binomial counts, a size log-uniform on [5, 50]. Each outbreak is observed
from day 1 until the number infectious has fallen back below a quarter of its peak, daily or,
for slow outbreaks, every few days (at most ~40 reports). The counts are drawn around the
exact SIR curve, so the model is right and only the intervals are on trial: a 95% interval
should cover the truth 95% of the time (the binomial standard error over n outbreaks is
sqrt(0.95 * 0.05 / n), 1.4 points at n = 224).

The table (coverage per factor level and overall, plus the optimiser's convergence and
restarts) is printed, and appended to benchmarks/RESULTS.md with ``--write LABEL``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
import datetime
import itertools
import json
from pathlib import Path
import time
import warnings

import numpy as np
import torch

from benchmarks.truncnorm import machine
from mathkit.epi import fit_sir, simulate_sir

POPULATIONS = (300, 3_000, 30_000, 1_000_000)
OBSERVED = ("prevalence", "incidence")
LIKELIHOODS = ("poisson", "negbin")
I0_MODES = ("given", "fitted")
PARAMETERS = ("beta", "gamma", "r0")
MAX_REPORTS = 40


@dataclass(frozen=True)
class Outbreak:
    """One simulated data set: its setting, its true parameters and its counts."""

    population: float
    observed: str
    likelihood: str
    i0_mode: str
    beta: float
    gamma: float
    i0: float
    size: float | None
    t: np.ndarray
    y: np.ndarray

    @property
    def r0(self) -> float:
        return self.beta / self.gamma


def _observation_times(beta: float, gamma: float, population: float, i0: float) -> np.ndarray:
    """Report days from day 1 until I(t) falls below a quarter of its peak (<= MAX_REPORTS reports)."""
    growth = beta - gamma
    span = int(np.ceil(3 * (np.log(population / i0) + 3) / growth + 10 / gamma))
    days = np.arange(0.0, span + 1)
    infectious = simulate_sir(beta, gamma, population, i0, days).I
    peak = int(infectious.argmax())
    after = np.nonzero(infectious[peak:] < 0.25 * infectious[peak])[0]
    last = peak + (int(after[0]) if after.size else len(days) - 1 - peak)
    spacing = max(1, int(np.ceil(last / MAX_REPORTS)))
    return np.arange(spacing, last + 1, spacing, dtype=float)


def _draw_counts(rng: np.random.Generator, mean: np.ndarray, size: float | None) -> np.ndarray:
    if size is None:
        return rng.poisson(mean)
    return rng.negative_binomial(size, size / (size + mean))


def draw_outbreak(rng: np.random.Generator, population: float, observed: str, likelihood: str,
                  i0_mode: str) -> Outbreak:
    """Draw the truth of one outbreak in a setting, then its counts around the exact curve."""
    r0 = float(np.exp(rng.uniform(np.log(1.3), np.log(8.0))))
    gamma = float(1.0 / np.exp(rng.uniform(np.log(2.0), np.log(10.0))))
    i0 = float(max(1.0, np.round(population * 10 ** rng.uniform(-4.0, -2.0))))
    size = float(np.exp(rng.uniform(np.log(5.0), np.log(50.0)))) if likelihood == "negbin" else None
    beta = r0 * gamma
    t = _observation_times(beta, gamma, population, i0)
    s, i, _ = simulate_sir(beta, gamma, population, i0, np.concatenate([[0.0], t]), rtol=1e-10)
    mean = i[1:] if observed == "prevalence" else -np.diff(s)
    y = _draw_counts(rng, mean, size)
    # noisy counts can add up to more people than there are; such data are redrawn
    while (y.max() if observed == "prevalence" else y.sum()) > population:
        y = _draw_counts(rng, mean, size)
    return Outbreak(float(population), observed, likelihood, i0_mode, beta, gamma, i0, size, t, y)


def fit_outbreak(outbreak: Outbreak, level: float = 0.95) -> dict:
    """Fit one outbreak; whether each interval covers the truth, and how the optimiser did."""
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = fit_sir(
            outbreak.t, outbreak.y, outbreak.population, outbreak.observed, outbreak.likelihood,
            outbreak.i0 if outbreak.i0_mode == "given" else None, level=level,
        )
    record = {
        "seconds": time.perf_counter() - start,
        "converged": bool(getattr(fit, "converged", True)),
        "n_starts": int(getattr(fit, "n_starts", 1)),
        "best_start": int(getattr(fit, "best_start", 0)),
        "n_iterations": int(getattr(fit, "n_iterations", 0)),
        "warned": bool(caught),
    }
    for name in PARAMETERS:
        low, high = fit.ci[name]
        truth = getattr(outbreak, name)
        record[name] = bool(low <= truth <= high)
        record[f"{name}_missing"] = bool(np.isnan(low) or np.isnan(high))
        record[f"{name}_side"] = "low" if truth < low else "high" if truth > high else ""
    return record


def coverage_study(per_setting: int, seed: int, progress: bool = False) -> list[tuple[Outbreak, dict]]:
    """``per_setting`` outbreaks in each of the 32 settings, drawn from one seeded generator."""
    rng = np.random.default_rng(seed)
    results = []
    settings = list(itertools.product(POPULATIONS, OBSERVED, LIKELIHOODS, I0_MODES))
    for k, setting in enumerate(settings):
        for _ in range(per_setting):
            outbreak = draw_outbreak(rng, *setting)
            results.append((outbreak, fit_outbreak(outbreak)))
        if progress:
            print(f"  setting {k + 1}/{len(settings)} done", flush=True)
    return results


def _row(label: str, rows: list[tuple[Outbreak, dict]]) -> str:
    records = [r for _, r in rows]
    n = len(records)
    cells = [label, str(n)]
    for name in PARAMETERS:
        covered = sum(r[name] for r in records)
        cells.append(f"{100 * covered / n:.1f}")
    missing = sum(any(r[f"{p}_missing"] for p in PARAMETERS) for r in records)
    cells.append(str(missing))
    cells.append(f"{100 * sum(r['converged'] for r in records) / n:.1f}")
    cells.append(str(sum(r["best_start"] > 0 for r in records)))
    return "| " + " | ".join(cells) + " |"


def coverage_table(results: list[tuple[Outbreak, dict]]) -> str:
    """Markdown table: coverage (%) per factor level and overall."""
    lines = [
        "| setting | outbreaks | beta | gamma | R0 | no interval | converged (%) | from another start |",
        "|---|---|---|---|---|---|---|---|",
    ]
    factors = [
        ("population", POPULATIONS, lambda o: o.population, lambda v: f"N = {v:,}"),
        ("observed", OBSERVED, lambda o: o.observed, str),
        ("likelihood", LIKELIHOODS, lambda o: o.likelihood, str),
        ("i0", I0_MODES, lambda o: o.i0_mode, lambda v: f"i0 {v}"),
        ("R0", ("1.3-2", "2-4", "4-8"), lambda o: "1.3-2" if o.r0 < 2 else "2-4" if o.r0 < 4 else "4-8",
         lambda v: f"R0 {v}"),
    ]
    for _, levels, key, label in factors:
        for level in levels:
            rows = [(o, r) for o, r in results if key(o) == level]
            if rows:
                lines.append(_row(label(level), rows))
    lines.append(_row("**all**", results))
    return "\n".join(lines)


def _side_summary(results: list[tuple[Outbreak, dict]]) -> str:
    """Where the misses fall: truth below the interval, above it, or no interval at all."""
    parts = []
    for name in PARAMETERS:
        low = sum(r[f"{name}_side"] == "low" for _, r in results)
        high = sum(r[f"{name}_side"] == "high" for _, r in results)
        missing = sum(r[f"{name}_missing"] for _, r in results)
        parts.append(f"{name}: truth below the interval {low}, above {high}, no interval {missing}")
    return "misses: " + "; ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-setting", type=int, default=7, help="outbreaks per setting (32 settings)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--write", metavar="LABEL", help="append the table to RESULTS.md under LABEL")
    parser.add_argument("--rows", metavar="PATH", help="write one JSON line per outbreak (its index, "
                        "setting, truth, intervals' coverage and fit time) to PATH")
    args = parser.parse_args()
    start = time.perf_counter()
    results = coverage_study(args.per_setting, args.seed, progress=True)
    elapsed = time.perf_counter() - start
    if args.rows:
        with open(args.rows, "w") as rows_file:
            for k, (outbreak, record) in enumerate(results):
                row = {"index": k, "population": outbreak.population, "observed": outbreak.observed,
                       "likelihood": outbreak.likelihood, "i0": outbreak.i0_mode, "reports": len(outbreak.t),
                       "beta_true": outbreak.beta, "gamma_true": outbreak.gamma, **record}
                rows_file.write(json.dumps(row) + "\n")
    records = [r for _, r in results]
    table = coverage_table(results)
    sides = _side_summary(results)
    starts = np.array([r["n_starts"] for r in records])
    other = sum(r["best_start"] > 0 for r in records)
    iterations = np.array([r["n_iterations"] for r in records])
    summary = (
        f"{len(results)} outbreaks, seed {args.seed}, {elapsed:.0f} s in all "
        f"({np.median([r['seconds'] for r in records]):.2f} s median per fit); "
        f"converged {sum(r['converged'] for r in records)}/{len(records)}, "
        f"starts per fit {starts.min()}-{starts.max()} (more than 3 when a run stopped early: "
        f"{int((starts > 3).sum())}), the estimate from a start other than the grid's best {other}, "
        f"iterations median {np.median(iterations):.0f} "
        f"(max {iterations.max()}); {sum(r['warned'] for r in records)} fits warned"
    )
    print(table, "", summary, sides, sep="\n")
    if args.write:
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        text = (
            f"\n#### {args.write}\n\n{stamp}; {machine()}, torch threads {torch.get_num_threads()}; "
            f"`OMP_NUM_THREADS=1 python -m benchmarks.sir_coverage --per-setting {args.per_setting} "
            f"--seed {args.seed}`.\n\n{table}\n\n{summary}.\n{sides}.\n"
        )
        with open(Path(__file__).with_name("RESULTS.md"), "a") as results_file:
            results_file.write(text)


if __name__ == "__main__":
    main()
