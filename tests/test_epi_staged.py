"""simulate_seir against independent oracles: scipy's gamma law, the final-size equation, an
independently written SIR solve, and conservation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import optimize, stats
from scipy.integrate import solve_ivp

from mathkit.epi.staged import simulate_seir


@pytest.mark.parametrize("stages", [1, 2, 5])
def test_without_transmission_infectious_time_is_erlang(stages):
    # beta = 0: I(t) / I0 is the survival function of the Erlang(m, m gamma) infectious period
    t = np.linspace(0.0, 12.0, 25)
    path = simulate_seir(0.0, 0.4, 1000.0, 10.0, t, stages=stages)
    expected = 10.0 * stats.gamma.sf(t, a=stages, scale=1 / (stages * 0.4))
    np.testing.assert_allclose(path.I, expected, rtol=1e-6, atol=1e-6)


def test_one_stage_without_latency_is_sir():
    # an independently written SIR right-hand side, solved by scipy's LSODA
    beta, gamma, n, i0 = 1.7, 0.5, 763.0, 1.0
    t = np.arange(0.0, 20.0)
    ref = solve_ivp(lambda _, y: [-beta * y[0] * y[1] / n, beta * y[0] * y[1] / n - gamma * y[1]],
                    (0, 19), [n - i0, i0], t_eval=t, rtol=1e-10, atol=1e-10, method="LSODA")
    path = simulate_seir(beta, gamma, n, i0, t)
    np.testing.assert_allclose(path.S, ref.y[0], rtol=1e-6)
    np.testing.assert_allclose(path.I, ref.y[1], rtol=1e-5, atol=1e-6)
    assert np.all(path.E == 0)


@pytest.mark.parametrize("stages, latent_rate", [(1, None), (3, None), (1, 0.8), (4, 0.5)])
def test_final_size_and_conservation(stages, latent_rate):
    # the final size 1 - z = exp(-R0 z) does not depend on the stage structure or the latent period
    r0, n = 2.5, 1e6
    path = simulate_seir(r0 * 0.3, 0.3, n, 1.0, np.linspace(0, 400.0, 50), stages=stages, latent_rate=latent_rate)
    z = optimize.brentq(lambda z: 1 - z - np.exp(-r0 * z), 1e-3, 1.0)
    assert abs(path.R[-1] / n - z) < 1e-4
    np.testing.assert_allclose(path.S + path.E + path.I + path.R, n, rtol=1e-12)
    assert np.all(np.diff(path.S) <= 1e-6 * n)


def test_latency_delays_the_peak_and_stages_sharpen_it():
    t = np.linspace(0, 60, 601)
    sir = simulate_seir(1.0, 0.4, 1e4, 1.0, t)
    seir = simulate_seir(1.0, 0.4, 1e4, 1.0, t, latent_rate=0.5)
    staged = simulate_seir(1.0, 0.4, 1e9, 1.0, t, stages=4)     # a long exponential phase
    assert t[np.argmax(seir.I)] > t[np.argmax(sir.I)]
    # early growth rate r of the staged model solves R0 = (r/gamma) / (1 - (1 + r/(m gamma))^-m)
    # (Wearing et al. 2005), larger than SIR's beta - gamma
    m, gamma, r0 = 4, 0.4, 2.5
    r = optimize.brentq(lambda r: (r / gamma) / (1 - (1 + r / (m * gamma)) ** -m) - r0, 1e-6, 5.0)
    early = (t > 8) & (t < 14)      # after the start-up transient of the stages
    slope = np.polyfit(t[early], np.log(staged.I[early]), 1)[0]
    assert abs(slope - r) < 0.01 and r > 1.0 - 0.4


@pytest.mark.parametrize("kwargs, error, message", [
    ({"beta": -1.0}, ValueError, "beta must be finite and >= 0"),
    ({"beta": float("nan")}, ValueError, "beta must be finite"),
    ({"gamma": 0.0}, ValueError, "gamma must be finite and > 0"),
    ({"i0": 1000.0}, ValueError, "i0 must be below population"),
    ({"stages": 0}, ValueError, "stages must be >= 1"),
    ({"stages": 2.0}, TypeError, "stages must be an integer"),
    ({"latent_rate": float("inf")}, ValueError, "latent_rate must be finite"),
    ({"t": [2.0, 1.0]}, ValueError, "t must be non-decreasing"),
    ({"t": [0.0, float("nan")]}, ValueError, "t must be a non-empty 1-D array of finite times"),
    ({"beta": True}, TypeError, "beta must be a real number"),
])
def test_rejects_bad_input(kwargs, error, message):
    args = {"beta": 1.0, "gamma": 0.5, "population": 1000.0, "i0": 1.0, "t": [0.0, 1.0]} | kwargs
    with pytest.raises(error, match=message):
        simulate_seir(**args)


def test_integer_inputs_are_promoted():
    a = simulate_seir(1, 1, 100, 1, [0, 5])
    b = simulate_seir(1.0, 1.0, 100.0, 1.0, [0.0, 5.0])
    np.testing.assert_array_equal(a.I, b.I)
    assert a.I.dtype == np.float64
