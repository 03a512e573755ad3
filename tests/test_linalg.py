"""mathkit.linalg.sq_distances against scipy's cdist and an extended-precision reference
(differences in numpy's longdouble), on hostile inputs: near-duplicates, offsets of 1e8,
float32, gradients at zero distance; the public LAPACK Cholesky wrappers against numpy; CG,
Lanczos log-determinants, pivoted Cholesky and Toeplitz products against dense algebra."""

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import cdist

import mathkit.linalg
from mathkit.kernels import RBF, Matern
from mathkit.linalg import (
    GridInterpolation, batched_cg, cholesky_, cholesky_inverse_, cholesky_solve, lanczos_logdet, one_torch_thread,
    pivoted_cholesky, sq_distances, toeplitz_matmul,
)

U64 = np.finfo(np.float64).eps / 2
U32 = np.finfo(np.float32).eps / 2
# both code paths: differences up to 3 coordinates, the centred expansion above
DIMS = [1, 3, 4, 9, 40]


def exact(X, Y):
    """Squared distances of the given (rounded) inputs, summed in extended precision."""
    X, Y = np.asarray(X, np.longdouble), np.asarray(Y, np.longdouble)
    return ((X[:, None, :] - Y[None, :, :]) ** 2).sum(-1)


def rel_error(D, X, Y):
    ref = exact(X, Y)
    return np.abs(np.asarray(D, np.longdouble) - ref) / np.where(ref > 0, ref, 1)


def documented_bound(d, u=U64):
    """The docstring's promise: each entry within (2d + 3) 2^10 u of itself."""
    return (2 * d + 3) * 2**10 * u


@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_scipy_cdist_on_ordinary_data(d, seed):
    rng = np.random.default_rng(seed)
    X, Y = rng.standard_normal((70, d)), 3 * rng.standard_normal((50, d)) + 1
    D = sq_distances(torch.tensor(X), torch.tensor(Y))
    assert D.shape == (70, 50) and D.dtype == torch.float64
    np.testing.assert_allclose(D.numpy(), cdist(X, Y, "sqeuclidean"), rtol=1e-13)
    assert rel_error(D.numpy(), X, Y).max() <= documented_bound(d)


@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("offset", [1e8, -3e5, 1e8 * np.array([1.0, -2.0] * 20)])
def test_large_common_offset_costs_no_precision(d, offset):
    """Points at 1e8 that differ by 1e-3: the plain expansion would have no correct digit."""
    rng = np.random.default_rng(d)
    base = offset if np.ndim(offset) == 0 else offset[:d]
    X = base + rng.uniform(0, 1e-3, (60, d))
    D = sq_distances(X)
    err = rel_error(D, X, X)
    assert err.max() <= documented_bound(d)
    assert np.all(np.diag(D) == 0) and D.min() >= 0
    # same rounded inputs through scipy's difference-based cdist
    np.testing.assert_allclose(D, cdist(X, X, "sqeuclidean"), rtol=1e-12)


@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("gap", [1e-4, 1e-8, 1e-12])
def test_near_duplicates_keep_relative_accuracy(d, gap):
    rng = np.random.default_rng(7)
    X = 5.0 + rng.standard_normal((40, d))
    Y = X + gap * rng.standard_normal((40, d))
    D = sq_distances(X, Y)
    err = rel_error(D, X, Y)
    assert err.max() <= documented_bound(d)
    # the pairs (i, i) are the near-duplicates; their distances are ~gap^2 * d, not 0 or negative
    ref = exact(X, Y)
    np.testing.assert_allclose(np.diag(D), np.diag(ref).astype(float), rtol=documented_bound(d))
    assert np.all(np.diag(D) > 0)


@pytest.mark.parametrize("d", DIMS)
def test_float32_is_correct_to_float32_rounding(d):
    rng = np.random.default_rng(3)
    X = (1e4 + rng.standard_normal((50, d))).astype(np.float32)
    Y = np.concatenate([X[:10] + np.float32(1e-2), rng.standard_normal((30, d)).astype(np.float32) + 1e4])
    D = sq_distances(torch.from_numpy(X), torch.from_numpy(Y))
    assert D.dtype == torch.float32
    assert rel_error(D.numpy(), X, Y).max() <= 1.01 * U32  # one rounding of a nearly exact value
    Dx = sq_distances(torch.from_numpy(X))
    assert torch.all(Dx.diagonal() == 0) and Dx.min() >= 0


