"""Tests for analysis.spectrum: eigenvalues of WᵀW/N against closed forms and numpy."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

from htsweep.analysis import spectrum
from htsweep.analysis.layers import LayerMatrix
from htsweep.analysis.spectrum import esd, esd_batch, esd_layers, gram_eigh


def test_diagonal_matrix_closed_form():
    # W = diag(d) padded to 5x3: eigenvalues of WᵀW/N are d²/5 (closed form)
    W = np.zeros((5, 3))
    W[[0, 1, 2], [0, 1, 2]] = [3.0, 1.0, 2.0]
    assert_allclose(esd(W, device="cpu"), np.array([1.0, 4.0, 9.0]) / 5.0, rtol=1e-14)


def test_matches_numpy_svd_and_transposes():
    rng = np.random.default_rng(1234)
    W = rng.standard_normal((40, 90)).astype(np.float32)  # wide: transposed so N = 90, M = 40
    eigs = esd(W, device="cpu")
    # reference: squared singular values / N from numpy's SVD in float64
    ref = np.sort(np.linalg.svd(W.astype(np.float64), compute_uv=False) ** 2 / 90.0)
    assert eigs.shape == (40,) and eigs.dtype == np.float64
    assert_allclose(eigs, ref, rtol=1e-10, atol=1e-12)
    assert np.all(np.diff(eigs) >= 0)
    # trace identity: Σλ = ‖W‖²_F / N
    assert_allclose(eigs.sum(), np.sum(W.astype(np.float64) ** 2) / 90.0, rtol=1e-12)
    assert_allclose(esd(torch.from_numpy(W.T.copy()), device="cpu"), eigs, rtol=1e-12)


def test_rank_deficient_eigenvalues_are_clipped_nonnegative():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((50, 3)) @ rng.standard_normal((3, 20))  # rank 3
    eigs = esd(W, device="cpu")
    assert np.all(eigs >= 0.0)
    assert np.count_nonzero(eigs > 1e-10 * eigs.max()) == 3


def test_batch_groups_shapes_and_keeps_order():
    rng = np.random.default_rng(5)
    mats = [rng.standard_normal(s) for s in [(30, 10), (10, 30), (25, 25), (30, 10)]]
    layers = [LayerMatrix.from_tensor(f"l{i}", "linear", torch.from_numpy(m)) for i, m in enumerate(mats)]
    out = esd_batch(layers, device="cpu")
    assert [o.shape for o in out] == [(10,), (10,), (25,), (10,)]
    for o, m in zip(out, mats, strict=True):
        assert_allclose(o, esd(m, device="cpu"), rtol=1e-12, atol=1e-14)
    assert esd_batch([], device="cpu") == []


def test_batch_splits_large_groups(monkeypatch):
    monkeypatch.setattr(spectrum, "_BATCH_BYTES", 1)  # force one matrix per eigvalsh call
    rng = np.random.default_rng(6)
    mats = [rng.standard_normal((12, 6)) for _ in range(3)]
    out = esd_batch(mats, device="cpu")
    for o, m in zip(out, mats, strict=True):
        assert_allclose(o, np.sort(np.linalg.eigvalsh(m.T @ m / 12)), rtol=1e-12, atol=1e-14)


def test_errors_name_the_layer():
    bad = np.ones((4, 3))
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"layer 'fc1': weights contain 1 NaN/Inf"):
        esd(bad, device="cpu", name="fc1")
    layer = LayerMatrix.from_tensor("block.attn.q", "attn_q", torch.tensor([[1.0, float("inf")], [0.0, 1.0]]))
    with pytest.raises(ValueError, match=r"'block.attn.q'"):
        esd_batch([np.eye(3), layer], device="cpu")
    with pytest.raises(ValueError, match=r"mats\[0\].*expected a 2-D matrix, got shape \(3, 2, 2\)"):
        esd_batch([np.ones((3, 2, 2))], device="cpu")
    with pytest.raises(ValueError, match="expected a 2-D matrix"):
        esd(np.ones(5), device="cpu")


def test_gram_eigh_eigenvectors():
    rng = np.random.default_rng(8)
    W = rng.standard_normal((30, 12))
    eigs, vecs = gram_eigh(W, device="cpu")
    X = W.T @ W / 30
    assert_allclose(X @ vecs, vecs * eigs, atol=1e-10)
    assert_allclose(eigs, esd(W, device="cpu"), rtol=1e-10)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    rng = np.random.default_rng(9)
    W = rng.standard_normal((300, 100))
    assert_allclose(esd(W, device="cuda"), esd(W, device="cpu"), rtol=1e-10, atol=1e-12)


def test_read_only_arrays_are_accepted_silently():
    # arrays from Ray's object store are read-only; they must not trigger torch's copy warning
    W = np.random.default_rng(10).standard_normal((20, 10))
    W.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        eigs = esd(W, device="cpu")
    assert_allclose(eigs, np.linalg.eigvalsh(W.T @ W / 20), rtol=1e-10, atol=1e-14)


def test_float32_and_bfloat16_inputs():
    rng = np.random.default_rng(13)
    W = rng.standard_normal((500, 200))
    e64 = esd(W, device="cpu")
    e32 = esd(torch.from_numpy(W).float(), device="cpu", precision="float32")
    # float32: absolute error about M·eps32·λmax (module docstring)
    assert_allclose(e32, e64, rtol=0, atol=200 * np.finfo(np.float32).eps * e64[-1])
    wb = torch.from_numpy(W).to(torch.bfloat16)
    ref = np.linalg.eigvalsh(wb.double().numpy().T @ wb.double().numpy() / 500)
    assert_allclose(esd(wb, device="cpu"), np.clip(ref, 0, None), rtol=1e-10, atol=1e-12)
    half = torch.from_numpy(W[:60, :40]).half()
    assert esd_batch([half], device="cpu", precision="float32")[0].shape == (40,)


def test_row_chunks_give_the_same_gram(monkeypatch):
    rng = np.random.default_rng(14)
    tall, wide = rng.standard_normal((301, 40)), rng.standard_normal((37, 290))
    whole = [esd(tall, device="cpu"), esd(wide, device="cpu")]
    monkeypatch.setattr(spectrum, "_CHUNK_BYTES", 8 * 40 * 7)  # 7-row chunks (the last one shorter)
    assert_allclose(esd(tall, device="cpu"), whole[0], rtol=1e-12)
    assert_allclose(esd(wide, device="cpu"), whole[1], rtol=1e-12)  # wide: chunks are column blocks


def test_pooled_stack_pools_slice_eigenvalues():
    rng = np.random.default_rng(15)
    stack = torch.from_numpy(rng.standard_normal((4, 30, 12)))
    layer = LayerMatrix.from_tensor("conv", "conv2d", stack)
    (pooled,) = esd_batch([layer], device="cpu")
    assert_allclose(pooled, np.sort(np.concatenate([esd(s, device="cpu") for s in stack])), rtol=1e-12)


def test_float32_overflow_falls_back_to_float64():
    W = np.full((40, 20), 1e20)  # finite, but its float32 Gram overflows (1e40 > 3.4e38)
    W[np.arange(20), np.arange(20)] *= 2.0
    (eigs, used), = esd_layers([W], device="cpu", precision="float32")
    assert used == "float64" and np.isfinite(eigs).all() and eigs[-1] > 1e39
