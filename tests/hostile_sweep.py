"""Hostile-input sweep: realistic bad data across mathkit's public API, each with its right outcome.

Run ``python tests/hostile_sweep.py`` for a table and counts per module (``--failures`` prints
only the cases that are not right, ``--modules losses nn`` restricts the sweep). Each case
declares what a right outcome is:

- an error: a ``ValueError``/``TypeError`` whose message names one of the case's arguments;
- a value: the result matches an independent oracle (scipy, mpmath, scikit-learn, a closed
  form, an invariance of the math);
- or either, where both are defensible (a case with both ``names`` and an ``oracle``).

Each outcome is classified as ``ok`` (the oracle agrees), ``clear-error-ok`` (an error naming
the argument), ``silent-wrong`` (a NaN, an inf or a wrong number where an answer or an error
was due) or ``unclear-error`` (an error from deep inside torch/numpy, of the wrong type, not
naming the argument, or a case running past its time limit). ``tests/test_hostile_sweep.py``
runs the cases as pytest tests.
"""

from __future__ import annotations

import argparse
import math
import re
import signal
import sys
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

OK, CLEAR, SILENT, UNCLEAR = "ok", "clear-error-ok", "silent-wrong", "unclear-error"
OUTCOMES = (OK, CLEAR, SILENT, UNCLEAR)
MODULES = ("numerics", "distributions", "losses", "gp", "epi", "data", "nn")
TIME_LIMIT_S = 30
NAN, INF = math.nan, math.inf
F64 = torch.float64


@dataclass(frozen=True)
class Case:
    """One hostile input: ``call()`` and what a right outcome is.

    ``names``: a ValueError/TypeError (or one of ``errors``) naming one of these is right.
    ``oracle``: a returned value is right if ``oracle(value)`` is true. With neither an
    oracle nor names nothing is right; with only names, returning at all is silent-wrong.
    """

    module: str
    id: str
    call: Callable[[], Any]
    names: tuple[str, ...] = ()
    oracle: Callable[[Any], bool] | None = None
    errors: tuple[type[BaseException], ...] = (ValueError, TypeError)

    @property
    def key(self) -> str:
        return f"{self.module}: {self.id}"


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout()


def classify(case: Case) -> tuple[str, str]:
    """Run ``case`` and return its outcome and a one-line detail."""
    previous = signal.signal(signal.SIGALRM, _alarm) if hasattr(signal, "SIGALRM") else None
    if previous is not None:
        signal.alarm(TIME_LIMIT_S)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = case.call()
    except _Timeout:
        return UNCLEAR, f"ran past {TIME_LIMIT_S} s"
    except Exception as error:  # noqa: BLE001 -- classifying every failure is the point
        message = " ".join(str(error).split())
        detail = f"{type(error).__name__}: {message[:150]}"
        named = any(re.search(rf"(?<!\w){re.escape(name)}(?!\w)", message) for name in case.names)
        return (CLEAR if isinstance(error, case.errors) and named else UNCLEAR), detail
    finally:
        if previous is not None:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
    if case.oracle is None:
        return SILENT, f"returned {_short(value)} where an error naming {'/'.join(case.names)} was due"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            right = bool(case.oracle(value))
    except Exception as error:  # noqa: BLE001 -- a value the oracle cannot even read is wrong
        return SILENT, f"returned {_short(value)}; oracle failed: {type(error).__name__}: {error}"[:200]
    return (OK, _short(value)) if right else (SILENT, f"returned {_short(value)}, oracle disagrees")


