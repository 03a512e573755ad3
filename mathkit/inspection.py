r"""Visual inspection from domain knowledge: a defect detector with three parameters.

:class:`DefectInspector` classifies photographs of one known item (a rectangle seen from
above, as in :func:`mathkit.data.simulate_conveyor`) as good or defective. Everything an
engineer knows about the images goes into fixed, unlearned steps; only the final
calibration is fitted:

1. **Find the item.** It is brighter than the belt: threshold halfway between the belt's
   and the item's typical intensities. Its pose comes from the image moments of the
   silhouette: centroid :math:`c`, and the long axis from the principal eigenvector of the
   second-moment matrix :math:`\Sigma`. For a uniform rectangle of half-sides
   :math:`(a, b)`, :math:`\Sigma` has eigenvalues :math:`a^2/3` and :math:`b^2/3`, which
   gives the size. Position, rotation and scale invariance come from this step, not from
   data.
2. **Explain the good item.** On the rectangle's interior (``margin`` pixels inside its
   edges, so the blurred outline and small pose errors drop out), a good item is a plane
   :math:`\alpha + \beta^\top x` (uniform reflectance under a linear lighting gradient)
   plus noise. The residual :math:`r = I - \hat\alpha - \hat\beta^\top x` is standardised
   by a robust noise scale, :math:`z = r / (1.4826\,\operatorname{MAD}(r))`.
3. **Look for what a defect does.** Under the good-item model :math:`z` is white noise.
   A dent is a compact blob, a crack or scratch a thin line: the matched statistics are
   the largest local energy :math:`\max_x \sum_{x' \in W_5(x)} z_{x'}^2` over 5 x 5
   windows, and the largest absolute mean of :math:`z` along a short segment of any of
   eight directions (a bank of line filters). Their logarithms are the two features.
4. **Calibrate.** A logistic regression on the two features,
   :math:`\Prob(\text{defective} \mid x) = \sigma(w_0 + w_1 f_1 + w_2 f_2)`: three
   parameters, fitted by maximum likelihood, so the probabilities are calibrated when
   the model is right (Platt 1999) even from a few dozen labelled images.

What it cannot see is what its good-item model absorbs: a change of the whole item's
reflectance (a discoloration) is explained away by the fitted plane, exactly as a change
of lighting is.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted

from mathkit._checks import as_float_array, is_real_number

__all__ = ["DefectInspector", "inspection_features", "item_pose"]

_MAD_TO_SD = 1.4826
_LINE_LENGTH = 7
_ANGLES = 8


def _as_images(name: str, X) -> np.ndarray:
    """``X`` as a finite float64 ``(n, height, width)`` array, or an error naming ``name``."""
    X = as_float_array(name, X)
    if X.ndim != 3 or X.shape[0] < 1 or min(X.shape[1:]) < 16:
        raise ValueError(f"{name} must have shape (n_images, height, width) with n_images >= 1 and sides >= 16, "
                         f"got {X.shape}")
    return X


def item_pose(images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Centre, long-axis angle and half-sides of the bright item in each image, from its moments.

    Args:
        images: ``(n, height, width)`` intensities (item brighter than the background).

    Returns:
        ``center`` ``(n, 2)`` (row, column), ``angle`` ``(n,)`` in :math:`[0, \pi)` (the long
        axis, measured from the column axis towards the row axis), ``half_sides`` ``(n, 2)``
        (long, short), from :math:`a = \sqrt{3\lambda_1}`, :math:`b = \sqrt{3\lambda_2}`.
    """
    images = _as_images("images", images)
    n, h, w = images.shape
    flat = images.reshape(n, -1)
    low, high = np.quantile(flat, [0.25, 0.99], axis=1)
    mask = (images > ((low + high) / 2)[:, None, None]).astype(float)
    rows, cols = np.meshgrid(np.arange(h, dtype=float), np.arange(w, dtype=float), indexing="ij")
    area = np.maximum(mask.sum(axis=(1, 2)), 1.0)
    cy = (mask * rows).sum(axis=(1, 2)) / area
    cx = (mask * cols).sum(axis=(1, 2)) / area
    dy, dx = rows[None] - cy[:, None, None], cols[None] - cx[:, None, None]
    syy = (mask * dy**2).sum(axis=(1, 2)) / area
    sxx = (mask * dx**2).sum(axis=(1, 2)) / area
    sxy = (mask * dx * dy).sum(axis=(1, 2)) / area
    angle = np.mod(0.5 * np.arctan2(2 * sxy, sxx - syy), np.pi)
    spread = np.sqrt(((sxx - syy) / 2) ** 2 + sxy**2)
    lam1, lam2 = (sxx + syy) / 2 + spread, np.maximum((sxx + syy) / 2 - spread, 0.0)
    return np.stack([cy, cx], axis=1), angle, np.stack([np.sqrt(3 * lam1), np.sqrt(3 * lam2)], axis=1)