@pytest.mark.parametrize("d", DIMS)
def test_matrix_against_itself(d):
    rng = np.random.default_rng(4)
    X = rng.standard_normal((45, d))
    X[5] = X[17]  # an exact duplicate off the diagonal
    D = sq_distances(torch.tensor(X))
    assert torch.all(D.diagonal() == 0) and D[5, 17] == 0 and D[17, 5] == 0
    np.testing.assert_allclose(D.numpy(), cdist(X, X, "sqeuclidean"), rtol=1e-13, atol=0)
    np.testing.assert_allclose(D.numpy(), sq_distances(torch.tensor(X), torch.tensor(X)).numpy(), rtol=1e-15)


@pytest.mark.parametrize("d", DIMS)
def test_invariant_to_translation_rotation_and_permutation(d):
    rng = np.random.default_rng(5)
    X, Y = rng.standard_normal((30, d)), rng.standard_normal((20, d))
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    shift = 1e6 * rng.standard_normal(d)
    perm_x, perm_y = rng.permutation(30), rng.permutation(20)
    D = sq_distances(X, Y)
    # moved inputs are rounded to ~u |shift| per coordinate: that moves each distance by about
    # 2 sqrt(D) sqrt(d) 2u |shift|, and the rotation by a few u relative
    moved = sq_distances(X @ Q.T + shift, Y @ Q.T + shift)
    slack = 8 * np.sqrt(d) * U64 * np.abs(shift).max() * np.sqrt(D) + 1e-13 * D
    assert np.all(np.abs(moved - D) <= slack)
    # (the centre's and the product's rounding depend on the order, not the result beyond that)
    np.testing.assert_allclose(sq_distances(X[perm_x], Y[perm_y]), D[perm_x][:, perm_y], rtol=1e-14)
    np.testing.assert_allclose(sq_distances(Y, X), D.T, rtol=1e-14)


@pytest.mark.parametrize("d", [2, 20])
def test_blocks_and_recompute_chunks_give_the_same_matrix(monkeypatch, d):
    """Force many row blocks and recomputation in many chunks (tiny block budget)."""
    rng = np.random.default_rng(6)
    X = 1e3 + rng.standard_normal((57, d)) * 1e-3
    Y = np.concatenate([X[:20] + 1e-7, rng.standard_normal((13, d))])
    full = sq_distances(X, Y)
    monkeypatch.setattr(mathkit.linalg, "_BLOCK_ENTRIES", 64)
    blocked = sq_distances(X, Y)
    np.testing.assert_allclose(blocked, full, rtol=1e-14)
    assert rel_error(blocked, X, Y).max() <= documented_bound(d)


