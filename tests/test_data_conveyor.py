"""The conveyor-belt simulator: seeding, shapes, labels that follow the generating process, bad input."""

import numpy as np
import pytest

from mathkit.data import ASPECT, DEFECT_KINDS, simulate_conveyor


def _inside(data, shrink=3.0):
    """Pixels well inside each item's rectangle, from the recorded pose (independent of the renderer)."""
    n, h, w = data.images.shape
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    dy, dx = rows[None] - data.center[:, 0, None, None], cols[None] - data.center[:, 1, None, None]
    c, s = np.cos(data.angle)[:, None, None], np.sin(data.angle)[:, None, None]
    u, v = c * dx + s * dy, -s * dx + c * dy
    a = data.half_length[:, None, None]
    inside = (np.abs(u) < a - shrink) & (np.abs(v) < a / ASPECT - shrink)
    outside = (np.abs(u) > a + shrink) | (np.abs(v) > a / ASPECT + shrink)
    return inside, outside


def test_shapes_and_types():
    data = simulate_conveyor(7, size=40, rng=0)
    assert data.images.shape == (7, 40, 40) and data.images.dtype == np.float32
    assert data.defective.shape == data.kind.shape == data.contrast.shape == data.angle.shape == (7,)
    assert data.center.shape == (7, 2) and len(data) == 7
    assert np.isfinite(data.images).all()
    assert len(data.subset(slice(2, 5))) == 3


def test_same_seed_same_frames_whatever_ran_before():
    first = simulate_conveyor(20, rng=5)
    simulate_conveyor(3, rng=9)
    np.random.default_rng(1).random(100)
    again = simulate_conveyor(20, rng=5)
    from_generator = simulate_conveyor(20, rng=np.random.default_rng(5))
    for other in (again, from_generator):
        np.testing.assert_array_equal(first.images, other.images)
        np.testing.assert_array_equal(first.defective, other.defective)
    assert not np.array_equal(first.images, simulate_conveyor(20, rng=6).images)


def test_labels_follow_the_process():
    data = simulate_conveyor(4000, defect_rate=0.3, size=32, rng=1)
    assert np.array_equal(data.defective, data.kind >= 0)
    assert np.array_equal(data.defective, data.contrast > 0)
    # binomial frequency: 0.3 +- 4 standard errors
    assert abs(data.defective.mean() - 0.3) < 4 * np.sqrt(0.3 * 0.7 / 4000)
    assert set(np.unique(data.kind[data.defective])) == {0, 1, 2}  # the default kinds
    assert not simulate_conveyor(50, defect_rate=0.0, size=32, rng=2).defective.any()
    only = simulate_conveyor(50, defect_rate=1.0, kinds=("crack",), size=32, rng=3)
    assert only.defective.all() and (only.kind == DEFECT_KINDS.index("crack")).all()


def test_item_is_where_the_pose_says_and_brighter_than_the_belt():
    data = simulate_conveyor(200, defect_rate=0.0, rng=4)
    inside, outside = _inside(data)
    for image, i, o in zip(data.images, inside, outside):
        # reflectances 0.75 and 0.25: the item is about three times as bright as the belt
        assert 2.0 < image[i].mean() / image[o].mean() < 4.5


def test_discoloration_scales_the_item_by_one_minus_contrast():
    """The docstring's physics: a discoloration multiplies the item's reflectance by (1 - c)."""
    good = simulate_conveyor(300, defect_rate=0.0, rng=7)
    bad = simulate_conveyor(300, defect_rate=1.0, kinds=("discoloration",), rng=7)
    # same seed and same draws up to the labels: compare each frame with its good twin
    inside, outside = _inside(bad)
    ratio = np.array([b[i].mean() / g[i].mean() for b, g, i in zip(bad.images, good.images, inside)])
    np.testing.assert_allclose(ratio, 1 - bad.contrast, atol=0.03)


def test_noise_grows_with_the_signal():
    data = simulate_conveyor(100, defect_rate=0.0, rng=8)
    twin = simulate_conveyor(100, defect_rate=0.0, rng=8)
    np.testing.assert_array_equal(data.images, twin.images)
    inside, outside = _inside(data)
    # residual around a local mean: shot noise makes the bright item noisier than the belt
    from scipy import ndimage
    resid = data.images - ndimage.uniform_filter(data.images, size=(1, 3, 3))
    assert resid[inside].std() > 1.3 * resid[outside].std()


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(n=0), ValueError, "n must be an integer of at least 1"),
        (dict(n=2.5), ValueError, "n must be"),
        (dict(n=True), TypeError, "n must be an integer"),
        (dict(n=3, size=16), ValueError, "size must be an integer of at least 32"),
        (dict(n=3, defect_rate=1.5), ValueError, "defect_rate must be a probability"),
        (dict(n=3, defect_rate=float("nan")), ValueError, "defect_rate"),
        (dict(n=3, kinds=("rust",)), ValueError, "kinds must be a non-empty subset"),
        (dict(n=3, kinds=()), ValueError, "kinds must be a non-empty subset"),
        (dict(n=3, rng="seed"), TypeError, "rng must be"),
        (dict(n=3, rng=-1), ValueError, "rng must be a non-negative seed"),
    ],
)
def test_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        simulate_conveyor(**kwargs)
