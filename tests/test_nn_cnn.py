"""The small CNN of chapter 8: shapes, augmentation, determinism, learning a visible signal, bad input."""

import numpy as np
import pytest
import torch
from sklearn.base import clone

from mathkit.nn import CNNClassifier, DefectCNN, _dihedral


def _spots(n, size=24, seed=0):
    """Frames of noise; the positives carry a bright 3 x 3 spot somewhere (a task with a known answer)."""
    rng = np.random.default_rng(seed)
    images = rng.normal(0.0, 0.1, (n, size, size))
    y = rng.random(n) < 0.5
    r, c = rng.integers(2, size - 3, (2, n))
    for i in np.flatnonzero(y):
        images[i, r[i] - 1 : r[i] + 2, c[i] - 1 : c[i] + 2] += 1.0
    return images, y


@pytest.mark.parametrize("shape", [(5, 64, 64), (3, 32, 48), (1, 16, 16)])
def test_logit_per_frame(shape):
    model = DefectCNN().eval()
    out = model(torch.randn(shape))
    assert out.shape == (shape[0],) and torch.isfinite(out).all()


def test_standardisation_makes_lighting_level_irrelevant():
    model = DefectCNN().eval()
    x = torch.rand(4, 32, 32)
    torch.testing.assert_close(model(3.0 * x + 1.0), model(x), rtol=1e-4, atol=1e-4)


def test_dihedral_augmentation_gives_one_of_the_eight_symmetries():
    x = torch.arange(2 * 5 * 5, dtype=torch.float32).reshape(2, 5, 5)
    out = _dihedral(x, torch.Generator().manual_seed(3))
    for original, augmented in zip(x, out):
        images = [torch.rot90(original, k, dims=(0, 1)) for k in range(4)]
        images += [im.flip(1) for im in images]
        assert any(torch.equal(augmented, im) for im in images)


def test_same_seed_same_model_and_global_generator_untouched():
    X, y = _spots(40, seed=1)
    kwargs = dict(epochs=3, random_state=7)
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = CNNClassifier(**kwargs).fit(X, y).predict_proba(X)
    assert torch.equal(torch.rand(1), expected_next)  # fit left the global generator as it was
    torch.rand(10)  # whatever ran before
    b = CNNClassifier(**kwargs).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(a, b)
    c = CNNClassifier(epochs=3, random_state=8).fit(X, y).predict_proba(X)
    assert not np.array_equal(a, c)


def test_learns_a_visible_signal_and_behaves_like_a_classifier():
    X, y = _spots(160, seed=2)
    X_test, y_test = _spots(200, seed=3)
    labels = np.where(y, "defective", "good")
    model = CNNClassifier(channels=(8, 16), epochs=25, patience=8, random_state=0).fit(X, labels)
    assert list(model.classes_) == ["defective", "good"]
    proba = model.predict_proba(X_test)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    accuracy = np.mean(model.predict(X_test) == np.where(y_test, "defective", "good"))
    assert accuracy > 0.85
    assert 1 <= model.history_.best_epoch + 1 <= len(model.history_.val_loss) <= 25
    assert clone(model).get_params()["channels"] == (8, 16)


@pytest.mark.parametrize(
    "X, y, kwargs, error, match",
    [
        (np.full((6, 16, 16), np.nan), [0, 1] * 3, {}, ValueError, "X must be finite"),
        (np.zeros((6, 16)), [0, 1] * 3, {}, ValueError, r"X must have shape \(n_images, height, width\)"),
        (np.zeros((6, 16, 16)), [0, 1], {}, ValueError, r"y must have shape \(6,\)"),
        (np.zeros((6, 16, 16)), [1] * 6, {}, ValueError, "exactly two classes"),
        (np.zeros((6, 16, 16)), [0, 1] * 3, dict(lr=-1.0), ValueError, "lr must be a positive finite number"),
        (np.zeros((6, 16, 16)), [0, 1] * 3, dict(epochs=0), ValueError, "epochs must be an integer of at least 1"),
        (np.zeros((6, 16, 16)), [0, 1] * 3, dict(val_fraction=1.0), ValueError, "val_fraction must lie"),
        (np.array([["a"] * 16] * 16 * 6).reshape(6, 16, 16), [0, 1] * 3, {}, TypeError, "X must hold real numbers"),
        # batches of one cannot be batch-normalised: every one was skipped, the model never trained
        (np.zeros((6, 16, 16)), [0, 1] * 3, dict(batch_size=1), ValueError, "batch_size must be an integer of at least 2"),
        # one image of a class leaves nothing of it to validate on (the loss was NaN)
        (np.zeros((3, 16, 16)), [0, 1, 1], {}, ValueError, "at least 2 images of each class"),
        # four pooling blocks halve 8 x 8 frames to nothing (torch failed inside)
        (np.zeros((6, 8, 8)), [0, 1] * 3, dict(channels=(4, 4, 4, 4)), ValueError, "sides >= 16"),
        (np.zeros((6, 16, 16)), [0, 1] * 3, dict(lr=1e38), ValueError, "lr must be below"),
        (np.full((6, 16, 16), 1e39), [0, 1] * 3, {}, ValueError, "X in float32 .* must be finite, got inf"),
    ],
)
def test_bad_input(X, y, kwargs, error, match):
    with pytest.raises(error, match=match):
        CNNClassifier(**kwargs).fit(X, np.asarray(y))


def test_unfitted_model_refuses_to_predict():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        CNNClassifier().predict(np.zeros((2, 16, 16)))
