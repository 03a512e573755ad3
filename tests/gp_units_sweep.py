"""Hostile-units sweep for mathkit.gp: the same data in 20 other units, fitted by two methods.

    python tests/gp_units_sweep.py          # prints the table (about a minute)

Each variant maps the data as X -> a X + b and y -> c y + d. A fit that does not care about
units predicts, at the mapped test points, ``c * mean + d`` and ``|c| * sd`` of the unit-scale
fit. The error reported is the largest deviation over the test points, relative to ``|c|`` times
the spread of the unit-scale y (mean) or of the unit-scale sd (sd).
"""

from __future__ import annotations

import warnings

import numpy as np

#: (name, a, b, c, d)
VARIANTS = [
    ("y x 1e3", 1.0, 0.0, 1e3, 0.0),
    ("y x 1e-6", 1.0, 0.0, 1e-6, 0.0),
    ("y + 1e4", 1.0, 0.0, 1.0, 1e4),
    ("y x 1e8", 1.0, 0.0, 1e8, 0.0),
    ("y x 1e-8", 1.0, 0.0, 1e-8, 0.0),
    ("y x 1e3 + 1e4", 1.0, 0.0, 1e3, 1e4),
    ("y x -2", 1.0, 0.0, -2.0, 0.0),
    ("y x 1e-3 + 1.7e3", 1.0, 0.0, 1e-3, 1.7e3),
    ("X x 1e-6", 1e-6, 0.0, 1.0, 0.0),
    ("X x 1e6", 1e6, 0.0, 1.0, 0.0),
    ("X x 1e-8", 1e-8, 0.0, 1.0, 0.0),
    ("X x 1e8", 1e8, 0.0, 1.0, 0.0),
    ("X hourly Unix time", 3600.0, 1.7e9, 1.0, 0.0),
    ("X + 1e4", 1.0, 1e4, 1.0, 0.0),
    ("X x 1e3 + 1e6", 1e3, 1e6, 1.0, 0.0),
    ("X x -1", -1.0, 0.0, 1.0, 0.0),
    ("X x 1e-6, y x 1e6", 1e-6, 0.0, 1e6, 0.0),
    ("Unix time, y x 1e-6 + 5", 3600.0, 1.7e9, 1e-6, 5.0),
    ("X x 1e8, y + 1e4", 1e8, 0.0, 1.0, 1e4),
    ("X x 1e-3 + 2, y x 1e-3", 1e-3, 2.0, 1e-3, 0.0),
]


def data(n: int = 200, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 10, n)
    y = np.sin(2 * X) + 0.3 * np.cos(7 * X) + 0.1 * rng.standard_normal(n)
    return X, y, np.linspace(0.2, 9.8, 97)


def errors(method: str, n: int = 200, seed: int = 0) -> list[tuple[str, float, float]]:
    """(variant, mean error, sd error) for each variant, relative as in the module docstring."""
    from mathkit.gp import GPRegressor

    X, y, Xs = data(n, seed)
    base_mean, base_sd = GPRegressor(method=method).fit(X, y).predict(Xs, return_std=True)
    rows = []
    for name, a, b, c, d in VARIANTS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                gp = GPRegressor(method=method).fit(a * X + b, c * y + d)
                mean, sd = gp.predict(a * Xs + b, return_std=True)
                mean_err = np.max(np.abs((mean - d) / c - base_mean)) / np.std(y)
                sd_err = np.max(np.abs(sd / abs(c) - base_sd)) / np.max(base_sd)
            except Exception as exc:  # noqa: BLE001 - a crash is a result of the sweep
                print(f"{method:9s} {name:26s} raised {type(exc).__name__}: {exc}")
                mean_err = sd_err = float("inf")
        rows.append((name, float(mean_err), float(sd_err)))
    return rows


if __name__ == "__main__":
    print(f"{'method':9s} {'variant':26s} {'mean err':>10s} {'sd err':>10s}")
    for method in ("cholesky", "cg"):
        rows = errors(method)
        for name, m, s in rows:
            print(f"{method:9s} {name:26s} {m:10.2e} {s:10.2e}")
        worst = max(max(m, s) for _, m, s in rows)
        bad = sum(not max(m, s) <= 1e-3 for _, m, s in rows)  # NaN counts as off
        print(f"{method:9s} worst {worst:.2e}; variants off by more than 1e-3: {bad} of {len(rows)}")
