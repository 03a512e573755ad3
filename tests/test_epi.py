"""mathkit.epi: the SIR solver against scipy, gradients, and fits on outbreaks with known truth."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import optimize, stats
from scipy.integrate import solve_ivp
import torch

from mathkit.data import boarding_school_flu
from mathkit.epi import SIRFit, fit_sir, simulate_sir


def _reference_sir(beta, gamma, population, i0, t, r0=0.0, sensitivities=False):
    """SIR (and, optionally, dI/dbeta, dI/dgamma) by scipy's DOP853 at rtol 1e-10."""

    def rhs(time, y):
        s, i, r = y[:3]
        rate = beta(time) if callable(beta) else beta
        infection = rate * s * i / population
        out = [-infection, infection - gamma * i, gamma * i]
        if sensitivities:
            # forward sensitivity equations: d/dt (dS/dp, dI/dp) = J (dS/dp, dI/dp) + df/dp
            (sb, ib, sg, ig) = y[3:]
            ds = -rate / population * (sb * i + s * ib)
            dsg = -rate / population * (sg * i + s * ig)
            out += [ds - s * i / population, -ds + s * i / population - gamma * ib,
                    dsg, -dsg - gamma * ig - i]
        return out

    y0 = [population - i0 - r0, i0, r0] + ([0.0] * 4 if sensitivities else [])
    solution = solve_ivp(rhs, (0.0, float(t[-1])), y0, t_eval=t, method="DOP853",
                         rtol=1e-10, atol=1e-12 * population)
    assert solution.success
    return solution.y


@pytest.mark.parametrize(
    ("beta", "gamma", "population", "i0", "r0", "days"),
    [
        (1.7, 0.5, 763.0, 1.0, 0.0, 14),  # the boarding school
        (0.4, 0.1, 1e6, 10.0, 0.0, 120),  # slow epidemic in a city
        (3.0, 1.0, 5e3, 2.0, 500.0, 20),  # fast, some people immune at the start
        (0.3, 0.5, 1e3, 50.0, 0.0, 30),  # R0 < 1: dies out
    ],
)
def test_simulate_sir_matches_scipy(beta, gamma, population, i0, r0, days):
    t = np.linspace(0.0, days, 4 * days + 1)
    s, i, r = simulate_sir(beta, gamma, population, i0, t, r0)
    reference = _reference_sir(beta, gamma, population, i0, t, r0)
    for ours, theirs in zip((s, i, r), reference):
        assert isinstance(ours, np.ndarray) and ours.shape == t.shape
        big = np.abs(theirs) > 1e-3  # relative error is meaningless for R = 0 at t = 0
        np.testing.assert_allclose(ours[big], theirs[big], rtol=1e-6)


def test_simulate_sir_conserves_population_over_a_batch():
    beta = torch.tensor([[0.5], [1.0], [4.0]], dtype=torch.float64)
    gamma = torch.tensor([0.2, 0.9], dtype=torch.float64)
    population = 1e4
    s, i, r = simulate_sir(beta, gamma, population, 3.0, torch.arange(0.0, 60.0), r0=10.0)
    assert s.shape == i.shape == r.shape == (3, 2, 60)
    np.testing.assert_allclose((s + i + r).numpy(), population, rtol=1e-8)
    assert (s[..., 1:] <= s[..., :-1]).all() and (r[..., 1:] >= r[..., :-1]).all()


def test_initial_state_and_float32():
    t = torch.tensor([0.0, 1.0], dtype=torch.float32)
    s, i, r = simulate_sir(torch.tensor(2.0), 0.5, 100.0, 4.0, t, r0=6.0)
    assert s.dtype == torch.float32
    np.testing.assert_allclose([s[0].item(), i[0].item(), r[0].item()], [90.0, 4.0, 6.0], rtol=1e-6)


def test_time_varying_beta_matches_scipy():
    def beta(time):  # transmission halves around day 10 (an intervention)
        return 1.2 - 0.6 * torch.sigmoid(3.0 * (torch.as_tensor(time) - 10.0))

    t = np.arange(0.0, 41.0)
    reference = _reference_sir(lambda time: beta(time).item(), 0.3, 2e3, 1.0, t)
    ours = simulate_sir(beta, 0.3, 2e3, 1.0, torch.tensor(t))
    for mine, theirs in zip(ours, reference):
        big = np.abs(theirs) > 1e-3
        np.testing.assert_allclose(mine.numpy()[big], theirs[big], rtol=1e-6)


def test_gradients_match_the_sensitivity_equations():
    t = np.arange(1.0, 15.0)
    beta, gamma = torch.tensor(1.7, requires_grad=True), torch.tensor(0.5, requires_grad=True)
    _, infectious, _ = simulate_sir(beta, gamma, 763.0, 1.0, torch.tensor(t))
    reference = _reference_sir(1.7, 0.5, 763.0, 1.0, t, sensitivities=True)
    for k in (2, 5, 9, 13):
        d_beta, d_gamma = torch.autograd.grad(infectious[k], (beta, gamma), retain_graph=True)
        np.testing.assert_allclose([d_beta.item(), d_gamma.item()], reference[[4, 6], k], rtol=1e-5)