def _line_kernels() -> list[np.ndarray]:
    """Unit-norm segments of ``_LINE_LENGTH`` pixels in ``_ANGLES`` directions."""
    kernels, half = [], _LINE_LENGTH // 2
    for theta in np.arange(_ANGLES) * np.pi / _ANGLES:
        k = np.zeros((_LINE_LENGTH, _LINE_LENGTH))
        for t in np.linspace(-half, half, 4 * _LINE_LENGTH):
            k[int(round(half + t * np.sin(theta))), int(round(half + t * np.cos(theta)))] = 1.0
        kernels.append(k / np.sqrt(k.sum()))  # unit variance response to white noise
    return kernels


def inspection_features(images, margin: float = 3.0) -> np.ndarray:
    r"""The two defect statistics of each image (steps 1-3 of :class:`DefectInspector`).

    Args:
        images: ``(n, height, width)`` intensities of one bright rectangular item on a darker
            background per image.
        margin: pixels inside the item's estimated edges that are ignored (blur, pose error).

    Returns:
        ``(n, 2)`` float64: log of the largest 5 x 5 residual energy and log of the largest
        absolute line-filter response.

    Raises:
        ValueError: images not of shape ``(n, height, width)``, non-finite values, a
            negative or non-finite ``margin``.
    """
    images = _as_images("images", images)
    if not (np.isfinite(margin) and margin >= 0):
        raise ValueError(f"margin must be a finite non-negative number of pixels, got {margin!r}")
    n, h, w = images.shape
    center, angle, half_sides = item_pose(images)
    rows, cols = np.meshgrid(np.arange(h, dtype=float), np.arange(w, dtype=float), indexing="ij")
    dy, dx = rows[None] - center[:, 0, None, None], cols[None] - center[:, 1, None, None]
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy
    inside = (np.abs(u) < half_sides[:, 0, None, None] - margin) & (np.abs(v) < half_sides[:, 1, None, None] - margin)
    weight = inside.astype(float)
    # least-squares plane on the interior: normal equations, one 3 x 3 system per image
    basis = np.stack([np.ones_like(dx), dx, dy], axis=-1)  # (n, h, w, 3)
    gram = np.einsum("nhwi,nhwj,nhw->nij", basis, basis, weight) + 1e-9 * np.eye(3)
    moment = np.einsum("nhwi,nhw,nhw->ni", basis, weight, images)
    coef = np.linalg.solve(gram, moment[..., None])[..., 0]
    residual = np.where(inside, images - np.einsum("nhwi,ni->nhw", basis, coef), np.nan)
    centred = residual - np.nanmedian(residual, axis=(1, 2))[:, None, None]
    scale = _MAD_TO_SD * np.nanmedian(np.abs(centred), axis=(1, 2))
    z = np.nan_to_num(centred / np.maximum(scale, 1e-12)[:, None, None], nan=0.0)
    energy = ndimage.uniform_filter(z**2, size=(1, 5, 5), mode="constant") * 25
    line = np.max(
        [np.abs(ndimage.correlate(z, k[None], mode="constant")) for k in _line_kernels()], axis=0
    )
    floor = np.ones(n)  # an item with no usable interior gets the smallest statistics
    blob_stat = np.max(np.where(inside, energy, 0.0), axis=(1, 2), initial=0.0)
    line_stat = np.max(np.where(inside, line, 0.0), axis=(1, 2), initial=0.0)
    return np.log(np.stack([np.maximum(blob_stat, floor), np.maximum(line_stat, floor)], axis=1))


