r"""Daily demand for a few products, with stock-outs that censor the sales.

The truth is known by construction. Product :math:`p` on day :math:`t` has a
demand drawn from a normal law truncated at zero,

.. math::

    D_{pt} \sim \mathcal{N}_{[0, \infty)}(\mu_{pt}, \sigma_{pt}^2), \qquad
    \mu_{pt} = \ell_p \, w_p(\mathrm{dow}_t) \, e^{g_p t / 365} \, u_p^{\mathrm{promo}_{pt}}, \qquad
    \sigma_{pt} = \kappa \sqrt{\mu_{pt}},

with a level :math:`\ell_p` (some products sell about one unit a day), a weekly
profile :math:`w_p`, a yearly growth rate :math:`g_p`, a promotion uplift
:math:`u_p` on promotion days, and Poisson-like noise (variance proportional to
the mean). Each morning the shelf is filled to
:math:`S_{pt} = k_p \, \ell_p e^{g_p t / 365} \eta_{pt}`, a level that follows the slow
trend but neither weekdays nor promotions, with delivery noise
:math:`\log\eta_{pt} \sim \mathcal{N}(0, 0.15^2)`; :math:`k_p` is chosen so that a
fraction ``stockout_rate`` of the days runs out. The shop observes only
:math:`\text{sales} = \min(D, S)`: sales are demand right-censored at the stock
(Tobin, *Econometrica* 1958).

With ``law="negative_binomial"`` the demand is instead an integer count with the same mean
:math:`\mu_{pt}`, :math:`D_{pt} \sim \mathrm{NB}(\text{mean } \mu_{pt},\ \text{variance } \mu_{pt} + \mu_{pt}^2 / r)`:
zeros on slow days, right-skewed, overdispersed (the law DeepAR fits to sales, Salinas et al. 2020).
It is the "wrong world" for a model that assumes the truncated normal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy import stats

from mathkit._checks import as_float_array
from mathkit.data._checks import as_generator, check_count, check_positive, check_probability

__all__ = ["DemandData", "simulate_demand"]

#: Relative weekday effect, Monday first (busy Fridays and Saturdays, quiet Sunday).
_WEEKLY_SHAPE = np.array([-0.15, -0.2, -0.1, 0.0, 0.2, 0.4, -0.15])
_DELIVERY_NOISE = 0.15
_FEATURE_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun", "promo")


@dataclass(frozen=True)
class DemandData:
    """Simulated demand, stock and sales, arrays of shape ``(n_products, n_days)``.

    Attributes:
        demand: true demand (what customers wanted), non-negative.
        sales: observed sales, ``min(demand, stock)``.
        stock: units on the shelf at the start of each day.
        stockout: boolean, the day ran out of stock (``demand > stock``, so ``sales == stock``).
        promo: boolean, a promotion ran that day (planned, so known in advance).
        day_of_week: integer day of the week, 0 = Monday (shape ``(n_days,)``).
        loc, scale: the truncated normal's parameters :math:`\\mu, \\sigma` per day (for
            ``law="negative_binomial"``: the law's mean and standard deviation).
        mean_demand: the expected demand :math:`E[D]` per day.
        splits: ``{"train", "val", "test"}`` -> ``slice`` of day indices, in time order.
    """

    demand: np.ndarray
    sales: np.ndarray
    stock: np.ndarray
    stockout: np.ndarray
    promo: np.ndarray
    day_of_week: np.ndarray
    loc: np.ndarray
    scale: np.ndarray
    mean_demand: np.ndarray
    splits: dict[str, slice]

    #: Column names of :meth:`features`.
    feature_names: ClassVar[tuple[str, ...]] = _FEATURE_NAMES

    @property
    def n_products(self) -> int:
        return self.demand.shape[0]

    @property
    def n_days(self) -> int:
        return self.demand.shape[1]

    def features(self) -> np.ndarray:
        """Calendar features known in advance: weekday one-hot and the promotion flag.

        Returns:
            float array of shape ``(n_products, n_days, 8)``, columns ``feature_names``.
        """
        weekday = np.eye(7)[self.day_of_week]
        weekday = np.broadcast_to(weekday, (self.n_products, self.n_days, 7))
        return np.concatenate([weekday, self.promo[..., None].astype(float)], axis=-1)


def _split_slices(n_days: int, fractions: tuple[float, float, float]) -> dict[str, slice]:
    fractions = np.asarray(fractions, dtype=float) if np.ndim(fractions) == 1 else np.array([np.nan])
    if fractions.size != 3 or not np.all(fractions > 0) or not np.isclose(fractions.sum(), 1.0):
        raise ValueError(f"split must be three positive fractions summing to 1, got {fractions.tolist()!r}")
    train_end = round(n_days * fractions[0])
    val_end = train_end + round(n_days * fractions[1])
    splits = {"train": slice(0, train_end), "val": slice(train_end, val_end), "test": slice(val_end, n_days)}
    empty = [name for name, days in splits.items() if days.stop <= days.start]
    if empty:
        raise ValueError(
            f"split {fractions.tolist()} of n_days={n_days} leaves the {' and '.join(empty)} period empty; "
            "use larger fractions or more days"
        )
    return splits


def simulate_demand(
    n_products: int = 6,
    n_days: int = 730,
    *,
    levels: np.ndarray | None = None,
    noise: float = 1.0,
    promo_prob: float = 0.1,
    stockout_rate: float = 0.2,
    split: tuple[float, float, float] = (0.6, 0.2, 0.2),
    rng: np.random.Generator | int | None = None,
    law: str = "truncated_normal",
    concentration: float = 3.0,
) -> DemandData:
    r"""Simulate daily demand, stock and censored sales for ``n_products`` products.

    The model is described in the module docstring. Per product, the weekly
    profile's amplitude is drawn from U(0.5, 1.5), the yearly growth
    :math:`g_p` from U(-0.1, 0.3) and the promotion uplift :math:`u_p` from U(1.5, 2.5).

    Args:
        n_products: number of products (positive).
        n_days: number of consecutive days, starting on a Monday (at least 30).
        levels: typical daily demand per product, shape ``(n_products,)``, finite and positive;
            defaults to a geometric ladder from 1 to 40 units a day.
        noise: :math:`\kappa`, the noise scale relative to :math:`\sqrt{\mu}` (finite, positive).
        promo_prob: probability that a given product is on promotion on a given day.
        stockout_rate: expected fraction of days on which a product runs out, in [0, 1).
        split: fractions of the days in the train, validation and test periods; each
            period must get at least one day.
        rng: a ``numpy.random.Generator`` or an int seed; a fresh unseeded one when ``None``.
        law: ``"truncated_normal"`` (continuous, the default) or ``"negative_binomial"``
            (integer counts with mean :math:`\mu_{pt}`; ``noise`` is then unused).
        concentration: :math:`r` of the negative binomial (finite, positive; smaller is
            more overdispersed).

    Returns:
        A :class:`DemandData`.

    Raises:
        ValueError: a parameter outside its range (named in the message), or a split
            that leaves a period empty.
        TypeError: ``rng`` neither a seed nor a generator, a count that is not an integer.
    """
    n_products = check_count("n_products", n_products)
    n_days = check_count("n_days", n_days, minimum=30)
    noise = check_positive("noise", noise)
    promo_prob = check_probability("promo_prob", promo_prob)
    stockout_rate = check_probability("stockout_rate", stockout_rate)
    if stockout_rate == 1.0:
        raise ValueError("stockout_rate must be below 1 (some days must keep stock), got 1.0")
    if levels is None:
        levels = np.geomspace(1.0, 40.0, n_products)
    levels = as_float_array("levels", levels)
    if levels.shape != (n_products,) or not np.all(levels > 0):
        raise ValueError(f"levels must be {n_products} positive numbers (one per product), got {levels!r}")
    if law not in ("truncated_normal", "negative_binomial"):
        raise ValueError(f"law must be 'truncated_normal' or 'negative_binomial', got {law!r}")
    concentration = check_positive("concentration", concentration)
    splits = _split_slices(n_days, split)
    rng = as_generator(rng)

    days = np.arange(n_days)
    day_of_week = days % 7
    amplitude = rng.uniform(0.5, 1.5, size=(n_products, 1))
    growth = rng.uniform(-0.1, 0.3, size=(n_products, 1))
    uplift = rng.uniform(1.5, 2.5, size=(n_products, 1))
    promo = rng.random((n_products, n_days)) < promo_prob

    base = levels[:, None] * np.exp(growth * days / 365.0)
    loc = base * (1.0 + amplitude * _WEEKLY_SHAPE[day_of_week]) * np.where(promo, uplift, 1.0)
    if law == "negative_binomial":
        # numpy's parameterisation: n = r successes, p = r / (r + mean)
        demand = rng.negative_binomial(concentration, concentration / (concentration + loc)).astype(float)
        scale, mean_demand = np.sqrt(loc + loc**2 / concentration), loc
    else:
        scale = noise * np.sqrt(loc)
        lower = -loc / scale  # truncation at zero, in standard units
        demand = stats.truncnorm.rvs(lower, np.inf, loc=loc, scale=scale, random_state=rng)
        mean_demand = stats.truncnorm.mean(lower, np.inf, loc=loc, scale=scale)

    delivery = np.exp(_DELIVERY_NOISE * rng.standard_normal((n_products, n_days)))
    # Stock-out iff demand / (base * delivery) > k, so the (1 - rate) quantile of that
    # ratio is the fill factor k that runs out on the requested fraction of days.
    ratio = demand / (base * delivery)
    fill = np.quantile(ratio, 1.0 - stockout_rate, axis=1, keepdims=True) if stockout_rate > 0 else np.inf
    stock = fill * base * delivery
    sales = np.minimum(demand, stock)
    return DemandData(
        demand=demand,
        sales=sales,
        stock=stock,
        stockout=demand > stock,
        promo=promo,
        day_of_week=day_of_week,
        loc=loc,
        scale=scale,
        mean_demand=mean_demand,
        splits=splits,
    )