def _short(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        flat = value.ravel()
        body = np.array2string(flat[:4], precision=4, separator=",")
        return f"array{value.shape} {body}{'...' if flat.size > 4 else ''} dtype={value.dtype}"
    return " ".join(repr(value).split())[:100]


# ----------------------------------------------------------------------------- oracle helpers

def _np(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        return value.numpy() if value.dtype != torch.bfloat16 else value.float().numpy()
    return np.asarray(value)


def close(expected, rtol: float = 1e-10, atol: float = 0.0, float_only: bool = True) -> Callable[[Any], bool]:
    """The value has ``expected``'s shape and agrees with it (NaN where it is NaN, infs equal)."""
    expected = np.asarray(expected, dtype=float)

    def check(value):
        got = _np(value)
        if float_only and got.dtype.kind != "f":
            return False
        return got.shape == expected.shape and bool(np.allclose(got, expected, rtol=rtol, atol=atol, equal_nan=True))

    return check


def is_nan(value) -> bool:
    return bool(np.all(np.isnan(_np(value).astype(float))))


def finite(value) -> bool:
    got = _np(value)
    return got.dtype.kind == "f" and bool(np.all(np.isfinite(got)))


def t64(*values) -> torch.Tensor:
    return torch.tensor(values if len(values) != 1 else values[0], dtype=F64)


# ----------------------------------------------------------------------------- numerics

def numerics_cases() -> list[Case]:
    import mpmath
    from scipy import special

    from mathkit import numerics as nx

    def mp_log_ndtr(x):
        return float(mpmath.log(mpmath.ncdf(x)))

    def mp_log_mass(a, b):
        return float(mpmath.log(mpmath.ncdf(b) - mpmath.ncdf(a)))

    mpmath.mp.dps = 50
    m = "numerics"
    cases = [
        Case(m, "log_ndtr far left tail x=-40", lambda: nx.log_ndtr(t64(-40.0)), oracle=close(mp_log_ndtr(-40), 1e-12)),
        Case(m, "log_ndtr x=-1e4", lambda: nx.log_ndtr(t64(-1e4)), oracle=close(special.log_ndtr(-1e4), 1e-12)),
        Case(m, "log_ndtr x=+40 (tiny negative)", lambda: nx.log_ndtr(t64(40.0)),
             oracle=close(special.log_ndtr(40.0), 1e-10)),
        Case(m, "log_ndtr NaN propagates", lambda: nx.log_ndtr(t64(NAN)), oracle=is_nan, names=("x",)),
        Case(m, "log_ndtr +inf -> 0", lambda: nx.log_ndtr(t64(INF)), oracle=close(0.0)),
        Case(m, "log_ndtr -inf -> -inf", lambda: nx.log_ndtr(t64(-INF)), oracle=close(-INF)),
        Case(m, "log_ndtr integer tensor promoted", lambda: nx.log_ndtr(torch.tensor([-3, 0, 3])),
             oracle=close(special.log_ndtr([-3.0, 0.0, 3.0]), 1e-12)),
        Case(m, "log_ndtr empty tensor", lambda: nx.log_ndtr(torch.zeros(0, dtype=F64)), oracle=close(np.zeros(0))),
        Case(m, "log_ndtr float32 x=-30", lambda: nx.log_ndtr(torch.tensor(-30.0)),
             oracle=close(special.log_ndtr(-30.0), 1e-5)),
        Case(m, "log_ndtr gradient at x=-1e3 is finite (~1e3)",
             lambda: _grad(nx.log_ndtr, -1e3),
             oracle=close(1e3, 1e-5)),
        Case(m, "log_ndtr string input", lambda: nx.log_ndtr("1.0"), names=("x",)),
        Case(m, "log1mexp x=-1e-20", lambda: nx.log1mexp(t64(-1e-20)), oracle=close(math.log(1e-20), 1e-12)),
        Case(m, "log1mexp x=-50", lambda: nx.log1mexp(t64(-50.0)), oracle=close(-math.exp(-50.0), 1e-12)),
        Case(m, "log1mexp x=0 -> -inf", lambda: nx.log1mexp(t64(0.0)), oracle=close(-INF)),
        Case(m, "log1mexp x=-inf -> 0", lambda: nx.log1mexp(t64(-INF)), oracle=close(0.0)),
        Case(m, "log1mexp x>0 outside domain", lambda: nx.log1mexp(t64(0.5)), names=("x",), oracle=is_nan),
        Case(m, "log1mexp NaN propagates", lambda: nx.log1mexp(t64(NAN)), oracle=is_nan, names=("x",)),
        Case(m, "log1mexp integer tensor", lambda: nx.log1mexp(torch.tensor([-1, -2])),
             oracle=close(np.log1p(-np.exp([-1.0, -2.0])), 1e-12)),
        Case(m, "log_diff_exp a == b -> -inf", lambda: nx.log_diff_exp(t64(3.0), t64(3.0)), oracle=close(-INF)),
        Case(m, "log_diff_exp a < b outside domain", lambda: nx.log_diff_exp(t64(1.0), t64(2.0)), names=("a", "b"),
             oracle=is_nan),
        Case(m, "log_diff_exp huge a=1000, b=999", lambda: nx.log_diff_exp(t64(1000.0), t64(999.0)),
             oracle=close(1000.0 + math.log1p(-math.exp(-1.0)), 1e-14)),
        Case(m, "log_diff_exp tiny gap b=a-1e-15", lambda: nx.log_diff_exp(t64(0.0), t64(-1e-15)),
             oracle=close(math.log(-math.expm1(-1e-15)), 1e-12)),
        Case(m, "log_diff_exp both -inf", lambda: nx.log_diff_exp(t64(-INF), t64(-INF)), oracle=close(-INF)),
        Case(m, "log_diff_exp NaN", lambda: nx.log_diff_exp(t64(NAN), t64(0.0)), oracle=is_nan, names=("a",)),
        Case(m, "log_diff_exp mismatched shapes", lambda: nx.log_diff_exp(t64([1.0, 2.0]), t64([0.0, 0.0, 0.0])),
             names=("a", "b")),
        Case(m, "ndtri_exp y=-1e-20", lambda: nx.ndtri_exp(t64(-1e-20)),
             oracle=close(special.ndtri_exp(-1e-20), 1e-10)),
        Case(m, "ndtri_exp y=-1e4", lambda: nx.ndtri_exp(t64(-1e4)), oracle=close(special.ndtri_exp(-1e4), 1e-10)),
        Case(m, "ndtri_exp y=0 -> inf", lambda: nx.ndtri_exp(t64(0.0)), oracle=close(INF)),
        Case(m, "ndtri_exp y=-inf -> -inf", lambda: nx.ndtri_exp(t64(-INF)), oracle=close(-INF)),
        Case(m, "ndtri_exp y>0 outside domain", lambda: nx.ndtri_exp(t64(0.1)), names=("y",), oracle=is_nan),
        Case(m, "ndtri_exp NaN", lambda: nx.ndtri_exp(t64(NAN)), oracle=is_nan, names=("y",)),
        Case(m, "ndtri_exp integer tensor", lambda: nx.ndtri_exp(torch.tensor([-1, -5])),
             oracle=close(special.ndtri_exp([-1.0, -5.0]), 1e-10)),
        Case(m, "log_normal_mass far right [38, 40]", lambda: nx.log_normal_mass(t64(38.0), t64(40.0)),
             oracle=close(mp_log_mass(-40, -38), 1e-11)),  # by symmetry: mpmath cannot resolve 1 - 1e-316
        Case(m, "log_normal_mass far left [-40, -38]", lambda: nx.log_normal_mass(t64(-40.0), t64(-38.0)),
             oracle=close(mp_log_mass(-40, -38), 1e-11)),
        Case(m, "log_normal_mass whole line", lambda: nx.log_normal_mass(t64(-INF), t64(INF)),
             oracle=close(0.0, atol=1e-15)),
        Case(m, "log_normal_mass empty interval a == b", lambda: nx.log_normal_mass(t64(1.0), t64(1.0)),
             oracle=close(-INF)),
        Case(m, "log_normal_mass reversed a > b", lambda: nx.log_normal_mass(t64(2.0), t64(1.0)), names=("a", "b"),
             oracle=lambda v: close(-INF)(v) or is_nan(v)),
        Case(m, "log_normal_mass width 1e-12", lambda: nx.log_normal_mass(t64(1.0), t64(1.0 + 1e-12)),
             oracle=close(mp_log_mass(1, mpmath.mpf(1) + mpmath.mpf("1e-12")), 1e-3)),
        Case(m, "log_normal_mass NaN bound", lambda: nx.log_normal_mass(t64(NAN), t64(1.0)), oracle=is_nan,
             names=("a",)),
        Case(m, "log_normal_mass integer tensors", lambda: nx.log_normal_mass(torch.tensor([-1]), torch.tensor([2])),
             oracle=close([mp_log_mass(-1, 2)], 1e-12)),
        Case(m, "log_normal_mass mismatched shapes", lambda: nx.log_normal_mass(t64([0.0, 1.0]), t64([2.0, 3.0, 4.0])),
             names=("a", "b")),
        Case(m, "log_normal_pdf x=1e200 -> -inf", lambda: nx.log_normal_pdf(t64(1e200)), oracle=close(-INF)),
        Case(m, "log_normal_pdf integer tensor", lambda: nx.log_normal_pdf(torch.tensor([0, 2])),
             oracle=close(-0.5 * np.array([0.0, 4.0]) - 0.5 * math.log(2 * math.pi), 1e-12)),
    ]
    return cases


def _grad(fn, x: float) -> torch.Tensor:
    xt = t64(x).requires_grad_()
    (g,) = torch.autograd.grad(fn(xt), xt)
    return g


# ----------------------------------------------------------------------------- distributions

def distribution_cases() -> list[Case]:
    from scipy import integrate, stats
    from torch.distributions import biject_to, transform_to

    from mathkit.distributions import CensoredNormal, GeneralizedBeta, TruncatedNormal

    m = "distributions"
    tn = stats.truncnorm
    cases: list[Case] = []

    def law(name, validate=None):
        if name == "TruncatedNormal":
            return TruncatedNormal(t64(0.5), t64(2.0), t64(-1.0), t64(3.0), validate_args=validate)
        if name == "CensoredNormal":
            return CensoredNormal(t64(0.5), t64(2.0), t64(-1.0), t64(3.0), validate_args=validate)
        return GeneralizedBeta(t64(2.0), t64(3.0), t64(-1.0), t64(3.0), validate_args=validate)

    def ctor(name):
        return {"TruncatedNormal": TruncatedNormal, "CensoredNormal": CensoredNormal,
                "GeneralizedBeta": GeneralizedBeta}[name]

    def integer_law(name):
        """The law of ``name`` with integer-tensor parameters (0, 2) or (2, 3), bounds (-1, 3)."""
        params = (0, 2) if name != "GeneralizedBeta" else (2, 3)
        return ctor(name)(*(torch.tensor(p) for p in (*params, -1, 3)))

    first = {"TruncatedNormal": "loc", "CensoredNormal": "loc", "GeneralizedBeta": "concentration1"}
    second = {"TruncatedNormal": "scale", "CensoredNormal": "scale", "GeneralizedBeta": "concentration0"}
    # the cdf's value and the log-density's value at x, from scipy, for the three laws above
    ref_cdf = {
        "TruncatedNormal": lambda x: tn.cdf(x, -0.75, 1.25, loc=0.5, scale=2.0),
        "CensoredNormal": lambda x: np.where(x >= 3.0, 1.0, np.where(x < -1.0, 0.0, stats.norm.cdf(x, 0.5, 2.0))),
        "GeneralizedBeta": lambda x: stats.beta.cdf(x, 2.0, 3.0, loc=-1.0, scale=4.0),
    }
    ref_mean = {
        "TruncatedNormal": tn.mean(-0.75, 1.25, loc=0.5, scale=2.0),
        "CensoredNormal": integrate.quad(lambda x: x * stats.norm.pdf(x, 0.5, 2.0), -1, 3)[0]
        - 1.0 * stats.norm.cdf(-1, 0.5, 2.0) + 3.0 * stats.norm.sf(3, 0.5, 2.0),
        "GeneralizedBeta": stats.beta.mean(2.0, 3.0, loc=-1.0, scale=4.0),
    }
    ref_integer_mean = {
        "TruncatedNormal": tn.mean(-0.5, 1.5, loc=0.0, scale=2.0),
        "CensoredNormal": integrate.quad(lambda x: x * stats.norm.pdf(x, 0.0, 2.0), -1, 3)[0]
        - stats.norm.cdf(-1, 0.0, 2.0) + 3.0 * stats.norm.sf(3, 0.0, 2.0),
        "GeneralizedBeta": ref_mean["GeneralizedBeta"],
    }
    for name in ("TruncatedNormal", "CensoredNormal", "GeneralizedBeta"):
        C, p1, p2 = ctor(name), first[name], second[name]
        good = (t64(0.5), t64(2.0)) if name != "GeneralizedBeta" else (t64(2.0), t64(3.0))
        cases += [
            Case(m, f"{name}: NaN {p1}", lambda C=C, g=good: C(t64(NAN), g[1], t64(-1.0), t64(3.0)), names=(p1,)),
            Case(m, f"{name}: inf {p1}", lambda C=C, g=good: C(t64(INF), g[1], t64(-1.0), t64(3.0)), names=(p1,)),
            Case(m, f"{name}: zero {p2}", lambda C=C, g=good: C(g[0], t64(0.0), t64(-1.0), t64(3.0)), names=(p2,)),
            Case(m, f"{name}: negative {p2}", lambda C=C, g=good: C(g[0], t64(-1.0), t64(-1.0), t64(3.0)), names=(p2,)),
            Case(m, f"{name}: infinite {p2}", lambda C=C, g=good: C(g[0], t64(INF), t64(-1.0), t64(3.0)), names=(p2,)),
            Case(m, f"{name}: low > high", lambda C=C, g=good: C(g[0], g[1], t64(3.0), t64(-1.0)),
                 names=("low", "high")),
            Case(m, f"{name}: NaN low", lambda C=C, g=good: C(g[0], g[1], t64(NAN), t64(3.0)), names=("low",)),
            Case(m, f"{name}: integer-tensor parameters give float moments", lambda n=name: integer_law(n).mean,
                 oracle=close(ref_integer_mean[name], 1e-5)),
            Case(m, f"{name}: integer-tensor cdf is not rounded",
                 lambda n=name: integer_law(n).cdf(torch.tensor(1.0)), oracle=lambda v: 0.05 < float(v) < 0.95),
            Case(m, f"{name}: mean matches scipy", lambda n=name: law(n).mean, oracle=close(ref_mean[name], 1e-8)),
            Case(m, f"{name}: cdf inside matches scipy", lambda n=name: law(n).cdf(t64([0.0, 1.0, 2.5])),
                 oracle=close(ref_cdf[name](np.array([0.0, 1.0, 2.5])), 1e-9)),
        ]
        for validate in (False, True):
            tag = "validation on" if validate else "validation off"
            value_ok = ("value",) if validate else ()
            cases += [
                Case(m, f"{name}: log_prob below the support ({tag}) -> -inf",
                     lambda n=name, v=validate: law(n, v).log_prob(t64(-2.0)), oracle=close(-INF), names=value_ok),
                Case(m, f"{name}: log_prob above the support ({tag}) -> -inf",
                     lambda n=name, v=validate: law(n, v).log_prob(t64(5.0)), oracle=close(-INF), names=value_ok),
                Case(m, f"{name}: cdf below / above the support ({tag}) -> 0 / 1",
                     lambda n=name, v=validate: law(n, v).cdf(t64([-2.0, 5.0])), oracle=close([0.0, 1.0]),
                     names=value_ok),
                Case(m, f"{name}: log_cdf / log_sf outside the support ({tag})",
                     lambda n=name, v=validate: torch.stack([law(n, v).log_cdf(t64(-2.0)), law(n, v).log_sf(t64(5.0))]),
                     oracle=close([-INF, -INF]), names=value_ok),
            ]
        cases += [
            Case(m, f"{name}: log_prob(NaN) is NaN, not a number", lambda n=name: law(n, False).log_prob(t64(NAN)),
                 oracle=is_nan, names=("value",)),
            Case(m, f"{name}: log_cdf(NaN) is NaN, not a number", lambda n=name: law(n, False).log_cdf(t64(NAN)),
                 oracle=is_nan, names=("value",)),
            Case(m, f"{name}: cdf(NaN) is NaN", lambda n=name: law(n, False).cdf(t64(NAN)), oracle=is_nan,
                 names=("value",)),
            Case(m, f"{name}: samples inside the support", lambda n=name: _seeded(lambda: law(n).sample((2000,))),
                 oracle=lambda s: bool(((s >= -1.0) & (s <= 3.0)).all())),
            Case(m, f"{name}: float32 parameters keep float32",
                 lambda n=name: _as32(law(n)).log_prob(torch.tensor(1.0)),
                 oracle=lambda v: v.dtype == torch.float32 and bool(torch.isfinite(v))),
            Case(m, f"{name}: transform_to(support) gives finite points inside",
                 lambda n=name: transform_to(law(n).support)(t64([-30.0, 0.0, 30.0])),
                 oracle=lambda v: finite(v) and bool(((v >= -1.0) & (v <= 3.0)).all())),
        ]

    far = lambda: TruncatedNormal(t64(0.0), t64(1.0), t64(38.0), t64(40.0))  # noqa: E731
    def half(validate=None):
        return TruncatedNormal(t64(0.0), t64(1.0), t64(0.0), t64(INF), validate_args=validate)

    cases += [
        Case(m, "TruncatedNormal far tail [38, 40]: log_prob", lambda: far().log_prob(t64(39.0)),
             oracle=close(tn.logpdf(39.0, 38.0, 40.0), 1e-10)),
        Case(m, "TruncatedNormal far tail [38, 40]: mean", lambda: far().mean,
             oracle=close(tn.mean(38.0, 40.0), 1e-10)),
        Case(m, "TruncatedNormal far tail [38, 40]: variance", lambda: far().variance,
             oracle=close(_mp_truncnorm_var(38, 40), 1e-8)),
        Case(m, "TruncatedNormal narrow [1, 1+1e-9]: mean in the interval",
             lambda: TruncatedNormal(t64(0.0), t64(1.0), t64(1.0), t64(1.0 + 1e-9)).mean,
             oracle=lambda v: 1.0 <= float(v) <= 1.0 + 1e-9),
        Case(m, "TruncatedNormal icdf(0), icdf(1) are the bounds",
             lambda: TruncatedNormal(t64(0.0), t64(1.0), t64(-1.0), t64(2.0)).icdf(t64([0.0, 1.0])),
             oracle=close([-1.0, 2.0], 1e-12)),
        Case(m, "TruncatedNormal icdf(1.5) outside [0, 1]",
             lambda: TruncatedNormal(t64(0.0), t64(1.0), t64(-1.0), t64(2.0)).icdf(t64(1.5)),
             names=("value",), oracle=is_nan),
        Case(m, "TruncatedNormal icdf gradient wrt loc matches finite differences (bounds around loc)",
             lambda: _icdf_grad_vs_fd(TruncatedNormal, -1.0, 0.5, -2.0, 0.0, 0.3), oracle=lambda r: r < 1e-5),
        Case(m, "TruncatedNormal icdf gradient on [-1e-3, 1e-3] around loc 0",
             lambda: _icdf_grad_vs_fd(TruncatedNormal, 0.0, 1.0, -1e-3, 1e-3, 0.3), oracle=lambda r: r < 1e-5),
        Case(m, "TruncatedNormal same seed, same draws after log_prob (far tail, grad)",
             lambda: _same_draws_after_log_prob(TruncatedNormal), oracle=bool),
        Case(m, "TruncatedNormal scale 1e10 samples in [0, 1]",
             lambda: _seeded(lambda: TruncatedNormal(t64(0.0), t64(1e10), t64(0.0), t64(1.0)).sample((1000,))),
             oracle=lambda s: bool(((s >= 0) & (s <= 1)).all()) and abs(float(s.mean()) - 0.5) < 0.05),
        Case(m, "TruncatedNormal loc offset 1e8: log_prob invariant",
             lambda: TruncatedNormal(t64(1e8), t64(2.0), t64(1e8 - 1.0), t64(1e8 + 3.0)).log_prob(t64(1e8 + 1.0)),
             oracle=close(tn.logpdf(1.0, -0.5, 1.5, loc=0.0, scale=2.0), 1e-7)),
        Case(m, "TruncatedNormal half-line: biject_to(support) finite",
             lambda: biject_to(half().support)(t64([-50.0, 0.0, 50.0])),
             oracle=lambda v: finite(v) and bool((v >= 0).all())),
        Case(m, "TruncatedNormal half-line: log_prob(-1) validation off",
             lambda: half(False).log_prob(t64(-1.0)), oracle=close(-INF)),
        Case(m, "TruncatedNormal entropy matches scipy",
             lambda: TruncatedNormal(t64(1.0), t64(2.0), t64(-1.0), t64(4.0)).entropy(),
             oracle=close(tn.entropy(-1.0, 1.5, loc=1.0, scale=2.0), 1e-9)),
        Case(m, "TruncatedNormal batch of mismatched shapes",
             lambda: TruncatedNormal(t64([0.0, 1.0]), t64([1.0, 1.0, 1.0]), -1.0, 2.0),
             names=("loc", "scale", "shape")),
        Case(m, "CensoredNormal log_prob at the bounds is the point mass",
             lambda: CensoredNormal(t64(0.5), t64(2.0), t64(-1.0), t64(3.0)).log_prob(t64([-1.0, 3.0])),
             oracle=close([stats.norm.logcdf(-1.0, 0.5, 2.0), stats.norm.logsf(3.0, 0.5, 2.0)], 1e-12)),
        Case(m, "CensoredNormal variance when the bound holds nearly all mass",
             lambda: CensoredNormal(t64(-10.0), t64(1.0), t64(0.0), t64(INF)).variance,
             oracle=lambda v: float(v) > 0 and close(_censored_var(-10.0, 1.0, 0.0), 1e-3)(v)),
        Case(m, "CensoredNormal stddev gradient is finite",
             lambda: _stddev_grad(CensoredNormal, -10.0, 1.0, 0.0, INF), oracle=finite),
        Case(m, "GeneralizedBeta infinite high", lambda: GeneralizedBeta(t64(2.0), t64(3.0), t64(0.0), t64(INF)),
             names=("high",)),
        Case(m, "GeneralizedBeta variance matches scipy", lambda: law("GeneralizedBeta").variance,
             oracle=close(stats.beta.var(2.0, 3.0, loc=-1.0, scale=4.0), 1e-10)),
        Case(m, "GeneralizedBeta log_cdf far in the left tail",
             lambda: GeneralizedBeta(t64(5.0), t64(2.0)).log_cdf(t64(1e-6)),
             oracle=close(stats.beta.logcdf(1e-6, 5.0, 2.0), 1e-8)),
        Case(m, "GeneralizedBeta cdf on a batch of 2,000 points matches scipy",
             lambda: GeneralizedBeta(t64(0.7), t64(30.0)).cdf(torch.linspace(0.001, 0.999, 2000, dtype=F64)),
             oracle=close(stats.beta.cdf(np.linspace(0.001, 0.999, 2000), 0.7, 30.0), 1e-8, 1e-13)),
    ]
    return cases


def _seeded(fn, seed: int = 0):
    torch.manual_seed(seed)
    return fn()


def _as32(law):
    params = {k: getattr(law, k).float() for k in type(law).arg_constraints if hasattr(law, k)}
    return type(law)(**params)


def _mp_truncnorm_var(a: float, b: float) -> float:
    import mpmath

    mpmath.mp.dps = 60
    a, b = -b, -a  # the same variance, on the side where ncdf resolves the mass
    z = mpmath.ncdf(b) - mpmath.ncdf(a)
    pa, pb = mpmath.npdf(a), mpmath.npdf(b)
    mean = (pa - pb) / z
    return float(1 + (a * pa - b * pb) / z - mean**2)


def _censored_var(loc: float, scale: float, low: float) -> float:
    import mpmath

    mpmath.mp.dps = 60
    pdf = lambda x: mpmath.npdf(x, loc, scale)  # noqa: E731
    mass_low = mpmath.ncdf((low - loc) / scale)
    m1 = low * mass_low + mpmath.quad(lambda x: x * pdf(x), [low, mpmath.inf])
    m2 = low**2 * mass_low + mpmath.quad(lambda x: x * x * pdf(x), [low, mpmath.inf])
    return float(m2 - m1**2)


def _icdf_grad_vs_fd(C, loc, scale, low, high, q, h=1e-6) -> float:
    params = [t64(v).requires_grad_() for v in (loc, scale, low, high)]
    value = C(*params).icdf(t64(q))
    grads = torch.autograd.grad(value, params)
    worst = 0.0
    for i in range(4):
        up = [float(p) + (h if j == i else 0.0) for j, p in enumerate(params)]
        down = [float(p) - (h if j == i else 0.0) for j, p in enumerate(params)]
        fd = (float(C(*map(t64, up)).icdf(t64(q))) - float(C(*map(t64, down)).icdf(t64(q)))) / (2 * h)
        worst = max(worst, abs(float(grads[i]) - fd))
    return worst


def _same_draws_after_log_prob(C) -> bool:
    def draws(evaluate_first: bool):
        loc = t64(0.0).requires_grad_()
        law = C(loc, t64(1.0), t64(9.0), t64(12.0))
        torch.manual_seed(3)
        if evaluate_first:
            law.log_prob(t64(10.0))
        return law.sample((50,))

    return bool(torch.equal(draws(False), draws(True)))


def _stddev_grad(C, loc, scale, low, high):
    loc_t, scale_t = t64(loc).requires_grad_(), t64(scale).requires_grad_()
    return torch.stack(torch.autograd.grad(C(loc_t, scale_t, t64(low), t64(high)).stddev, [loc_t, scale_t]))


# ----------------------------------------------------------------------------- losses

def loss_cases() -> list[Case]:
    from scipy import stats
    from torch.distributions import Exponential, Normal

    from mathkit.distributions import TruncatedNormal
    from mathkit.losses import censored_nll, gaussian_nll

    m = "losses"
    y3 = t64([0.5, 1.0, 2.0])
    ones3 = t64([1.0, 1.0, 1.0])
    ref = stats.norm.logpdf([0.5, 1.0, 2.0], 0.2, 1.5)
    normal = lambda: Normal(t64([0.2, 0.2, 0.2]), t64([1.5, 1.5, 1.5]))  # noqa: E731
    tn_half = lambda: TruncatedNormal(t64(1.0), t64(2.0), 0.0, INF)  # noqa: E731
    tn_ref = stats.truncnorm(-0.5, INF, loc=1.0, scale=2.0)
    right = torch.tensor([False, True, False])
    return [
        Case(m, "gaussian_nll y (n, 1) against loc (n,)", lambda: gaussian_nll(y3[:, None], y3, ones3),
             names=("loc", "y")),
        Case(m, "gaussian_nll loc (n, 1) against y (n,)", lambda: gaussian_nll(y3, y3[:, None], ones3),
             names=("loc", "y")),
        Case(m, "gaussian_nll scale of another length", lambda: gaussian_nll(y3, y3, t64([1.0, 1.0])),
             names=("scale",)),
        Case(m, "gaussian_nll empty y", lambda: gaussian_nll(t64([]), t64([]), t64([])), names=("y",)),
        Case(m, "gaussian_nll NaN in y", lambda: gaussian_nll(t64([0.5, NAN, 2.0]), 0.2, 1.5), names=("y",)),
        Case(m, "gaussian_nll inf in y", lambda: gaussian_nll(t64([0.5, INF, 2.0]), 0.2, 1.5), names=("y",)),
        Case(m, "gaussian_nll NaN loc", lambda: gaussian_nll(y3, t64([0.0, NAN, 0.0]), ones3), names=("loc",)),
        Case(m, "gaussian_nll zero scale", lambda: gaussian_nll(y3, 0.2, t64([1.0, 0.0, 1.0])), names=("scale",)),
        Case(m, "gaussian_nll NaN scale", lambda: gaussian_nll(y3, 0.2, t64([1.0, NAN, 1.0])), names=("scale",)),
        Case(m, "gaussian_nll infinite scale", lambda: gaussian_nll(y3, 0.2, t64([1.0, INF, 1.0])), names=("scale",)),
        Case(m, "gaussian_nll integer y promoted", lambda: gaussian_nll(torch.tensor([1, 2, 4]), torch.tensor(1),
                                                                         torch.tensor(2), reduction="none"),
             oracle=close(-stats.norm.logpdf([1, 2, 4], 1, 2), 1e-6)),
        Case(m, "gaussian_nll scalar loc and scale", lambda: gaussian_nll(y3, 0.2, 1.5, reduction="none"),
             oracle=close(-ref, 1e-12)),
        Case(m, "gaussian_nll huge scale 1e10", lambda: gaussian_nll(y3, 0.2, 1e10),
             oracle=close(-stats.norm.logpdf([0.5, 1.0, 2.0], 0.2, 1e10).mean(), 1e-12)),
        Case(m, "gaussian_nll offset 1e8 on y and loc (invariance)", lambda: gaussian_nll(y3 + 1e8, 0.2 + 1e8, 1.5),
             oracle=close(-ref.mean(), 1e-7)),
        Case(m, "gaussian_nll list input", lambda: gaussian_nll([0.5, 1.0, 2.0], 0.2, 1.5),
             oracle=close(-ref.mean(), 1e-6)),
        Case(m, "gaussian_nll string y", lambda: gaussian_nll("1.0", 0.2, 1.5), names=("y",)),
        Case(m, "gaussian_nll unknown reduction", lambda: gaussian_nll(y3, 0.2, 1.5, reduction="avg"),
             names=("reduction",)),
        Case(m, "gaussian_nll single point", lambda: gaussian_nll(t64([3.0]), 0.2, 1.5),
             oracle=close(-stats.norm.logpdf(3.0, 0.2, 1.5), 1e-12)),
        Case(m, "censored_nll y (n, 1) against a batch (n,)", lambda: censored_nll(normal(), y3[:, None]),
             names=("batch_shape", "y")),
        Case(m, "censored_nll mask of shape (2, n) counts points twice",
             lambda: censored_nll(normal(), y3, right_censored=right.expand(2, 3)), names=("right_censored",)),
        Case(m, "censored_nll mask shorter than y", lambda: censored_nll(normal(), y3, right_censored=right[:1]),
             names=("right_censored",)),
        Case(m, "censored_nll empty y", lambda: censored_nll(tn_half(), t64([])), names=("y",)),
        Case(m, "censored_nll NaN in y", lambda: censored_nll(tn_half(), t64([0.5, NAN, 2.0])), names=("y",)),
        Case(m, "censored_nll inf in y (right-censored)",
             lambda: censored_nll(tn_half(), t64([0.5, INF, 2.0]), right_censored=right), names=("y",)),
        Case(m, "censored_nll integer mask",
             lambda: censored_nll(tn_half(), y3, right_censored=torch.tensor([0, 1, 0])),
             names=("right_censored",)),
        Case(m, "censored_nll list mask", lambda: censored_nll(tn_half(), y3, right_censored=[False, True, False]),
             names=("right_censored",)),
        Case(m, "censored_nll point censored on both sides",
             lambda: censored_nll(normal(), y3, right_censored=right, left_censored=right),
             names=("right_censored", "left_censored")),
        Case(m, "censored_nll dist is a tensor", lambda: censored_nll(y3, y3), names=("dist",)),
        Case(m, "censored_nll right-censoring a law without log_sf",
             lambda: censored_nll(Exponential(t64([1.0, 1.0, 1.0])), y3, right_censored=right), names=("log_sf",)),
        Case(m, "censored_nll integer y promoted",
             lambda: censored_nll(tn_half(), torch.tensor([1, 2, 3]), right_censored=right, reduction="none"),
             oracle=close(-np.array([tn_ref.logpdf(1), tn_ref.logsf(2), tn_ref.logpdf(3)]), 1e-12)),
        Case(m, "censored_nll the book's demand model",
             lambda: censored_nll(tn_half(), y3, right_censored=right),
             oracle=close(-np.mean([tn_ref.logpdf(0.5), tn_ref.logsf(1.0), tn_ref.logpdf(2.0)]), 1e-12)),
        Case(m, "censored_nll right-censored 40 sd out is finite",
             lambda: censored_nll(Normal(t64(0.0), t64(1.0)), t64([40.0]), right_censored=torch.tensor([True])),
             oracle=close(-stats.norm.logsf(40.0), 1e-10)),
        Case(m, "censored_nll left-censored 40 sd out is finite",
             lambda: censored_nll(Normal(t64(0.0), t64(1.0)), t64([-40.0]), left_censored=torch.tensor([True])),
             oracle=close(-stats.norm.logcdf(-40.0), 1e-10)),
        Case(m, "censored_nll reduction none keeps y's shape",
             lambda: censored_nll(normal(), y3, reduction="none"), oracle=close(-ref, 1e-12)),
        Case(m, "censored_nll observation outside the support (-log p = inf)",
             lambda: censored_nll(TruncatedNormal(t64(1.0), t64(2.0), 0.0, INF, validate_args=False), t64([-1.0])),
             oracle=close(INF), names=("value", "support")),
        Case(m, "censored_nll unknown reduction", lambda: censored_nll(normal(), y3, reduction="total"),
             names=("reduction",)),
    ]


# ----------------------------------------------------------------------------- gp

def gp_cases() -> list[Case]:
    from mathkit.gp import RBF, GPRegressor, Matern

    m = "gp"
    rng = np.random.default_rng(0)
    X = np.linspace(0.0, 10.0, 30)
    y = np.sin(X) + 0.1 * rng.standard_normal(30)
    Xs = np.linspace(0.5, 9.5, 7)
    y_repeat = np.sin(X) + 0.1 * rng.standard_normal(30)

    def predict(X_fit, y_fit, X_new, **options):
        return GPRegressor(method="cholesky", **options).fit(X_fit, y_fit).predict(X_new)

    base = predict(X, y, Xs)
    spread = float(np.std(y))

    def matches(scale: float = 1.0, shift: float = 0.0, tol: float = 0.02):
        """Predictions equal scale * base + shift to within tol of y's spread (scaled)."""
        return lambda v: finite(v) and np.max(np.abs(_np(v) - (scale * base + shift))) <= tol * spread * abs(scale)

    def refit_agrees():
        gp = GPRegressor(method="cholesky").fit(X, y)
        again = GPRegressor(kernel=gp.kernel_, noise=gp.noise_, method="cholesky", optimizer=None).fit(X, y)
        return (abs(gp.log_marginal_likelihood() - again.log_marginal_likelihood()) < 1e-6
                and np.allclose(gp.predict(Xs), again.predict(Xs), rtol=1e-6, atol=1e-9))

    def sklearn_agrees():
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import RBF as SkRBF
        from sklearn.gaussian_process.kernels import ConstantKernel, WhiteKernel

        sk = GaussianProcessRegressor(ConstantKernel() * SkRBF() + WhiteKernel(), n_restarts_optimizer=3,
                                      random_state=0)
        return np.max(np.abs(sk.fit(X[:, None], y).predict(Xs[:, None]) - base)) <= 0.02 * spread

    def repeated_measurements_agree():
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import RBF as SkRBF
        from sklearn.gaussian_process.kernels import ConstantKernel, WhiteKernel

        XX, yy = np.concatenate([X, X]), np.concatenate([y, y_repeat])
        sk = GaussianProcessRegressor(ConstantKernel() * SkRBF() + WhiteKernel(), n_restarts_optimizer=3,
                                      random_state=0).fit(XX[:, None], yy)
        ours = predict(XX, yy, Xs, normalize_y=False)
        return np.max(np.abs(sk.predict(Xs[:, None]) - ours)) <= 0.02 * spread

    def duplicate_pairs_lml():
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import RBF as SkRBF
        from sklearn.gaussian_process.kernels import ConstantKernel, WhiteKernel

        XX, yy = np.concatenate([X, X]), np.concatenate([y, y])
        ours = GPRegressor(method="cholesky", normalize_y=False).fit(XX, yy).log_marginal_likelihood()
        sk = GaussianProcessRegressor(ConstantKernel() * SkRBF() + WhiteKernel(), n_restarts_optimizer=3,
                                      random_state=0).fit(XX[:, None], yy)
        return ours >= sk.log_marginal_likelihood_value_ - 1e-6

    def constant_y(v):
        return finite(v) and np.allclose(_np(v), 3.0, atol=1e-6)

    cases = [
        Case(m, "fit: NaN in X", lambda: GPRegressor().fit(np.where(X == X[3], NAN, X), y), names=("X",)),
        Case(m, "fit: inf in y", lambda: GPRegressor().fit(X, np.where(X == X[3], INF, y)), names=("y",)),
        Case(m, "fit: empty X", lambda: GPRegressor().fit(np.zeros((0, 1)), np.zeros(0)), names=("X", "y")),
        Case(m, "fit: X and y of different lengths", lambda: GPRegressor().fit(X, y[:-1]), names=("X", "y")),
        Case(m, "fit: X of three dimensions", lambda: GPRegressor().fit(X.reshape(30, 1, 1), y), names=("X",)),
        Case(m, "fit: y of shape (n, 1)", lambda: predict(X, y[:, None], Xs), names=("y",),
             oracle=lambda v: matches()(np.ravel(_np(v)))),
        Case(m, "fit: integer X promoted", lambda: predict(np.arange(30), y, np.array([2, 5])),
             oracle=lambda v: np.allclose(_np(v), predict(np.arange(30.0), y, np.array([2.0, 5.0])), rtol=1e-6)),
        Case(m, "noise=-1", lambda: GPRegressor(noise=-1.0).fit(X, y), names=("noise",)),
        Case(m, "noise=NaN", lambda: GPRegressor(noise=NAN).fit(X, y), names=("noise",)),
        Case(m, "kernel given as a string", lambda: GPRegressor(kernel="rbf").fit(X, y), names=("kernel",)),
        Case(m, "unknown method", lambda: GPRegressor(method="svd").fit(X, y), names=("method",)),
        Case(m, "RBF(lengthscale=0)", lambda: RBF(lengthscale=0.0), names=("lengthscale",)),
        Case(m, "RBF(lengthscale=NaN)", lambda: RBF(lengthscale=NAN), names=("lengthscale",)),
        Case(m, "RBF(variance=inf)", lambda: RBF(variance=INF), names=("variance",)),
        Case(m, "Matern(nu=2)", lambda: Matern(nu=2.0), names=("nu",)),
        Case(m, "predict before fit", lambda: GPRegressor().predict(Xs), names=("fit",),
             errors=(ValueError, TypeError, RuntimeError, AttributeError)),
        Case(m, "predict with another number of columns",
             lambda: GPRegressor(method="cholesky").fit(X, y).predict(np.zeros((3, 2))), names=("X", "columns")),
        Case(m, "predict: NaN in X", lambda: GPRegressor(method="cholesky").fit(X, y).predict(np.array([NAN])),
             names=("X",)),
        Case(m, "y x 1e3 (units)", lambda: predict(X, 1e3 * y, Xs), oracle=matches(1e3)),
        Case(m, "y x 1e-6 (units)", lambda: predict(X, 1e-6 * y, Xs), oracle=matches(1e-6)),
        Case(m, "y + 1e4 (offset)", lambda: predict(X, y + 1e4, Xs), oracle=matches(shift=1e4)),
        Case(m, "y x 1e8 + 1e9", lambda: predict(X, 1e8 * y + 1e9, Xs), oracle=matches(1e8, 1e9)),
        Case(m, "X x 1e-6 (units)", lambda: predict(1e-6 * X, y, 1e-6 * Xs), oracle=matches()),
        Case(m, "X x 1e6 (units)", lambda: predict(1e6 * X, y, 1e6 * Xs), oracle=matches()),
        Case(m, "X as hourly Unix timestamps", lambda: predict(1.7e9 + 3600.0 * X, y, 1.7e9 + 3600.0 * Xs),
             oracle=matches()),
        Case(m, "X + 1.7e9 (offset)", lambda: predict(X + 1.7e9, y, Xs + 1.7e9), oracle=matches()),
        Case(m, "normalize_y with y x 1e3", lambda: predict(X, 1e3 * y, Xs, normalize_y=True), oracle=matches(1e3)),
        Case(m, "constant y", lambda: predict(X, np.full(30, 3.0), Xs), oracle=constant_y, names=("y",)),
        Case(m, "a single point", lambda: predict(np.array([1.0]), np.array([2.0]), np.array([1.0, 50.0])),
             oracle=lambda v: finite(v) and abs(float(_np(v)[0]) - 2.0) < 1.0, names=("X", "y")),
        Case(m, "duplicated X, repeated measurements (every x measured twice): scikit-learn's predictions",
             repeated_measurements_agree, oracle=bool),
        # identical (x, y) pairs say the noise is 0, and the likelihood then prefers an interpolant:
        # the right answer is the maximum, judged against scikit-learn's on the same data
        Case(m, "duplicated (x, y) pairs: likelihood at least scikit-learn's", duplicate_pairs_lml, oracle=bool),
        Case(m, "return_std is finite and positive",
             lambda: GPRegressor(method="cholesky").fit(X, y).predict(Xs, return_std=True)[1],
             oracle=lambda s: finite(s) and bool(np.all(_np(s) > 0))),
        Case(m, "log_marginal_likelihood and predict agree with a refit at kernel_, noise_", refit_agrees, oracle=bool),
        Case(m, "matches scikit-learn on a plain sine", sklearn_agrees, oracle=bool),
        Case(m, "cg: y x 1e3 (units)",
             lambda: GPRegressor(method="cg").fit(X, 1e3 * y).predict(Xs), oracle=matches(1e3, tol=0.05)),
        Case(m, "cg: NaN in y", lambda: GPRegressor(method="cg").fit(X, np.where(X == X[5], NAN, y)), names=("y",)),
    ]
    return cases


# ----------------------------------------------------------------------------- epi

def epi_cases() -> list[Case]:
    from scipy.integrate import solve_ivp

    from mathkit.data import boarding_school_flu
    from mathkit.epi import fit_sir, simulate_sir

    m = "epi"
    t = np.arange(1.0, 31.0)

    def scipy_sir(beta, gamma, n, i0, times):
        def rhs(_, state):
            s, i = state[0], state[1]
            return [-beta * s * i / n, beta * s * i / n - gamma * i, gamma * i]

        # an absolute tolerance far below one person: atol = 1e-9 n let the reference itself drift by
        # 0.75% at n = 1e9 (a tighter solve agrees with mathkit to 2e-12)
        sol = solve_ivp(rhs, (0.0, times[-1]), [n - i0, i0, 0.0], t_eval=times, rtol=1e-12, atol=1e-9,
                        method="DOP853")
        return sol.y

    ref = scipy_sir(0.5, 0.2, 1000.0, 1.0, t)
    ref_big = scipy_sir(0.5, 0.2, 1e9, 10.0, t)

    def sir_recovers(beta: float, gamma: float, i0: float, seed: int) -> bool:
        """60 daily Poisson prevalence counts of an outbreak in 5,000 people; i0 known. The fit must
        converge near the truth; whether its 95% intervals cover 95% of the time is a property of
        many outbreaks, measured by benchmarks/sir_coverage.py and tests/test_epi.py, not of one."""
        days = np.arange(1.0, 61.0)
        counts = np.random.default_rng(seed).poisson(simulate_sir(beta, gamma, 5000.0, i0, days).I)
        fit = fit_sir(days, counts, 5000.0, i0=i0)
        return fit.converged and abs(fit.beta / beta - 1) < 0.2 and abs(fit.gamma / gamma - 1) < 0.2

    nan_beta = lambda time: time * NAN  # noqa: E731
    return [
        Case(m, "simulate_sir: NaN beta", lambda: simulate_sir(NAN, 0.2, 1000.0, 1.0, t), names=("beta",)),
        Case(m, "simulate_sir: inf beta", lambda: simulate_sir(INF, 0.2, 1000.0, 1.0, t), names=("beta",)),
        Case(m, "simulate_sir: negative gamma", lambda: simulate_sir(0.5, -0.2, 1000.0, 1.0, t), names=("gamma",)),
        Case(m, "simulate_sir: zero population", lambda: simulate_sir(0.5, 0.2, 0.0, 1.0, t), names=("population",)),
        Case(m, "simulate_sir: i0 = 0", lambda: simulate_sir(0.5, 0.2, 1000.0, 0.0, t), names=("i0",)),
        Case(m, "simulate_sir: i0 above population", lambda: simulate_sir(0.5, 0.2, 1000.0, 2000.0, t), names=("i0",)),
        Case(m, "simulate_sir: decreasing t", lambda: simulate_sir(0.5, 0.2, 1000.0, 1.0, t[::-1].copy()),
             names=("t",)),
        Case(m, "simulate_sir: NaN in t", lambda: simulate_sir(0.5, 0.2, 1000.0, 1.0, np.array([1.0, NAN, 3.0])),
             names=("t",)),
        Case(m, "simulate_sir: empty t", lambda: simulate_sir(0.5, 0.2, 1000.0, 1.0, np.zeros(0)), names=("t",)),
        Case(m, "simulate_sir: callable beta(t) returning NaN", lambda: simulate_sir(nan_beta, 0.2, 1000.0, 1.0, t),
             names=("beta",)),
        Case(m, "simulate_sir: callable beta(t) returning a negative rate",
             lambda: simulate_sir(lambda time: -0.5 + 0.0 * time, 0.2, 1000.0, 1.0, t), names=("beta",),
             oracle=lambda r: bool(np.all(np.diff(_np(r.S)) <= 1e-9))),
        Case(m, "simulate_sir: matches scipy's solve_ivp", lambda: simulate_sir(0.5, 0.2, 1000.0, 1.0, t),
             oracle=lambda r: np.allclose(np.stack([r.S, r.I, r.R]), ref, rtol=1e-5, atol=1e-6)),
        Case(m, "simulate_sir: population 1e9 matches solve_ivp", lambda: simulate_sir(0.5, 0.2, 1e9, 10.0, t),
             oracle=lambda r: np.allclose(np.stack([r.S, r.I, r.R]), ref_big, rtol=1e-5, atol=1e-3)),
        Case(m, "simulate_sir: S + I + R = N", lambda: simulate_sir(1.5, 0.1, 763.0, 1.0, t),
             oracle=lambda r: np.allclose(r.S + r.I + r.R, 763.0, rtol=1e-7)),
        Case(m, "simulate_sir: beta = 0 decays as exp(-gamma t)", lambda: simulate_sir(0.0, 0.2, 1000.0, 10.0, t).I,
             oracle=close(10.0 * np.exp(-0.2 * t), 1e-6)),
        Case(m, "simulate_sir: integer arguments", lambda: simulate_sir(1, 0, 1000, 1, np.arange(1, 4)).I,
             oracle=lambda v: _np(v).dtype.kind == "f" and finite(v) and float(_np(v)[-1]) > 1.0),
        Case(m, "fit_sir: NaN count", lambda: fit_sir(t, np.where(t == 3.0, NAN, 5.0), 1000.0), names=("y",)),
        Case(m, "fit_sir: negative count", lambda: fit_sir(t, np.where(t == 3.0, -1.0, 5.0), 1000.0), names=("y",)),
        Case(m, "fit_sir: non-integer counts", lambda: fit_sir(t, np.full(30, 2.5), 1000.0), names=("y",)),
        Case(m, "fit_sir: t and y of different lengths", lambda: fit_sir(t, np.ones(29), 1000.0), names=("t", "y")),
        Case(m, "fit_sir: population below the counts", lambda: fit_sir(t, np.full(30, 50.0), 10.0),
             names=("population",)),
        Case(m, "fit_sir: unknown observed", lambda: fit_sir(t, np.ones(30), 1000.0, observed="deaths"),
             names=("observed",)),
        Case(m, "fit_sir: unknown likelihood", lambda: fit_sir(t, np.ones(30), 1000.0, likelihood="normal"),
             names=("likelihood",)),
        Case(m, "fit_sir: level 1.5", lambda: fit_sir(t, np.ones(30), 1000.0, level=1.5), names=("level",)),
        Case(m, "fit_sir: negative i0", lambda: fit_sir(t, np.ones(30), 1000.0, i0=-1.0), names=("i0",)),
        Case(m, "fit_sir: the 1978 boarding-school outbreak (R0 between 3 and 5)",
             lambda: _fit_flu(fit_sir, boarding_school_flu()), oracle=lambda r0: 3.0 < r0 < 5.0),
        *(Case(m, f"fit_sir: simulated outbreak N=5000, R0={b / g:.1f}, i0={i0:g}: converges near the truth",
               lambda b=b, g=g, i0=i0, seed=seed: sir_recovers(b, g, i0, seed), oracle=bool)
          for b, g, i0, seed in [(0.5, 0.2, 5.0, 1), (0.3, 0.1, 1.0, 0), (0.33, 0.1, 2.0, 2), (0.6, 0.25, 1.0, 3)]),
    ]


def _fit_flu(fit_sir, flu) -> float:
    return float(fit_sir(flu.day.astype(float), flu.in_bed, flu.population, i0=1.0).r0)


# ----------------------------------------------------------------------------- data

def data_cases() -> list[Case]:
    from mathkit.data import boarding_school_flu, published_success_rate, simulate_demand, simulate_learners

    m = "data"

    def demand(**kwargs):
        kwargs.setdefault("rng", 0)
        return simulate_demand(n_products=3, n_days=60, **kwargs)

    def same(a, b):
        return all(np.array_equal(getattr(a, f), getattr(b, f)) for f in ("demand", "sales", "stock"))

    def flu_read_only():
        flu = boarding_school_flu()
        try:
            flu.in_bed[0] = 0
        except ValueError:
            return boarding_school_flu().in_bed[0] == 3
        return False

    return [
        Case(m, "simulate_demand: int seed and Generator give the same data",
             lambda: same(demand(rng=5), demand(rng=np.random.default_rng(5))), oracle=bool),
        Case(m, "simulate_demand: numpy integer seed", lambda: same(demand(rng=np.int64(5)), demand(rng=5)),
             oracle=bool),
        Case(m, "simulate_demand: rng given as a string", lambda: demand(rng="5"), names=("rng",)),
        Case(m, "simulate_demand: negative seed", lambda: demand(rng=-5), names=("rng",)),
        Case(m, "simulate_demand: legacy RandomState", lambda: demand(rng=np.random.RandomState(5)), names=("rng",)),
        Case(m, "simulate_demand: n_products NaN", lambda: simulate_demand(n_products=NAN, rng=0),
             names=("n_products",)),
        Case(m, "simulate_demand: n_products 2.5", lambda: simulate_demand(n_products=2.5, rng=0),
             names=("n_products",)),
        Case(m, "simulate_demand: n_days 100.5", lambda: simulate_demand(n_days=100.5, rng=0), names=("n_days",)),
        Case(m, "simulate_demand: n_days as a string", lambda: simulate_demand(n_days="365", rng=0), names=("n_days",)),
        Case(m, "simulate_demand: infinite noise", lambda: demand(noise=INF), names=("noise",)),
        Case(m, "simulate_demand: NaN noise", lambda: demand(noise=NAN), names=("noise",)),
        Case(m, "simulate_demand: NaN level", lambda: demand(levels=np.array([1.0, NAN, 3.0])), names=("levels",)),
        Case(m, "simulate_demand: infinite level", lambda: demand(levels=np.array([1.0, INF, 3.0])), names=("levels",)),
        Case(m, "simulate_demand: levels of the wrong length", lambda: demand(levels=np.ones(4)), names=("levels",)),
        Case(m, "simulate_demand: integer levels", lambda: demand(levels=np.array([1, 5, 20])).sales,
             oracle=lambda v: finite(v) and bool(np.all(_np(v) >= 0))),
        Case(m, "simulate_demand: split leaving an empty period",
             lambda: simulate_demand(n_days=30, split=(0.98, 0.01, 0.01), rng=0), names=("split",)),
        Case(m, "simulate_demand: split with NaN", lambda: demand(split=(0.6, NAN, 0.2)), names=("split",)),
        Case(m, "simulate_demand: promo_prob 1.5", lambda: demand(promo_prob=1.5), names=("promo_prob",)),
        Case(m, "simulate_demand: NaN stockout_rate", lambda: demand(stockout_rate=NAN), names=("stockout_rate",)),
        Case(m, "simulate_demand: sales = min(demand, stock), demand >= 0",
             lambda: demand(stockout_rate=0.3),
             oracle=lambda d: np.array_equal(d.sales, np.minimum(d.demand, d.stock)) and bool((d.demand >= 0).all())),
        Case(m, "simulate_demand: stockout_rate 0.3 is met",
             lambda: simulate_demand(n_products=4, n_days=730, stockout_rate=0.3, rng=1).stockout.mean(),
             oracle=lambda v: abs(float(v) - 0.3) < 0.02),
        Case(m, "simulate_learners: int seed and Generator give the same population",
             lambda: np.array_equal(simulate_learners(500, rng=3).success,
                                    simulate_learners(500, rng=np.random.default_rng(3)).success), oracle=bool),
        Case(m, "simulate_learners: n = True", lambda: simulate_learners(True, rng=0), names=("n",)),
        Case(m, "simulate_learners: n = 2.5", lambda: simulate_learners(2.5, rng=0), names=("n",)),
        Case(m, "simulate_learners: NaN theory_share", lambda: simulate_learners(10, theory_share=NAN, rng=0),
             names=("theory_share",)),
        Case(m, "simulate_learners: rng given as a string", lambda: simulate_learners(10, rng="0"), names=("rng",)),
        Case(m, "simulate_learners: published rate follows Bayes' rule",
             lambda: simulate_learners(200_000, success_without_theory=0.2, rng=0).published_success_rate(False),
             oracle=lambda v: abs(v - 0.3 * 0.2 / (0.3 * 0.2 + 0.01 * 0.8)) < 0.02),
        Case(m, "published_success_rate: NaN success_rate", lambda: published_success_rate([0.5, NAN], 0.3, 0.01),
             names=("success_rate",)),
        Case(m, "published_success_rate: infinite publish_if_success", lambda: published_success_rate(0.5, INF, 0.01),
             names=("publish_if_success",)),
        Case(m, "published_success_rate: shapes that do not broadcast",
             lambda: published_success_rate([0.5, 0.4], [0.3, 0.2, 0.1], 0.01),
             names=("success_rate", "publish_if_success")),
        Case(m, "published_success_rate: string argument", lambda: published_success_rate(0.5, 0.3, "0.01"),
             names=("publish_if_failure",)),
        Case(m, "published_success_rate: closed form",
             lambda: published_success_rate(np.array([0.2, 0.5]), 0.3, 0.01),
             oracle=close([0.3 * 0.2 / (0.3 * 0.2 + 0.01 * 0.8), 0.3 * 0.5 / (0.3 * 0.5 + 0.01 * 0.5)], 1e-12)),
        Case(m, "boarding_school_flu: arrays are read-only copies", flu_read_only, oracle=bool),
    ]


# ----------------------------------------------------------------------------- nn

def nn_cases() -> list[Case]:
    from mathkit import nn as mnn

    m = "nn"
    rng = np.random.default_rng(0)
    values = np.abs(rng.normal(5.0, 1.0, size=(2, 40)))
    ones = np.ones(2)

    def windows(v=values, **kwargs):
        kwargs.setdefault("unit", ones)
        kwargs.setdefault("window", 5)
        return mnn.make_windows(v, **kwargs)

    def with_nan(array, index):
        array = np.array(array, dtype=float)
        array[index] = NAN
        return array

    def replaced(w, **parts):
        return mnn.Windows(**{f: parts.get(f, getattr(w, f)) for f in w.__dataclass_fields__})

    def train(head="gaussian", train_windows=None, val_windows=None, **kwargs):
        torch.manual_seed(0)
        w = windows()
        model = mnn.SequenceForecaster(1, head, hidden_size=4)
        kwargs.setdefault("epochs", 2)
        return mnn.fit(model, w if train_windows is None else train_windows, w if val_windows is None else val_windows,
                       progress=False, generator=torch.Generator().manual_seed(0), **kwargs)

    def trained_finite(history):
        return all(math.isfinite(v) for v in history.train_loss + history.val_loss)

    counts = np.arange(40).reshape(2, 20) % 7
    w0 = windows()
    negative_target = replaced(w0, target=torch.where(torch.arange(len(w0)) == 3, -1.0, w0.target))
    return [
        Case(m, "make_windows: NaN in values", lambda: windows(with_nan(values, (1, 7))), names=("values",)),
        Case(m, "make_windows: inf in values", lambda: windows(np.where(values > 6.5, INF, values)), names=("values",)),
        Case(m, "make_windows: NaN in covariates",
             lambda: windows(covariates=with_nan(np.zeros((2, 40, 1)), (0, 3, 0))), names=("covariates",)),
        Case(m, "make_windows: unit = inf (zeroes a series)", lambda: windows(unit=np.array([1.0, INF])),
             names=("unit",)),
        Case(m, "make_windows: unit = NaN", lambda: windows(unit=np.array([1.0, NAN])), names=("unit",)),
        Case(m, "make_windows: unit = 0", lambda: windows(unit=np.array([0.0, 1.0])), names=("unit",)),
        Case(m, "make_windows: negative unit", lambda: windows(unit=np.array([-1.0, 1.0])), names=("unit",)),
        Case(m, "make_windows: unit of the wrong length", lambda: windows(unit=np.ones(3)), names=("unit",)),
        Case(m, "make_windows: unknown unit string", lambda: windows(unit="series"), names=("unit",)),
        Case(m, "make_windows: unit='window' on negative values", lambda: windows(-values, unit="window"),
             names=("unit",)),
        Case(m, "make_windows: window = 0", lambda: windows(window=0), names=("window",)),
        Case(m, "make_windows: window = 2.5", lambda: windows(window=2.5), names=("window",)),
        Case(m, "make_windows: window as long as the series", lambda: windows(window=40), names=("window",)),
        Case(m, "make_windows: 1-D values", lambda: windows(values[0], unit=np.ones(1)), names=("values",)),
        Case(m, "make_windows: no series", lambda: windows(np.zeros((0, 40)), unit=np.ones(0)), names=("values",)),
        Case(m, "make_windows: strings as values", lambda: windows(np.full((2, 40), "a")), names=("values",)),
        Case(m, "make_windows: integer counts are not truncated",
             lambda: windows(counts, unit=np.array([2, 4]), window=3),
             oracle=lambda w: torch.equal((w.target * w.unit).double(),
                                          torch.as_tensor(counts[w.series, w.time], dtype=F64))),
        Case(m, "make_windows: integer dtype", lambda: windows(dtype=torch.int64), names=("dtype",)),
        Case(m, "make_windows: integer right_censored mask", lambda: windows(right_censored=np.zeros((2, 40))),
             names=("right_censored",)),
        Case(m, "make_windows: right_censored of another shape",
             lambda: windows(right_censored=np.zeros((2, 39), dtype=bool)), names=("right_censored",)),
        Case(m, "make_windows: values of scale 1e12 with unit 1e12",
             lambda: windows(values * 1e12, unit=np.full(2, 1e12)),
             oracle=lambda w: np.allclose(_np(w.target * w.unit), 1e12 * values[_np(w.series), _np(w.time)],
                                          rtol=1e-6)),
        Case(m, "Windows.between an empty range", lambda: w0.between(100, 200), names=("start", "stop")),
        Case(m, "fit: empty validation split", lambda: train(val_windows=w0[:0]), names=("val",)),
        Case(m, "fit: empty training split", lambda: train(train_windows=w0[:0]), names=("train",)),
        Case(m, "fit: NaN inputs (used to blame scale)",
             lambda: train(val_windows=replaced(w0, inputs=torch.full_like(w0.inputs, NAN))), names=("inputs",)),
        Case(m, "fit: NaN target", lambda: train(train_windows=replaced(w0, target=torch.full_like(w0.target, NAN))),
             names=("target",)),
        Case(m, "fit: a target outside the truncated head's support",
             lambda: train("truncated", train_windows=negative_target), names=("support",)),
        Case(m, "fit: a learning rate far too large", lambda: train("point", lr=1e30, epochs=3), names=("lr",)),
        Case(m, "fit: lr = inf", lambda: train(lr=INF), names=("lr",)),
        Case(m, "fit: lr = 0", lambda: train(lr=0.0), names=("lr",)),
        Case(m, "fit: epochs = 0", lambda: train(epochs=0), names=("epochs",)),
        Case(m, "fit: batch_size = 0", lambda: train(batch_size=0), names=("batch_size",)),
        Case(m, "fit: a numpy Generator as generator",
             lambda: mnn.fit(mnn.SequenceForecaster(1, hidden_size=4), w0, w0, generator=np.random.default_rng(0)),
             names=("generator",)),
        Case(m, "fit: integer targets train",
             lambda: train(train_windows=replaced(w0, target=w0.target.round().long())),
             oracle=trained_finite),
        Case(m, "fit: float64 windows with a float32 model",
             lambda: train(train_windows=replaced(w0, inputs=w0.inputs.double(), target=w0.target.double())),
             oracle=trained_finite),
        Case(m, "fit: the censored head trains on data with stock-outs",
             lambda: train("censored", train_windows=replaced(w0, right_censored=w0.target > 5.5)),
             oracle=trained_finite),
        Case(m, "SequenceForecaster: unknown head", lambda: mnn.SequenceForecaster(1, "poisson"), names=("head",)),
        Case(m, "SequenceForecaster: unknown cell", lambda: mnn.SequenceForecaster(1, cell="rnn"), names=("cell",)),
        Case(m, "SequenceForecaster: n_inputs = 0", lambda: mnn.SequenceForecaster(0), names=("n_inputs",)),
        Case(m, "SequenceForecaster: hidden_size = 0", lambda: mnn.SequenceForecaster(1, hidden_size=0),
             names=("hidden_size",)),
        Case(m, "SequenceForecaster: min_scale = 0", lambda: mnn.SequenceForecaster(1, "gaussian", min_scale=0.0),
             names=("min_scale",)),
        Case(m, "predict on windows with another number of features",
             lambda: mnn.SequenceForecaster(3, hidden_size=4).predict(w0), names=("inputs", "n_inputs")),
    ]


BUILDERS = {
    "numerics": numerics_cases,
    "distributions": distribution_cases,
    "losses": loss_cases,
    "gp": gp_cases,
    "epi": epi_cases,
    "data": data_cases,
    "nn": nn_cases,
}


def cases(modules=MODULES) -> list[Case]:
    """Every case of the sweep for ``modules``."""
    return [case for module in modules for case in BUILDERS[module]()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", nargs="*", default=list(MODULES), choices=MODULES)
    parser.add_argument("--failures", action="store_true", help="print only the cases that are not right")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    counts: dict[str, Counter] = {}
    for module in args.modules:
        counts[module] = Counter()
        for case in BUILDERS[module]():
            outcome, detail = classify(case)
            counts[module][outcome] += 1
            if not args.failures or outcome in (SILENT, UNCLEAR):
                print(f"{outcome:<15} {case.key:<90.90} {detail}", flush=True)
    print()
    header = f"{'module':<14}" + "".join(f"{o:>16}" for o in OUTCOMES) + f"{'total':>8}"
    print(header)
    total = Counter()
    for module, counter in counts.items():
        total.update(counter)
        print(f"{module:<14}" + "".join(f"{counter[o]:>16}" for o in OUTCOMES) + f"{sum(counter.values()):>8}")
    print(f"{'all':<14}" + "".join(f"{total[o]:>16}" for o in OUTCOMES) + f"{sum(total.values()):>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
