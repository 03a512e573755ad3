"""The domain-knowledge inspector and the calibration scores: oracles from the simulator and scikit-learn."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import brier_score_loss
from sklearn.model_selection import cross_val_score

from mathkit.calibration import binary_report, expected_calibration_error, expected_cost, reliability_bins
from mathkit.data import simulate_conveyor
from mathkit.inspection import DefectInspector, inspection_features, item_pose


@pytest.fixture(scope="module")
def frames():
    return simulate_conveyor(900, rng=11)


@pytest.fixture(scope="module")
def features(frames):
    return inspection_features(frames.images)


def test_pose_recovers_the_simulated_pose(frames):
    good = frames.subset(~frames.defective)
    center, angle, half_sides = item_pose(good.images)
    assert np.abs(center - good.center).max() < 1.0
    turn = np.angle(np.exp(2j * (angle - good.angle))) / 2  # angles of a rectangle live modulo pi
    assert np.abs(turn).max() < 0.05
    assert np.abs(half_sides[:, 0] - good.half_length).max() < 1.0


def test_features_invariant_to_lighting_level_offset_and_quarter_turns(frames, features):
    images = frames.images[:40].astype(float)
    np.testing.assert_allclose(inspection_features(3.0 * images + 0.5), features[:40], atol=1e-6)
    turned = inspection_features(np.rot90(images, 1, axes=(1, 2)))
    # quarter turns move the pixel grid; the statistics agree up to discretisation
    assert np.median(np.abs(turned - features[:40])) < 0.05


def test_calibrated_on_simulated_truth(frames, features):
    fit, held = slice(0, 300), slice(300, None)
    model = DefectInspector().fit(features[fit], frames.defective[fit])
    p = model.predict_proba(features[held])[:, 1]
    y = frames.defective[held]
    assert expected_calibration_error(y, p) < 0.06
    assert abs(p.mean() - y.mean()) < 0.04
    # better than always answering with the base rate
    assert brier_score_loss(y, p) < 0.8 * brier_score_loss(y, np.full_like(p, y.mean()))


def test_images_and_precomputed_features_agree(frames, features):
    a = DefectInspector().fit(frames.images[:120], frames.defective[:120])
    b = DefectInspector().fit(features[:120], frames.defective[:120])
    np.testing.assert_allclose(a.predict_proba(frames.images[120:220]), b.predict_proba(features[120:220]), atol=1e-9)


def test_scikit_learn_behaviour(frames, features):
    labels = np.where(frames.defective[:200], "defective", "good")
    model = DefectInspector(C=10.0)
    assert clone(model).get_params() == {"margin": 3.0, "C": 10.0}
    with pytest.raises(NotFittedError):
        model.predict(features[:3])
    model.fit(features[:200], labels)
    assert list(model.classes_) == ["defective", "good"]
    # predict_proba[:, 1] is the probability of classes_[1]; predict agrees with it
    proba = model.predict_proba(features[200:300])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(model.predict(features[200:300]), model.classes_[(proba[:, 1] > 0.5).astype(int)])
    scores = cross_val_score(DefectInspector(), features[:300], frames.defective[:300], cv=3)
    assert scores.min() > 0.75
    assert model.set_params(C=1.0).C == 1.0


@pytest.mark.parametrize(
    "X, y, match",
    [
        (np.full((5, 32, 32), np.nan), [0, 1, 0, 1, 0], "X must be finite"),
        (np.zeros((5, 32)), [0, 1, 0, 1, 0], r"X must be images \(n, height, width\) or their features"),
        (np.zeros((5, 8, 8)), [0, 1, 0, 1, 0], "sides >= 16"),
        (np.zeros((5, 2)), [0, 1, 0], r"y must have shape \(5,\)"),
        (np.zeros((5, 2)), [1, 1, 1, 1, 1], "exactly two classes"),
        (np.zeros((5, 2)), [0.0, 1.0, np.nan, 1.0, 0.0], "y must be finite"),
    ],
)
def test_bad_input(X, y, match):
    with pytest.raises(ValueError, match=match):
        DefectInspector().fit(X, np.asarray(y))


def test_bad_settings():
    with pytest.raises(ValueError, match="C must be a finite positive number"):
        DefectInspector(C=-1.0).fit(np.zeros((4, 2)), [0, 1, 0, 1])
    with pytest.raises(ValueError, match="margin must be a finite non-negative"):
        inspection_features(np.zeros((2, 32, 32)), margin=np.nan)


def test_scores_against_scikit_learn_and_brute_force():
    rng = np.random.default_rng(0)
    p = rng.random(5000)
    y = rng.random(5000) < p  # calibrated by construction
    report = binary_report(y, p, miss_cost=5.0)
    assert report["brier"] == pytest.approx(brier_score_loss(y, p))
    assert report["error"] == pytest.approx(np.mean((p > 0.5) != y))
    assert report["ece"] < 0.03
    brute = np.mean([5.0 if (yi and pi <= 1 / 6) else 1.0 if (not yi and pi > 1 / 6) else 0.0 for yi, pi in zip(y, p)])
    assert expected_cost(y, p, 5.0) == pytest.approx(brute)
    # a model that says 0.9 for events of frequency 0.5 is off by 0.4
    assert expected_calibration_error([0, 1, 0, 1], [0.9, 0.9, 0.9, 0.9]) == pytest.approx(0.4)
    mean_p, freq, count = reliability_bins([0, 1, 1], [0.05, 0.95, 0.99], bins=10)
    np.testing.assert_allclose(mean_p, [0.05, 0.97]) and np.testing.assert_array_equal(count, [1, 2])


@pytest.mark.parametrize(
    "y, p, match",
    [([0, 2], [0.1, 0.2], "y must hold labels 0 and 1"), ([0, 1], [0.1, 1.2], "p must hold probabilities"),
     ([0, 1], [0.1], "same shape"), ([0, 1], [np.nan, 0.2], "p must be finite")],
)
def test_scores_bad_input(y, p, match):
    with pytest.raises(ValueError, match=match):
        binary_report(y, p)
    with pytest.raises(ValueError, match="miss_cost must be"):
        expected_cost([0, 1], [0.1, 0.2], miss_cost=0)
    with pytest.raises(ValueError, match="miss_cost must be"):
        expected_cost([0, 1], [0.1, 0.2], miss_cost=True)


def test_numpy_scalars_are_numbers():
    y, p = [0, 1, 1, 0], [0.1, 0.9, 0.3, 0.6]
    assert expected_cost(y, p, np.float32(5.0)) == expected_cost(y, p, 5.0) == expected_cost(y, p, np.int64(5))