def test_gradcheck():
    params = (torch.tensor(1.3, dtype=torch.float64, requires_grad=True),
              torch.tensor(0.4, dtype=torch.float64, requires_grad=True),
              torch.tensor(2.0, dtype=torch.float64, requires_grad=True))
    t = torch.tensor([0.5, 3.0, 7.0], dtype=torch.float64)

    def infectious(beta, gamma, i0):
        # a tight tolerance keeps the adaptive step sequence from shifting under the probes
        return simulate_sir(beta, gamma, 200.0, i0, t, rtol=1e-12).I

    assert torch.autograd.gradcheck(infectious, params)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"beta": -1.0}, "beta must be >= 0"),
        ({"gamma": -0.1}, "gamma must be >= 0"),
        ({"i0": 0.0}, "i0 must be > 0"),
        ({"i0": 60.0, "r0": 40.0}, "smaller than population"),
        ({"r0": -1.0}, "r0"),
        ({"population": 0.0}, "population must be > 0"),
        ({"t": [2.0, 1.0]}, "non-decreasing"),
        ({"t": [-1.0, 1.0]}, ">= 0"),
        ({"t": [[1.0]]}, "1-D"),
        ({"beta": float("nan")}, "beta must be finite"),
        ({"rtol": 0.0}, "rtol"),
    ],
)
def test_simulate_sir_rejects_bad_input(kwargs, message):
    args = {"beta": 1.0, "gamma": 0.5, "population": 100.0, "i0": 1.0, "t": [1.0, 2.0]} | kwargs
    with pytest.raises(ValueError, match=message):
        simulate_sir(**args)