class DefectInspector(ClassifierMixin, BaseEstimator):
    r"""Good or defective, from the item's known shape and what a defect does to the image.

    The features are fixed (:func:`inspection_features`, the module docstring says why);
    a logistic regression with three parameters maps them to a calibrated probability.

    Args:
        margin: pixels inside the item's estimated edges that are ignored.
        C: inverse strength of the L2 penalty of the logistic regression (large: plain
            maximum likelihood).

    Attributes:
        classes_: the two labels seen in ``fit``, sorted; ``predict_proba[:, 1]`` is the
            probability of ``classes_[1]`` (``True`` or 1: defective).
        coef_: ``(2,)`` weights of the two features; ``intercept_``: the bias.
        feature_mean_, feature_scale_: the standardisation of the features.
    """

    def __init__(self, margin: float = 3.0, C: float = 100.0):
        self.margin = margin
        self.C = C

    def fit(self, X, y) -> DefectInspector:
        """Fit the calibration on ``X`` with binary labels ``y`` ``(n,)``.

        ``X`` is ``(n, height, width)`` images, or their ``(n, 2)`` features from
        :func:`inspection_features` (computed once, they can be reused across fits; the
        same holds for every method below).
        """
        if not (is_real_number(self.C) and np.isfinite(self.C) and self.C > 0):
            raise ValueError(f"C must be a finite positive number, got {self.C!r}")
        features = self._features(X)
        y = np.asarray(y)
        if y.shape != (features.shape[0],):
            raise ValueError(f"y must have shape ({features.shape[0]},) to match X, got {y.shape}")
        if y.dtype.kind == "f":
            as_float_array("y", y)
        if type_of_target(y) != "binary" or np.unique(y).size != 2:
            raise ValueError(f"y must hold exactly two classes (good, defective), got {np.unique(y)[:5]!r}")
        self.classes_ = np.unique(y)
        self.feature_mean_ = features.mean(axis=0)
        self.feature_scale_ = np.maximum(features.std(axis=0), 1e-12)
        self._logistic = LogisticRegression(C=self.C).fit(self._standardise(features), y == self.classes_[1])
        self.coef_ = self._logistic.coef_[0] / self.feature_scale_
        self.intercept_ = float(self._logistic.intercept_[0] - self.coef_ @ self.feature_mean_)
        return self

    def _features(self, X) -> np.ndarray:
        X = as_float_array("X", X)
        if X.ndim == 2:
            if X.shape[1] != 2 or X.shape[0] < 1:
                raise ValueError(f"X must be images (n, height, width) or their features (n, 2), got shape {X.shape}")
            return X
        return inspection_features(X, self.margin)

    def _standardise(self, features: np.ndarray) -> np.ndarray:
        return (features - self.feature_mean_) / self.feature_scale_

    def decision_function(self, X) -> np.ndarray:
        """Log-odds of a defect for each image, ``(n,)``."""
        check_is_fitted(self)
        return self._features(X) @ self.coef_ + self.intercept_

    def predict_proba(self, X) -> np.ndarray:
        """``(n, 2)``: probabilities of ``classes_[0]`` (good) and ``classes_[1]`` (defective)."""
        p = 1.0 / (1.0 + np.exp(-self.decision_function(X)))
        return np.stack([1.0 - p, p], axis=1)

    def predict(self, X) -> np.ndarray:
        """The more probable class of each image."""
        positive = self.decision_function(X) > 0
        return self.classes_[positive.astype(int)]
