r"""Photographs of items on a conveyor belt, some of them defective, with the truth known.

Chapter 8 uses it to compare a model built from what an engineer knows about the images
with a convolutional network trained from scratch, at the data-set sizes a factory has.

The camera looks straight down on a dark belt; each frame shows one rectangular item
(a bar of aspect ratio ``ASPECT``) under a lamp that is not quite overhead. Image formation,
per pixel :math:`x` of an ``size`` x ``size`` frame with intensities in arbitrary units:

.. math::
    I(x) = L(x)\,\big[\rho_\text{belt}\,T(x)\,(1 - m(x)) + \rho_\text{item}\,m(x)\,D(x)\big]
           + \varepsilon(x), \qquad
    \varepsilon(x) \sim \mathcal N\big(0,\ \sigma_0^2 + \kappa\, \bar I(x)\big),

- :math:`m(x) \in [0, 1]` is the item's silhouette: a rectangle of half-sides
  :math:`(a, a / \text{ASPECT})` at a uniform position and rotation, its scale :math:`a`
  varying by :math:`\pm 10\%`, with an edge blurred over about a pixel (the optics);
- :math:`L(x) = \ell\,(1 + g^\top (x - c))` is the lighting: an overall level :math:`\ell`
  and a linear gradient :math:`g` of random direction (a lamp off to one side);
- :math:`T(x)` is the belt's woven texture (two random gratings) and
  :math:`\rho_\text{belt} < \rho_\text{item}` the reflectances;
- :math:`D(x)` is the defect's effect on the item's reflectance (1 on a good item),
  drawn in the item's own coordinates so it moves and turns with the item:

  - ``"dent"``: a shallow pit of radius :math:`r`; under the oblique lamp one flank
    faces the light and the other turns away, so the pit shows as a dark-and-bright pair
    (the derivative of a Gaussian bump along the light's direction) plus a slight darkening;
  - ``"crack"``: a thin dark line (width about a pixel) of random length and direction,
    where the material is open and light is trapped;
  - ``"scratch"``: a thin bright line, longer and fainter, where the surface is polished;
  - ``"discoloration"``: the whole item's reflectance scaled by a factor (heat damage);
    not drawn unless asked for in ``kinds``: a defect that changes no shape and no texture.

  Each defect's contrast is drawn log-uniformly over a range that starts below the noise
  level, so some defects are truly invisible and no classifier reaches zero error.
- :math:`\varepsilon` is sensor noise: read noise :math:`\sigma_0` plus shot noise whose
  variance grows with the mean signal :math:`\bar I(x)`.

The label is the generating process's: an item is defective when a defect was drawn on it.
All images of one call are rendered at once by broadcasting (float32): two thousand frames
took about 4 s on a shared, heavily loaded two-core machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mathkit.data._checks import as_generator, check_count, check_probability

__all__ = ["ConveyorImages", "simulate_conveyor", "DEFECT_KINDS", "ASPECT"]

DEFECT_KINDS = ("dent", "crack", "scratch", "discoloration")
"""The defects the simulator can draw; ``kind`` holds an index into this tuple, -1 for none."""

ASPECT = 2.0
"""Length-to-width ratio of the item (the bar every frame shows)."""

_READ_NOISE = 0.02
_SHOT_NOISE = 0.0016  # variance per unit of mean intensity
_RHO_BELT, _RHO_ITEM = 0.25, 0.75


@dataclass(frozen=True)
class ConveyorImages:
    """Simulated frames and everything that generated them (arrays with ``n`` rows).

    Attributes:
        images: ``(n, size, size)`` float32 intensities.
        defective: ``(n,)`` bool, the label.
        kind: ``(n,)`` int, index into ``DEFECT_KINDS``; -1 on good items.
        contrast: ``(n,)`` float, the defect's contrast (0 on good items).
        center: ``(n, 2)`` item centre in pixels (row, column).
        angle: ``(n,)`` rotation of the item's long axis in radians.
        half_length: ``(n,)`` half of the item's long side in pixels.
    """

    images: np.ndarray
    defective: np.ndarray
    kind: np.ndarray
    contrast: np.ndarray
    center: np.ndarray
    angle: np.ndarray
    half_length: np.ndarray

    def __len__(self) -> int:
        return self.images.shape[0]

    def subset(self, index) -> ConveyorImages:
        """The frames at ``index`` (an integer array, a slice or a boolean mask)."""
        return ConveyorImages(*(getattr(self, f)[index] for f in self.__dataclass_fields__))


def simulate_conveyor(
    n: int,
    *,
    size: int = 64,
    defect_rate: float = 0.3,
    kinds: tuple[str, ...] = ("dent", "crack", "scratch"),
    rng: np.random.Generator | int | None = None,
) -> ConveyorImages:
    """Draw ``n`` frames of items on the belt; each item is defective with probability ``defect_rate``.

    The physics is in the module docstring. A defective item gets one defect, its kind
    drawn uniformly from ``kinds``.

    Args:
        n: number of frames (positive).
        size: side of the square frame in pixels (at least 32).
        defect_rate: probability that an item is defective.
        kinds: the defect kinds to draw from, a non-empty subset of ``DEFECT_KINDS``.
        rng: a ``numpy.random.Generator`` or an int seed; a fresh unseeded one when ``None``.

    Returns:
        A :class:`ConveyorImages`.

    Raises:
        ValueError: ``n`` or ``size`` too small, ``defect_rate`` outside [0, 1], an unknown
            or empty ``kinds``.
        TypeError: ``n``/``size`` not integers, ``rng`` of the wrong type.
    """
    n = check_count("n", n)
    size = check_count("size", size, minimum=32)
    defect_rate = check_probability("defect_rate", defect_rate)
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    unknown = [k for k in kinds if k not in DEFECT_KINDS]
    if not kinds or unknown:
        raise ValueError(f"kinds must be a non-empty subset of {DEFECT_KINDS}, got {kinds!r}")
    rng = as_generator(rng)

    # Pose, scale and lighting: the nuisance an inspector must be invariant to.
    half_length = size * 0.25 * rng.uniform(0.9, 1.1, n)
    margin = half_length + 2.0
    center = np.stack([rng.uniform(margin, size - margin), rng.uniform(margin, size - margin)], axis=1)
    angle = rng.uniform(0.0, np.pi, n)
    level = rng.uniform(0.8, 1.2, n)
    light_dir = rng.uniform(0.0, 2 * np.pi, n)
    gradient = rng.uniform(0.0, 0.6, n) / size  # up to +-30% across the frame

    defective = rng.random(n) < defect_rate
    kind = np.where(defective, np.array([DEFECT_KINDS.index(k) for k in kinds])[rng.integers(0, len(kinds), n)], -1)
    # contrast log-uniform from below the noise to clearly visible, per kind
    low_high = np.array([[0.04, 0.5], [0.05, 0.6], [0.03, 0.35], [0.05, 0.35]])
    bounds = low_high[np.maximum(kind, 0)]
    contrast = np.where(defective, np.exp(rng.uniform(np.log(bounds[:, 0]), np.log(bounds[:, 1]))), 0.0)
    # defect geometry in item coordinates (u along the long axis, v across), relative units
    spot = rng.uniform(-0.75, 0.75, (n, 2))
    radius = rng.uniform(1.5, 3.5, n)
    direction = rng.uniform(0.0, np.pi, n)
    length = rng.uniform(0.3, 0.8, n)
    texture = rng.uniform(0.0, 2 * np.pi, (n, 4))
    noise = rng.standard_normal((n, size, size), dtype=np.float32)

    rows, cols = np.meshgrid(np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32), indexing="ij")
    dy = rows[None] - center[:, 0, None, None].astype(np.float32)
    dx = cols[None] - center[:, 1, None, None].astype(np.float32)
    cos, sin = (f(angle).astype(np.float32)[:, None, None] for f in (np.cos, np.sin))
    u = cos * dx + sin * dy
    v = -sin * dx + cos * dy
    a = half_length.astype(np.float32)[:, None, None]
    b = a / ASPECT
    silhouette = _sigmoid((a - np.abs(u)) / 0.7) * _sigmoid((b - np.abs(v)) / 0.7)

    reflectance = np.ones_like(u)
    _draw_defects(reflectance, u, v, a, b, kind, contrast, spot, radius, direction, length, light_dir, angle)

    weave = 1.0 + 0.08 * np.sin(0.9 * cols[None] + texture[:, 0, None, None]) * np.sin(
        0.9 * rows[None] + texture[:, 1, None, None]
    ) + 0.05 * np.sin(0.37 * (cols[None] + rows[None]) + texture[:, 2, None, None])
    lighting = level[:, None, None] * (
        1.0 + gradient[:, None, None] * (np.cos(light_dir)[:, None, None] * dx + np.sin(light_dir)[:, None, None] * dy)
    )
    mean = (lighting * (_RHO_BELT * weave * (1 - silhouette) + _RHO_ITEM * silhouette * reflectance)).astype(np.float32)
    images = mean + np.sqrt(_READ_NOISE**2 + _SHOT_NOISE * np.maximum(mean, 0)) * noise
    return ConveyorImages(
        images=images.astype(np.float32),
        defective=defective,
        kind=kind,
        contrast=contrast,
        center=center,
        angle=angle,
        half_length=half_length,
    )


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _draw_defects(reflectance, u, v, a, b, kind, contrast, spot, radius, direction, length, light_dir, angle) -> None:
    """Multiply each defective item's ``reflectance`` (in place) by its defect's pattern."""
    for k, name in enumerate(DEFECT_KINDS):
        idx = np.flatnonzero(kind == k)
        if idx.size == 0:
            continue
        ui, vi, ai, bi = u[idx], v[idx], a[idx], b[idx]
        c = contrast[idx].astype(np.float32)[:, None, None]
        # the defect's anchor inside the item, away from the edges
        u0 = (spot[idx, 0, None, None] * (ai - 3)).astype(np.float32)
        v0 = (spot[idx, 1, None, None] * (bi - 3)).astype(np.float32)
        if name == "dent":
            r = radius[idx].astype(np.float32)[:, None, None]
            du, dv = ui - u0, vi - v0
            bump = np.exp(-(du**2 + dv**2) / (2 * r**2))
            # the lamp's direction in item coordinates: the flank facing it is brighter
            phi = (light_dir[idx] - angle[idx]).astype(np.float32)[:, None, None]
            slope = (np.cos(phi) * du + np.sin(phi) * dv) / r
            reflectance[idx] *= 1.0 - c * bump * (0.4 + slope)
        elif name == "discoloration":
            reflectance[idx] *= 1.0 - c
        else:
            half = length[idx].astype(np.float32)[:, None, None] * (ai if name == "scratch" else 0.6 * ai)
            theta = direction[idx].astype(np.float32)[:, None, None]
            along = np.cos(theta) * (ui - u0) + np.sin(theta) * (vi - v0)
            across = -np.sin(theta) * (ui - u0) + np.cos(theta) * (vi - v0)
            beyond = np.maximum(np.abs(along) - half, 0.0)
            line = np.exp(-(across**2 + beyond**2) / (2 * 0.6**2))
            inside = _sigmoid((ai - 1.5 - np.abs(ui)) / 0.5) * _sigmoid((bi - 1.5 - np.abs(vi)) / 0.5)
            sign = -1.0 if name == "crack" else 1.0
            reflectance[idx] *= 1.0 + sign * c * line * inside