@pytest.mark.parametrize("d", [3, 12])
def test_gradient_gradcheck_and_closed_form_with_duplicates(d):
    g = torch.Generator().manual_seed(d)
    X = torch.randn(6, d, dtype=torch.float64, generator=g)
    Y = torch.cat([X[:2], torch.randn(3, d, dtype=torch.float64, generator=g)])  # zero distances
    Xg, Yg = X.clone().requires_grad_(True), Y.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(sq_distances, (Xg, Yg))
    assert torch.autograd.gradcheck(sq_distances, (Xg,))
    W = torch.randn(6, 5, dtype=torch.float64, generator=g)
    (sq_distances(Xg, Yg) * W).sum().backward()
    # d/dx_i sum_j W_ij |x_i - y_j|^2 = 2 sum_j W_ij (x_i - y_j)
    diff = X[:, None, :] - Y[None, :, :]
    torch.testing.assert_close(Xg.grad, 2 * (W[..., None] * diff).sum(1), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(Yg.grad, -2 * (W[..., None] * diff).sum(0), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("d", [3, 12])
def test_gradients_finite_for_float32_and_large_offsets(d):
    X = (1e6 + torch.rand(8, d)).requires_grad_(True)
    D = sq_distances(X)
    D.sum().backward()
    assert D.dtype == torch.float32 and X.grad.dtype == torch.float32
    assert torch.isfinite(X.grad).all()


def test_norms_beyond_float64_range_still_give_exact_finite_distances():
    # the expansion's squared norms overflow (inf - inf = NaN) for points ~1e154 from their centre;
    # those entries are redone from differences: exact where the true value is finite, inf where not
    a, gap = 1e154, 2.0**460
    X = np.array([[a] * 5, [a + gap] * 5, [-a] * 5])
    D = sq_distances(X)
    assert D[0, 0] == D[1, 1] == D[2, 2] == 0.0
    assert D[0, 1] == D[1, 0] == 5 * gap**2  # exact: powers of two
    assert np.isinf(D[0, 2]) and np.isinf(D[1, 2]) and not np.isnan(D).any()


def test_numpy_in_numpy_out_and_integers_promoted():
    X = np.arange(12).reshape(6, 2)
    D = sq_distances(X)
    assert isinstance(D, np.ndarray) and D.dtype == np.float64
    np.testing.assert_array_equal(D, cdist(X, X, "sqeuclidean"))
    assert sq_distances(torch.ones(3, 2, dtype=torch.int64)).dtype == torch.float64


def test_empty_inputs():
    assert sq_distances(torch.zeros(0, 3), torch.ones(4, 3)).shape == (0, 4)
    assert sq_distances(torch.zeros(2, 0)).tolist() == [[0.0, 0.0], [0.0, 0.0]]


@pytest.mark.parametrize("bad, match", [
    (np.array([[0.0, 1.0], [np.nan, 2.0]]), r"X must be finite, got nan at row 1"),
    (np.array([[0.0, np.inf]]), r"X must be finite, got inf at row 0"),
    (np.zeros(3), r"X must have shape \(n, d\), got \(3,\)"),
])
def test_bad_input_names_the_argument(bad, match):
    with pytest.raises(ValueError, match=match):
        sq_distances(bad)


def test_bad_second_argument_and_shape_mismatch():
    with pytest.raises(ValueError, match=r"Y must be finite, got -inf at row 2"):
        sq_distances(np.zeros((2, 2)), np.array([[0.0, 0.0], [1.0, 1.0], [-np.inf, 0.0]]))
    with pytest.raises(ValueError, match="same number of columns, got 2 and 3"):
        sq_distances(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(TypeError, match="X must be real"):
        sq_distances(torch.zeros(2, 2, dtype=torch.complex128))


@settings(max_examples=60, deadline=None)
@given(d=st.integers(1, 16), n=st.integers(1, 12), m=st.integers(1, 12),
       scale=st.floats(1e-6, 1e6), offset=st.floats(-1e9, 1e9), seed=st.integers(0, 2**31))
def test_property_matches_extended_precision(d, n, m, scale, offset, seed):
    rng = np.random.default_rng(seed)
    X = offset + scale * rng.standard_normal((n, d))
    near = min(n, m // 2)  # near-duplicates of rows of X
    Y = np.concatenate([X[:near] + scale * 1e-6 * rng.standard_normal((near, d)),
                        offset + scale * rng.standard_normal((m - near, d))])
    D = sq_distances(X, Y)
    assert D.min() >= 0
    assert rel_error(D, X, Y).max() <= documented_bound(d)


@pytest.mark.parametrize("kernel", [RBF(0.3, 2.0), Matern(0.5, 0.7), Matern(2.5, 1.5)])
def test_kernels_ignore_a_large_common_offset(kernel):
    """Through sq_distances the kernels depend on differences only, even 1e8 from the origin."""
    rng = np.random.default_rng(8)
    X = torch.tensor(rng.uniform(0, 2, (50, 12)))
    shifted = X + 1e8
    # inputs at 1e8 are themselves rounded to 1.5e-8, so compare with the rounded differences
    expected = kernel(shifted - 1e8)
    torch.testing.assert_close(kernel(shifted), expected, rtol=1e-12, atol=1e-15)
    assert torch.all(kernel(shifted).diagonal() == kernel.variance)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_lapack_cholesky_wrappers_against_numpy(dtype):
    """The LAPACK path (float64, contiguous) and the torch fallback (here float32)."""
    rng = np.random.default_rng(6)
    G = rng.standard_normal((50, 50))
    A = G @ G.T + 50 * np.eye(50)
    b = rng.standard_normal(50)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    work = torch.tensor(np.tril(A) + np.triu(np.full((50, 50), np.nan), 1), dtype=dtype)  # lower triangle only
    assert cholesky_(work)
    L = work.tril().double().numpy()
    np.testing.assert_allclose(L, np.linalg.cholesky(A), rtol=tol, atol=tol * 10)
    inverse = cholesky_inverse_(work, torch.empty_like(work)).tril().double().numpy()
    np.testing.assert_allclose(inverse, np.tril(np.linalg.inv(A)), rtol=tol * 100, atol=tol)
    x = cholesky_solve(work.tril(), torch.tensor(b, dtype=dtype)).double().numpy()
    np.testing.assert_allclose(x, np.linalg.solve(A, b), rtol=tol * 100, atol=tol)
    assert not cholesky_(torch.tensor(-np.eye(3), dtype=dtype))


def test_cholesky_inverse_rejects_a_singular_factor():
    L = torch.tensor([[1.0, 0.0], [2.0, 0.0]], dtype=torch.float64)
    with pytest.raises(np.linalg.LinAlgError, match="potri"):
        cholesky_inverse_(L, torch.empty_like(L))


@pytest.mark.parametrize("threads", [1, 2])
def test_one_torch_thread_restores_the_callers_setting(threads):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with one_torch_thread():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == threads
        with pytest.raises(KeyError), one_torch_thread():
            raise KeyError("restored on error too")
        assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)


def test_batched_cg_solves_and_its_lanczos_logdet():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((80, 80))
    A = torch.tensor(A @ A.T / 80 + 0.5 * np.eye(80))
    B = torch.randn(80, 100, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    res = batched_cg(lambda V: A @ V, B, tol=1e-10)
    np.testing.assert_allclose(res.solution.numpy(), scipy.linalg.solve(A.numpy(), B.numpy()), atol=1e-8)
    estimate = lanczos_logdet(res, (B * B).sum(0), range(100))
    assert float(estimate) == pytest.approx(np.linalg.slogdet(A.numpy())[1], rel=0.05)


def test_batched_cg_zero_right_hand_side_is_solved_by_zero():
    A = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    B = torch.tensor([[0.0, 1.0], [0.0, 2.0]], dtype=torch.float64)
    res = batched_cg(lambda V: A @ V, B, tol=1e-12)
    assert torch.equal(res.solution[:, 0], torch.zeros(2, dtype=torch.float64))
    assert int(res.n_iter[0]) == 0
    np.testing.assert_allclose(res.solution[:, 1].numpy(), np.linalg.solve(A.numpy(), [1.0, 2.0]), rtol=1e-10)


def test_pivoted_cholesky_full_rank_reproduces_matrix():
    X = torch.rand(30, 1, dtype=torch.float64)
    K = Matern(0.5)(X)
    L = pivoted_cholesky(K.diagonal(), lambda i: K[i], rank=30, tol=0.0)
    np.testing.assert_allclose((L @ L.T).numpy(), K.numpy(), atol=1e-10)


def test_toeplitz_matmul_against_dense():
    col = torch.exp(-torch.linspace(0, 3, 17, dtype=torch.float64) ** 2)
    V = torch.randn(17, 3, dtype=torch.float64)
    dense = torch.tensor(scipy.linalg.toeplitz(col.numpy()))
    np.testing.assert_allclose(toeplitz_matmul(col, V).numpy(), (dense @ V).numpy(), atol=1e-12)
    grid = GridInterpolation(torch.zeros(2), torch.ones(2), (9, 7))
    nodes = grid.nodes()
    K = RBF(0.3)(nodes)
    V = torch.randn(63, 2, dtype=torch.float64)
    np.testing.assert_allclose(toeplitz_matmul(K[0].reshape(9, 7), V).numpy(), (K @ V).numpy(), atol=1e-12)


def test_woodbury_preconditioner_matches_the_dense_solve_and_log_determinant():
    from mathkit.linalg import woodbury_preconditioner

    g = torch.Generator().manual_seed(4)
    L = torch.randn(60, 7, generator=g, dtype=torch.float64)
    R = torch.randn(60, 3, generator=g, dtype=torch.float64)
    for noise in (1e-3, 0.5, torch.tensor(2.0, dtype=torch.float64)):
        P = L @ L.T + float(noise) * torch.eye(60, dtype=torch.float64)
        solve, logdet = woodbury_preconditioner(L, noise)
        torch.testing.assert_close(solve(R), torch.linalg.solve(P, R), rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(logdet, torch.linalg.slogdet(P).logabsdet, rtol=1e-12, atol=1e-10)


def test_woodbury_preconditioner_names_a_bad_noise():
    from mathkit.linalg import woodbury_preconditioner

    with pytest.raises(ValueError, match="noise must be a positive variance"):
        woodbury_preconditioner(torch.ones(5, 2, dtype=torch.float64), 0.0)


@pytest.mark.parametrize("shape", [(5,), (4, 3), (2, 3, 4)])
def test_kron_matmul_equals_the_explicit_kronecker_product(shape):
    rng = np.random.default_rng(0)
    factors = [torch.as_tensor(rng.normal(size=(g, g))) for g in shape]
    V = torch.as_tensor(rng.normal(size=(int(np.prod(shape)), 3)))
    explicit = factors[0]
    for F in factors[1:]:
        explicit = torch.kron(explicit, F)
    np.testing.assert_allclose(mathkit.linalg.kron_matmul(factors, V).numpy(), (explicit @ V).numpy(), rtol=1e-12, atol=1e-12)