def _outbreak(seed, likelihood, observed, beta=1.6, gamma=0.5, population=2000.0, i0=2.0, days=20):
    """Counts from a known SIR with Poisson or negative-binomial (size 20) noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(1.0, days + 1)
    s, i, _ = _reference_sir(beta, gamma, population, i0, np.concatenate([[0.0], t]))
    mean = i[1:] if observed == "prevalence" else -np.diff(s)
    if likelihood == "poisson":
        return t, rng.poisson(mean)
    size = 20.0
    return t, rng.negative_binomial(size, size / (size + mean))


def _check_recovery_and_coverage(fits: list[SIRFit], truth: dict[str, float], rtol: float):
    for name, value in truth.items():
        estimates = np.array([getattr(fit, name) for fit in fits])
        np.testing.assert_allclose(estimates, value, rtol=rtol if name != "i0" else 0.6)
        covered = sum(fit.ci[name][0] <= value <= fit.ci[name][1] for fit in fits)
        assert covered >= len(fits) - 1, f"{name}: covered {covered}/{len(fits)}"


TRUTH = {"beta": 1.6, "gamma": 0.5, "r0": 3.2}


def test_fit_recovers_poisson_prevalence_with_covering_intervals():
    fits = [fit_sir(*_outbreak(seed, "poisson", "prevalence"), 2000.0, i0=2.0) for seed in range(5)]
    _check_recovery_and_coverage(fits, TRUTH, rtol=0.1)
    assert all(fit.dispersion is None and "i0" not in fit.ci for fit in fits)


def test_fit_recovers_negbin_prevalence_and_i0_with_covering_intervals():
    fits = [
        fit_sir(*_outbreak(seed, "negbin", "prevalence", days=14), 2000.0, likelihood="negbin")
        for seed in range(4)
    ]
    _check_recovery_and_coverage(fits, TRUTH | {"i0": 2.0}, rtol=0.15)
    assert all(5.0 < fit.dispersion < 200.0 for fit in fits)  # the truth is 20


def test_fit_to_incidence_covers_the_truth():
    # new infections per day pin gamma down less well than prevalence: wider intervals
    fits = [
        fit_sir(*_outbreak(seed, "poisson", "incidence", days=14), 2000.0, "incidence", i0=2.0)
        for seed in range(4)
    ]
    _check_recovery_and_coverage(fits, TRUTH, rtol=0.35)


def test_fitted_curve_and_forecast_are_the_model_means():
    t, y = _outbreak(0, "poisson", "incidence")
    fit = fit_sir(t[:10], y[:10], 2000.0, observed="incidence", i0=2.0)
    s, _, _ = _reference_sir(fit.beta, fit.gamma, 2000.0, 2.0, np.concatenate([[0.0], t]))
    np.testing.assert_allclose(fit.forecast(t), -np.diff(s), rtol=1e-6)
    np.testing.assert_allclose(fit.fitted, -np.diff(s)[:10], rtol=1e-6)


def test_boarding_school_estimates_land_in_the_published_range():
    flu = boarding_school_flu()
    fit = fit_sir(flu.day, flu.in_bed, flu.population, likelihood="negbin", i0=1.0)
    # published for these data: beta ~ 1.7/day, gamma ~ 0.45-0.55/day, R0 ~ 3.2-3.7
    assert 1.6 < fit.beta < 1.85 and 0.45 < fit.gamma < 0.56 and 3.0 < fit.r0 < 3.8
    for name in ("beta", "gamma", "r0"):
        low, high = fit.ci[name]
        assert low < getattr(fit, name) < high


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"y": [1, -2, 3]}, "non-negative integer counts"),
        ({"y": [1, 2.5, 3]}, "non-negative integer counts"),
        ({"y": [1, 2]}, "same length"),
        ({"population": 2}, "at least the largest count"),
        ({"population": 5, "observed": "incidence"}, "total of the counts"),
        ({"t": [0.0, 1.0, 2.0]}, r"strictly increasing times after t0 = 0"),
        ({"t": [5.0, 6.0, 7.0], "t0": 5.0}, r"strictly increasing times after t0 = 5"),
        ({"t0": float("nan")}, "t0 must be a finite number"),
        ({"y": [0, 0, 0]}, "no positive count"),
        ({"y": [True, False, True]}, "non-negative integer counts, got bool"),
        ({"population": "100"}, "population must be a positive number"),
        ({"population": [100, 200]}, "population must be a positive number"),
        ({"t": [1.0, 1.0, 2.0]}, "strictly increasing"),
        ({"observed": "deaths"}, "observed must be one of"),
        ({"likelihood": "gaussian"}, "likelihood must be one of"),
        ({"i0": 0.0}, "i0 must be in"),
        ({"interval": "bootstrap"}, "interval must be one of"),
        ({"y": [1, float("nan"), 3]}, "non-negative integer counts"),
    ],
)
def test_fit_sir_rejects_bad_input(change, message):
    args = {"t": [1.0, 2.0, 3.0], "y": [1, 2, 3], "population": 100} | change
    with pytest.raises(ValueError, match=message):
        fit_sir(**args)


def test_a_shifted_clock_with_its_t0_changes_nothing():
    # times on a clock that starts long before the outbreak (days of the year): with t0 moved with
    # them the fit is the same; without it, i0 hits its floor and the warning says to give t0
    t = np.arange(1.0, 50.0)
    y = np.round(simulate_sir(0.7, 0.25, 20_000, 3.0, t).I)
    base = fit_sir(t, y, 20_000, interval="wald")
    shifted = fit_sir(t + 60.0, y, 20_000, interval="wald", t0=60.0)
    for name in ("beta", "gamma", "r0", "i0"):
        assert getattr(shifted, name) == pytest.approx(getattr(base, name), rel=1e-9)
        assert shifted.ci[name] == pytest.approx(base.ci[name], rel=1e-9)
    assert shifted.t[0] == 61.0 and shifted.t0 == 60.0
    np.testing.assert_allclose(shifted.forecast(t + 60.0), base.forecast(t), rtol=1e-9)
    np.testing.assert_allclose(shifted.trajectory([60.0, 75.5]).I, base.trajectory([0.0, 15.5]).I, rtol=1e-9)
    with pytest.raises(ValueError, match=r"times >= 60"):
        shifted.forecast([59.0, 61.0])
    with pytest.warns(RuntimeWarning, match=r"i0 ran to its floor.*pass t0"):
        fit_sir(t + 60.0, y, 20_000, interval="wald")


def test_times_may_be_a_reversed_numpy_view():
    # torch refuses numpy's negative strides; the times are copied first
    t = np.arange(20.0, 0.0, -1.0)[::-1]
    y = np.round(simulate_sir(0.6, 0.2, 1_000, 2.0, np.arange(1.0, 21.0)).I)
    np.testing.assert_array_equal(simulate_sir(0.6, 0.2, 1_000, 2.0, t).I, simulate_sir(0.6, 0.2, 1_000, 2.0, t.copy()).I)
    assert fit_sir(t, y, 1_000, interval="wald").beta == fit_sir(t.copy(), y, 1_000, interval="wald").beta
    with pytest.raises(ValueError, match="non-decreasing"):
        simulate_sir(0.6, 0.2, 1_000, 2.0, t[::-1])


def test_unidentified_rate_is_flagged_not_given_an_interval():
    # five days of constant exponential growth fix beta - gamma but not gamma itself
    flu = boarding_school_flu()
    with pytest.warns(RuntimeWarning, match="gamma ran to the edge"):
        fit = fit_sir(flu.day[:5], flu.in_bed[:5], flu.population, i0=1.0)
    assert np.isnan(fit.ci["gamma"]).all() and np.isnan(fit.ci["r0"]).all()
    assert np.isfinite(fit.ci["beta"]).all()


# --- simulate_sir with time-varying rates: bad values fail fast, naming the rate and the time ---


@pytest.mark.parametrize("which", ["beta", "gamma"])
@pytest.mark.parametrize(
    ("bad", "message"),
    [(float("nan"), r"must be finite, got nan at t = 6\.\d"), (-0.2, r"must be >= 0, got -0\.2 at t = 6\.\d")],
)
def test_callable_rate_that_turns_bad_raises_a_value_error_naming_it_and_the_time(which, bad, message):
    def rate(time):  # fine until day 6.5, then a bug
        return torch.where(torch.as_tensor(time) < 6.5, torch.tensor(0.6), torch.tensor(bad))

    args = {"beta": 0.9, "gamma": 0.3} | {which: rate}
    with pytest.raises(ValueError, match=which + r"\(t\) " + message):
        simulate_sir(args["beta"], args["gamma"], 1000.0, 5.0, np.arange(0.0, 30.0))


def test_callable_rate_returning_a_python_float_or_a_batch_is_checked_too():
    with pytest.raises(ValueError, match=r"beta\(t\) must be finite, got \[nan, 1\.0\] at t = 0"):
        simulate_sir(lambda time: torch.tensor([float("nan"), 1.0]), 0.3, 1000.0, 5.0, [1.0])
    with pytest.raises(ValueError, match=r"gamma\(t\) must be >= 0"):
        simulate_sir(0.5, lambda time: -1.0, 1000.0, 5.0, [1.0])


def test_time_varying_gamma_matches_scipy():
    def gamma(time):  # treatment shortens the illness from day 15
        return 0.2 + 0.3 * torch.sigmoid(2.0 * (torch.as_tensor(time, dtype=torch.float64) - 15.0))

    t = np.arange(0.0, 41.0)

    def rhs(time, y):
        s, i, _ = y
        g = gamma(time).item()
        return [-0.8 * s * i / 3e3, 0.8 * s * i / 3e3 - g * i, g * i]

    reference = solve_ivp(rhs, (0.0, 40.0), [3e3 - 2.0, 2.0, 0.0], t_eval=t, method="DOP853",
                          rtol=1e-10, atol=1e-9).y
    ours = simulate_sir(0.8, gamma, 3e3, 2.0, torch.tensor(t))
    for mine, theirs in zip(ours, reference):
        big = np.abs(theirs) > 1e-3
        np.testing.assert_allclose(mine.numpy()[big], theirs[big], rtol=1e-6)


# --- fit_sir: the objective, the optimiser, convergence and coverage on outbreaks across the range ---


def _counts_from(mean, likelihood, size, rng):
    if likelihood == "poisson":
        return rng.poisson(mean)
    return rng.negative_binomial(size, size / (size + mean))


def _poisson_nll(beta, gamma, population, i0, t, y):
    """Negative log-likelihood of prevalence counts by scipy alone (solve_ivp, scipy.stats)."""
    _, i, _ = _reference_sir(beta, gamma, population, i0, np.concatenate([[0.0], t]))
    return -stats.poisson.logpmf(y, i[1:]).sum()


def test_objective_gradient_and_information_match_scipy():
    from mathkit.epi.objective import SIRObjective

    rng = np.random.default_rng(3)
    t = np.arange(1.0, 31.0)
    truth = (0.9, 0.3, 5000.0, 4.0)
    _, i, _ = _reference_sir(*truth, np.concatenate([[0.0], t]))
    y = rng.poisson(i[1:])
    objective = SIRObjective(torch.tensor(t), torch.as_tensor(y, dtype=torch.float64), 5000.0,
                             "prevalence", False, 4.0)
    theta = np.log([0.95, 0.28])  # away from the optimum, so the gradient is not zero
    derivatives = objective.derivatives(theta, observed_information=True)
    # the value within the resolution the objective claims (its solves are accurate to 1e-7)
    assert derivatives.value == pytest.approx(_poisson_nll(0.95, 0.28, 5000.0, 4.0, t, y),
                                              abs=derivatives.resolution)
    # the gradient against central differences of scipy's likelihood, in the log-parameters
    h = 1e-5
    reference_gradient = [
        (_poisson_nll(*np.exp(theta + h * e), 5000.0, 4.0, t, y)
         - _poisson_nll(*np.exp(theta - h * e), 5000.0, 4.0, t, y)) / (2 * h)
        for e in np.eye(2)
    ]
    np.testing.assert_allclose(derivatives.gradient, reference_gradient, rtol=1e-5)
    # the observed information against autograd's Hessian through the solver (a separate path)

    def nll(log_rates):
        infectious = simulate_sir(log_rates[0].exp(), log_rates[1].exp(), 5000.0, 4.0, torch.tensor(t)).I
        return -torch.distributions.Poisson(infectious).log_prob(torch.as_tensor(y, dtype=torch.float64)).sum()

    hessian = torch.autograd.functional.hessian(nll, torch.tensor(theta)).numpy()
    np.testing.assert_allclose(derivatives.information, hessian, rtol=1e-4)
    # and the Gauss-Newton information is J' diag(mu) J with J from scipy's sensitivity equations
    reference = _reference_sir(0.95, 0.28, 5000.0, 4.0, np.concatenate([[0.0], t]), sensitivities=True)
    mean = reference[1, 1:]
    jacobian = np.stack([reference[4, 1:] * 0.95, reference[6, 1:] * 0.28], 1) / mean[:, None]
    gauss_newton = objective.derivatives(theta).information
    np.testing.assert_allclose(gauss_newton, jacobian.T @ (mean[:, None] * jacobian), rtol=1e-5)


def _rosenbrock(x):
    value = (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2
    gradient = np.array([-2 * (1 - x[0]) - 400 * x[0] * (x[1] - x[0] ** 2), 200 * (x[1] - x[0] ** 2)])
    hessian = np.array([[2 - 400 * (x[1] - 3 * x[0] ** 2), -400 * x[0]], [-400 * x[0], 200.0]])
    jacobian = np.array([[-1.0, 0.0], [-20 * x[0], 10.0]])  # of the residuals (1 - x0, 10 (x1 - x0^2))
    return value, gradient, hessian, 2 * jacobian.T @ jacobian


@pytest.mark.parametrize("upper", [2.0, 0.5])  # the optimum (1, 1) inside the box, or cut off by it
def test_levenberg_marquardt_finds_scipys_bounded_minimum(upper):
    from mathkit.epi.optimise import Derivatives, levenberg_marquardt

    def evaluate(x):
        value, gradient, _, gauss_newton = _rosenbrock(x)
        return Derivatives(value, gradient, gauss_newton, 0.0)

    lower, upper_bounds = np.array([-2.0, -2.0]), np.array([upper, 2.0])
    result = levenberg_marquardt(evaluate, np.array([-1.2, 1.0]), lower, upper_bounds, tol=1e-8)
    reference = optimize.minimize(lambda x: _rosenbrock(x)[:2], [-1.2, 1.0], jac=True, method="L-BFGS-B",
                                  bounds=list(zip(lower, upper_bounds)), options={"ftol": 1e-15, "gtol": 1e-12})
    assert result.converged and result.n_iterations > 1
    np.testing.assert_allclose(result.x, reference.x, atol=1e-6)


def test_an_optimisation_stopped_early_warns_and_says_so():
    from mathkit.epi import ConvergenceWarning
    from mathkit.epi.optimise import Derivatives, minimise_from_starts

    def evaluate(x):
        value, gradient, _, gauss_newton = _rosenbrock(x)
        return Derivatives(value, gradient, gauss_newton, 0.0)

    bounds = np.array([-2.0, -2.0]), np.array([2.0, 2.0])
    starts = [np.array([-1.2, 1.0]), np.array([1.5, -1.5])]
    with pytest.warns(ConvergenceWarning, match="did not converge from 2 starts"):
        runs = minimise_from_starts(evaluate, starts, *bounds, max_iterations=2)
    assert issubclass(ConvergenceWarning, Warning) and not runs.best.converged
    assert runs.n_starts == 2 and runs.n_converged == 0


def _failing_case(seed):
    """60 daily prevalence counts, N = 5,000, R0 in [2, 3.3], i0 known: fits that once stopped at their start."""
    rng = np.random.default_rng(seed)
    r0, gamma, i0 = rng.uniform(2.0, 3.3), rng.uniform(0.1, 0.5), float(rng.integers(1, 20))
    t = np.arange(1.0, 61.0)
    _, i, _ = _reference_sir(r0 * gamma, gamma, 5000.0, i0, np.concatenate([[0.0], t]))
    return {"beta": r0 * gamma, "gamma": gamma, "r0": r0}, t, rng.poisson(i[1:]), i0


def test_fit_converges_on_outbreaks_that_once_stopped_at_the_grid_start():
    misses, checks = 0, 0
    for seed in range(8):
        truth, t, y, i0 = _failing_case(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no convergence or identifiability warning
            fit = fit_sir(t, y, 5000.0, i0=i0)
        assert fit.converged and fit.n_iterations >= 1
        assert not (np.isclose(fit.beta, 0.7) and np.isclose(fit.gamma, 0.2))
        for name, value in truth.items():
            assert getattr(fit, name) == pytest.approx(value, rel=0.05)
            low, high = fit.ci[name]
            misses += not low <= value <= high
            checks += 1
    assert misses <= 3, f"{misses} of {checks} intervals missed the truth"


def test_fit_is_equivariant_under_a_change_of_time_unit():
    truth, t, y, i0 = _failing_case(1)
    in_days = fit_sir(t, y, 5000.0, i0=i0)
    in_weeks = fit_sir(t / 7.0, y, 5000.0, i0=i0)
    assert in_weeks.beta == pytest.approx(7 * in_days.beta, rel=1e-5)
    assert in_weeks.gamma == pytest.approx(7 * in_days.gamma, rel=1e-5)
    assert in_weeks.r0 == pytest.approx(in_days.r0, rel=1e-5)
    np.testing.assert_allclose(in_weeks.ci["r0"], in_days.ci["r0"], rtol=1e-4)


def _random_outbreak(rng, observed):
    """An outbreak drawn across the range: N from 300 to 1e6, R0 from 1.3 to 8, any count law, i0 given or not."""
    population = float(rng.choice([300, 3_000, 30_000, 1_000_000]))
    likelihood = str(rng.choice(["poisson", "negbin"]))
    fit_i0 = bool(rng.integers(2))
    r0 = float(np.exp(rng.uniform(np.log(1.3), np.log(8.0))))
    gamma = float(1 / rng.uniform(2.0, 10.0))
    i0 = float(max(1.0, np.round(population * 10 ** rng.uniform(-4, -2))))
    size = float(rng.uniform(5.0, 50.0))
    # observe until the number infectious is back below a quarter of its peak, <= 40 reports
    days = np.arange(0.0, np.ceil(3 * (np.log(population / i0) + 3) / (gamma * (r0 - 1)) + 10 / gamma))
    _, i, _ = _reference_sir(r0 * gamma, gamma, population, i0, days)
    peak = int(i.argmax())
    last = peak + int(np.argmax(i[peak:] < 0.25 * i[peak]))
    step = max(1, int(np.ceil(last / 40)))
    t = np.arange(step, last + 1, step, dtype=float)
    s, i, _ = _reference_sir(r0 * gamma, gamma, population, i0, np.concatenate([[0.0], t]))
    mean = i[1:] if observed == "prevalence" else -np.diff(s)
    y = _counts_from(mean, likelihood, size, rng)
    while (y.max() if observed == "prevalence" else y.sum()) > population:
        y = _counts_from(mean, likelihood, size, rng)
    truth = {"beta": r0 * gamma, "gamma": gamma, "r0": r0}
    return truth, dict(t=t, y=y, population=population, observed=observed, likelihood=likelihood,
                       i0=None if fit_i0 else i0)


@pytest.mark.slow
def test_quick_coverage_study_gives_about_95_percent():
    # 40 series, prevalence and incidence in turn (the full study is benchmarks/sir_coverage.py;
    # incidence series with negative-binomial noise are where Wald intervals fell short, 79-80%);
    # each interval's coverage must lie within the 0.1% and 99.9% quantiles of Binomial(40, 0.95)
    rng = np.random.default_rng(11)
    covered = {name: 0 for name in ("beta", "gamma", "r0")}
    n = 40
    for k in range(n):
        truth, data = _random_outbreak(rng, ("prevalence", "incidence")[k % 2])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            fit = fit_sir(**data)
        assert fit.converged
        for name, value in truth.items():
            low, high = fit.ci[name]
            covered[name] += bool(low <= value <= high)
    low, high = stats.binom.ppf([0.001, 0.999], n, 0.95)
    for name, count in covered.items():
        assert low <= count <= high, f"{name}: {count}/{n} intervals cover the truth"


def test_profile_likelihood_interval_matches_a_brute_force_profile_by_scipy():
    # a small outbreak, reported every other day
    rng = np.random.default_rng(4)
    t = np.arange(2.0, 41.0, 2.0)
    _, i, _ = _reference_sir(0.6, 0.25, 300.0, 2.0, np.concatenate([[0.0], t]))
    y = rng.poisson(i[1:])
    fit = fit_sir(t, y, 300.0, i0=2.0, interval="profile")
    wald = fit_sir(t, y, 300.0, i0=2.0)
    best = _poisson_nll(fit.beta, fit.gamma, 300.0, 2.0, t, y)
    threshold = stats.chi2.ppf(0.95, 1) / 2

    def excess(log_beta):  # profile deviance / 2 minus its 95% threshold, gamma re-fitted by scipy
        inner = optimize.minimize_scalar(
            lambda log_gamma: _poisson_nll(np.exp(log_beta), np.exp(log_gamma), 300.0, 2.0, t, y),
            bracket=(np.log(fit.gamma) - 0.1, np.log(fit.gamma) + 0.1), tol=1e-10)
        return inner.fun - best - threshold

    centre = np.log(fit.beta)
    low = optimize.brentq(excess, centre - 1.0, centre, xtol=1e-8)
    high = optimize.brentq(excess, centre, centre + 1.0, xtol=1e-8)
    np.testing.assert_allclose(fit.ci["beta"], np.exp([low, high]), rtol=2e-3)
    assert wald.beta == fit.beta and fit.ci["r0"][0] < fit.r0 < fit.ci["r0"][1]

    def excess_r0(log_r0):  # the same for R0: log beta = log R0 + log gamma, gamma re-fitted
        inner = optimize.minimize_scalar(
            lambda log_gamma: _poisson_nll(np.exp(log_r0 + log_gamma), np.exp(log_gamma), 300.0, 2.0, t, y),
            bounds=(np.log(fit.gamma) - 1.0, np.log(fit.gamma) + 1.0), method="bounded",
            options={"xatol": 1e-9})
        return inner.fun - best - threshold

    low, high = np.log(fit.ci["r0"])  # bracket each end of ours by 0.05 on the log scale
    low = optimize.brentq(excess_r0, low - 0.05, low + 0.05, xtol=1e-8)
    high = optimize.brentq(excess_r0, high - 0.05, high + 0.05, xtol=1e-8)
    np.testing.assert_allclose(fit.ci["r0"], np.exp([low, high]), rtol=2e-3)
    # the default is the profile interval
    assert fit_sir(t, y, 300.0, i0=2.0).ci == fit.ci


def _independent_poisson(counts: list[np.ndarray]):
    """Derivatives of -log L for independent Poisson samples with rates exp(theta_j)."""
    from mathkit.epi.optimise import Derivatives

    sizes = np.array([len(c) for c in counts], dtype=float)
    totals = np.array([c.sum() for c in counts], dtype=float)

    def evaluate(theta):
        rate = np.exp(theta)
        return Derivatives(float(sizes @ rate - totals @ theta), sizes * rate - totals, np.diag(sizes * rate), 0.0)

    return evaluate, np.log(totals / sizes)


@pytest.mark.parametrize("df", [None, 4.0])  # the normal quantile, and Student's t on 4 df
def test_profile_interval_of_a_poisson_rate_ratio_matches_the_closed_form(df):
    from mathkit.epi.intervals import interval_quantile, profile_interval

    rng = np.random.default_rng(5)
    counts = [rng.poisson(3.0, 6), rng.poisson(8.0, 4)]
    evaluate, theta = _independent_poisson(counts)
    quantile = interval_quantile(0.95, df)
    assert quantile == pytest.approx(stats.norm.ppf(0.975) if df is None else stats.t.ppf(0.975, df))
    information = evaluate(theta).information
    bounds = np.full(2, -30.0), np.full(2, 30.0)
    (n1, n2), (s1, s2) = map(len, counts), (counts[0].sum(), counts[1].sum())

    # rate 1 alone: the other is independent, so the profile is the one-sample deviance
    def deviance_rate(log_rate):
        rate = np.exp(log_rate)
        return 2 * (s1 * np.log(s1 / (n1 * rate)) - s1 + n1 * rate) - quantile**2

    ends = profile_interval(evaluate, theta, information, np.array([1.0, 0.0]), quantile, *bounds, tol=1e-6)
    reference = [optimize.brentq(deviance_rate, theta[0] - 5, theta[0]),
                 optimize.brentq(deviance_rate, theta[0], theta[0] + 5)]
    np.testing.assert_allclose(ends, reference, atol=1e-5)

    # the log rate ratio: given the total, the first sample's count is binomial with
    # p = n1 rho / (n1 rho + n2), rho the ratio, so the profile deviance is the binomial one
    def deviance_ratio(log_ratio):
        p = n1 * np.exp(log_ratio) / (n1 * np.exp(log_ratio) + n2)
        return -2 * (stats.binom.logpmf(s1, s1 + s2, p) - stats.binom.logpmf(s1, s1 + s2, s1 / (s1 + s2))) - quantile**2

    centre = theta[0] - theta[1]
    ends = profile_interval(evaluate, theta, information, np.array([1.0, -1.0]), quantile, *bounds, tol=1e-6)
    reference = [optimize.brentq(deviance_ratio, centre - 5, centre), optimize.brentq(deviance_ratio, centre, centre + 5)]
    np.testing.assert_allclose(ends, reference, atol=1e-5)


@pytest.mark.parametrize("height", [1.0, 5.0])
def test_profile_interval_is_open_where_the_likelihood_does_not_fall_far_enough(height):
    # -log L = h (1 - exp(-x^2 / 2)) + y^2 / 2: a bump of height h over a plateau; the profile
    # deviance of x rises to 2h, so the 95% interval is the whole line when 2h < 1.96^2 and
    # |x| <= sqrt(-2 log(1 - 1.96^2 / (2h))) otherwise
    from mathkit.epi.intervals import profile_interval
    from mathkit.epi.optimise import Derivatives

    def evaluate(theta):
        x, y = theta
        bump = np.exp(-x**2 / 2)
        curvature = abs(height * (1 - x**2) * bump) + 1e-12
        return Derivatives(height * (1 - bump) + y**2 / 2, np.array([height * x * bump, y]),
                           np.diag([curvature, 1.0]), 0.0)

    theta = np.zeros(2)
    quantile = stats.norm.ppf(0.975)
    ends = profile_interval(evaluate, theta, np.diag([height, 1.0]), np.array([1.0, 0.0]), quantile,
                            np.full(2, -40.0), np.full(2, 40.0), tol=1e-6)
    if 2 * height < quantile**2:
        assert ends == (-np.inf, np.inf)
    else:
        half = np.sqrt(-2 * np.log(1 - quantile**2 / (2 * height)))
        np.testing.assert_allclose(ends, [-half, half], atol=1e-5)


def test_negative_binomial_intervals_use_students_t_on_the_residual_degrees_of_freedom():
    t, y = _outbreak(2, "negbin", "incidence", days=12)
    fit = fit_sir(t, y, 2000.0, "incidence", "negbin", i0=2.0, interval="wald")
    q = stats.t.ppf(0.975, len(y) - 3)  # beta, gamma and the size
    for j, name in enumerate(("beta", "gamma", "dispersion")):
        low, high = fit.ci[name]
        assert np.log(high / low) / 2 == pytest.approx(q * np.sqrt(fit.cov[j, j]), rel=1e-9)
    poisson = fit_sir(t, y, 2000.0, "incidence", i0=2.0, interval="wald")
    low, high = poisson.ci["beta"]
    assert np.log(high / low) / 2 == pytest.approx(stats.norm.ppf(0.975) * np.sqrt(poisson.cov[0, 0]), rel=1e-9)


def test_objective_gradient_for_incidence_negbin_and_fitted_i0_matches_scipy():
    from mathkit.epi.objective import SIRObjective

    rng = np.random.default_rng(8)
    t = np.arange(2.0, 41.0, 2.0)
    s, _, _ = _reference_sir(0.7, 0.25, 2e4, 10.0, np.concatenate([[0.0], t]))
    y = rng.negative_binomial(15.0, 15.0 / (15.0 - np.diff(s)))

    def scipy_nll(log_params):  # log beta, log gamma, log i0, log size
        beta, gamma, i0, size = np.exp(log_params)
        s, _, _ = _reference_sir(beta, gamma, 2e4, i0, np.concatenate([[0.0], t]))
        mean = -np.diff(s)
        return -stats.nbinom.logpmf(y, size, size / (size + mean)).sum()

    objective = SIRObjective(torch.tensor(t), torch.as_tensor(y, dtype=torch.float64), 2e4,
                             "incidence", True, None)
    theta = np.log([0.72, 0.26, 8.0, 10.0])
    derivatives = objective.derivatives(theta)
    assert derivatives.value == pytest.approx(scipy_nll(theta), abs=derivatives.resolution)
    h = 1e-5
    reference = [(scipy_nll(theta + h * e) - scipy_nll(theta - h * e)) / (2 * h) for e in np.eye(4)]
    np.testing.assert_allclose(derivatives.gradient, reference, rtol=1e-4)


def test_a_solve_over_its_step_budget_raises_the_budget_error_and_one_within_it_matches_scipy():
    from mathkit.epi.solver import SolveBudgetError, solve_log_sir

    # a fast outbreak (R0 = 10^4, over within a fraction of the first day) needs far more steps
    # than a slow one; within its budget the solve matches scipy's implicit Radau solver
    t = torch.arange(1.0, 41.0, dtype=torch.float64)
    fast = [torch.tensor(v, dtype=torch.float64) for v in (1e4, 1.0, 300.0, 1.0, 0.0)]
    with pytest.raises(SolveBudgetError, match="more than max_steps = 60 steps") as caught:
        solve_log_sir(*fast, t, 1e-7, max_steps=60)
    assert isinstance(caught.value, RuntimeError)  # callers that catch RuntimeError still do
    state = solve_log_sir(*fast, t, 1e-7, max_steps=2_000)

    def rhs(time, y):
        s, i = y
        return [-1e4 * s * i / 300.0, 1e4 * s * i / 300.0 - i]

    reference = solve_ivp(rhs, (0.0, 40.0), [299.0, 1.0], method="Radau", t_eval=t.numpy(), rtol=1e-10,
                          atol=1e-30)
    np.testing.assert_allclose(state[:, 0].exp().numpy(), reference.y[1], rtol=1e-5)
    # the slow outbreak of the same length is well within that small budget
    slow = [torch.tensor(v, dtype=torch.float64) for v in (0.5, 0.25, 300.0, 1.0, 0.0)]
    solve_log_sir(*slow, t, 1e-7, max_steps=60)


@pytest.mark.parametrize("bad", ["beta", "i0"])
def test_a_solve_with_non_finite_rates_or_state_stops_at_once_not_at_the_budget(bad):
    from mathkit.epi.solver import SolveBudgetError, solve_log_sir

    values = {"beta": 0.5, "gamma": 0.25, "population": 300.0, "i0": 1.0, "r0": 0.0, bad: np.nan}
    args = [torch.tensor(values[k], dtype=torch.float64) for k in ("beta", "gamma", "population", "i0", "r0")]
    with pytest.raises(RuntimeError, match="not finite") as caught:
        solve_log_sir(*args, torch.arange(1.0, 41.0, dtype=torch.float64), 1e-7, max_steps=10**9)
    assert not isinstance(caught.value, SolveBudgetError)


def test_levenberg_marquardt_refuses_points_where_the_derivatives_are_not_finite():
    from mathkit.epi.optimise import Derivatives, levenberg_marquardt, minimise_from_starts

    # (x - 3)^2 / 2 with an information ten times too small (long first steps); beyond x = 4 the
    # objective "cannot be computed": a low value with NaN derivatives, which must not be taken
    def evaluate(x):
        if x[0] > 4.0:
            return Derivatives(-1.0, np.array([np.nan]), np.array([[np.inf]]), 0.0)
        return Derivatives(float((x[0] - 3.0) ** 2 / 2), x - 3.0, np.array([[0.1]]), 0.0)

    bounds = np.array([-10.0]), np.array([10.0])
    result = levenberg_marquardt(evaluate, np.array([0.0]), *bounds, tol=1e-10)
    assert result.converged and result.x[0] == pytest.approx(3.0, abs=1e-9)
    with pytest.raises(RuntimeError, match="not finite at the start"):
        levenberg_marquardt(evaluate, np.array([5.0]), *bounds)
    # a start where it cannot be computed counts as a run that stopped there
    runs = minimise_from_starts(evaluate, [np.array([5.0]), np.array([0.0])], *bounds, n_explore=2, tol=1e-10)
    assert runs.best_start == 1 and runs.n_converged == 1 and runs.best.x[0] == pytest.approx(3.0, abs=1e-9)


# a short incidence series with negative-binomial counts (an outbreak of the coverage study, seed
# 2026, index 47: N = 300, i0 = 1, beta 1.34, gamma 0.346, size 10.1): its likelihood has a long
# ridge, and the profile of beta reaches its lower end only with gamma re-fitted far below its estimate
_RIDGE_COUNTS = np.array([2, 4, 14, 35, 25, 57, 20, 34, 11, 18, 3, 3, 2, 0])


def _negbin_incidence_nll(beta, gamma, size, t, y, population=300.0, i0=1.0):
    """Negative log-likelihood of negative-binomial incidence counts by scipy alone."""
    s, _, _ = _reference_sir(beta, gamma, population, i0, np.concatenate([[0.0], t]))
    mean = np.maximum(-np.diff(s), 1e-300)
    return -stats.nbinom.logpmf(y, size, size / (size + mean)).sum()


@pytest.mark.slow
# the scipy grid visits rates where the expected counts underflow (-log L = inf): Brent's steps warn
@pytest.mark.filterwarnings("ignore:invalid value encountered in scalar subtract:RuntimeWarning")
def test_profile_interval_that_needs_a_wide_reach_matches_a_brute_force_profile():
    t = np.arange(1.0, 15.0)
    y = _RIDGE_COUNTS
    fit = fit_sir(t, y, 300.0, "incidence", "negbin", i0=1.0)
    q = stats.t.ppf(0.975, len(y) - 3)
    best = _negbin_incidence_nll(fit.beta, fit.gamma, fit.dispersion, t, y)

    def profile(log_beta):  # min over gamma and the size: a grid over log gamma, then Brent's method
        def over_size(log_gamma):
            s, _, _ = _reference_sir(np.exp(log_beta), np.exp(log_gamma), 300.0, 1.0, np.concatenate([[0.0], t]))
            mean = np.maximum(-np.diff(s), 1e-300)
            inner = optimize.minimize_scalar(
                lambda rho: -stats.nbinom.logpmf(y, np.exp(rho), np.exp(rho) / (np.exp(rho) + mean)).sum(),
                bounds=(np.log(1e-3), np.log(1e8)), method="bounded", options={"xatol": 1e-8})
            return inner.fun

        grid = np.linspace(np.log(1e-4), np.log(20.0), 41)
        values = [over_size(g) for g in grid]
        k = int(np.clip(np.argmin(values), 1, len(grid) - 2))
        inner = optimize.minimize_scalar(over_size, bounds=(grid[k - 1], grid[k + 1]), method="bounded",
                                         options={"xatol": 1e-8})
        return inner.fun, np.exp(inner.x)

    low = np.log(fit.ci["beta"][0])
    below, above = profile(low - 0.03), profile(low + 0.03)
    # the deviance crosses q^2 within 0.03 of our end (on the log scale), and scipy's root agrees
    assert 2 * (below[0] - best) > q**2 > 2 * (above[0] - best)
    root = optimize.brentq(lambda b: 2 * (profile(b)[0] - best) - q**2, low - 0.03, low + 0.03, xtol=1e-6)
    assert fit.ci["beta"][0] == pytest.approx(np.exp(root), rel=5e-3)
    # and the re-fitted gamma there is far beyond a factor 20 from its estimate: a search capped
    # at 20 (as before) stopped short of this end
    assert fit.gamma / profile(root)[1] > 20
