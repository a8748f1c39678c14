"""PCA + whitening, quantization and dequantization; golden PCA values when eigenvecs.npy is cached."""

from __future__ import annotations

import hashlib
import io
import pickle

import numpy as np
import pytest
import torch

from vtag import weights
from vtag.errors import VtagError
from vtag.features.pca import (
    VGGishPCA,
    YT8MPCA,
    dequantize,
    load_vggish_pca,
    load_yt8m_pca,
    quantize,
)


def _random_pca_arrays(seed=0):
    rng = np.random.default_rng(seed)
    mean = rng.normal(0.4, 0.2, (2048, 1)).astype(np.float32)
    eigenvals = np.sort(rng.uniform(1e-3, 15.0, (2048, 1)), axis=0)[::-1].astype(np.float32)
    eigenvecs = rng.normal(size=(2048, 2048)).astype(np.float32)
    return mean, eigenvals, eigenvecs


def test_yt8m_pca_projects_on_the_rows_of_eigenvecs_and_whitens():
    mean, eigenvals, eigenvecs = _random_pca_arrays()
    pca = YT8MPCA(mean, eigenvals, eigenvecs)
    x = np.random.default_rng(1).uniform(0, 2, (3, 2048))
    got = pca(x)
    assert got.shape == (3, 1024) and got.dtype == np.float32
    # Component j: the j-th ROW of eigenvecs.npy (YT8M loads it as eigenvecs.T[:, :1024]).
    for j in (0, 1, 500, 1023):
        expected = (x - mean[:, 0]) @ eigenvecs[j].astype(np.float64) / np.sqrt(float(eigenvals[j, 0]) + 1e-4)
        np.testing.assert_allclose(got[:, j], expected, rtol=1e-5, atol=1e-5)
    via_torch = pca(torch.from_numpy(x).float())
    assert isinstance(via_torch, torch.Tensor) and via_torch.dtype == torch.float32
    np.testing.assert_allclose(via_torch.numpy(), got, rtol=1e-4, atol=1e-4)


def test_yt8m_pca_rejects_wrong_shapes():
    mean, eigenvals, eigenvecs = _random_pca_arrays()
    with pytest.raises(VtagError, match="eigenvecs"):
        YT8MPCA(mean, eigenvals, eigenvecs[:1024])


def test_random_pca_is_a_seeded_rotation():
    a, b, c = YT8MPCA.random(0), YT8MPCA.random(0), YT8MPCA.random(1)
    np.testing.assert_array_equal(a.projection, b.projection)
    assert not np.allclose(a.projection, c.projection)
    vggish = VGGishPCA.random(0)
    np.testing.assert_allclose(vggish.eigen_vectors @ vggish.eigen_vectors.T, np.eye(128), atol=1e-10)
    # Unwhitening the random YT8M projection gives orthonormal columns as well.
    unwhitened = a.projection * np.sqrt(15.0 * np.exp(-np.linspace(0.0, 9.0, 2048))[:1024] + 1e-4)
    np.testing.assert_allclose(unwhitened.T @ unwhitened, np.eye(1024), atol=1e-8)


def test_vggish_pca_formula_and_both_file_formats(tmp_path):
    rng = np.random.default_rng(2)
    vectors = rng.normal(size=(128, 128))
    means = rng.normal(size=128)
    np.savez(tmp_path / "vggish_pca_params.npz", pca_eigen_vectors=vectors, pca_means=means)
    torch.save({"pca_eigen_vectors": torch.from_numpy(vectors), "pca_means": torch.from_numpy(means)},
               tmp_path / "vggish_pca_params-970ea276.pth")
    from_npz = VGGishPCA.from_file(tmp_path / "vggish_pca_params.npz")
    from_pth = VGGishPCA.from_file(tmp_path / "vggish_pca_params-970ea276.pth")
    x = rng.normal(size=(4, 128))
    expected = np.stack([vectors @ (row - means) for row in x])
    np.testing.assert_allclose(from_npz(x), expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(from_pth(x), expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(from_npz(torch.from_numpy(x)).numpy(), expected, rtol=1e-5, atol=1e-4)


def test_vggish_pca_torch_file_holding_numpy_arrays(tmp_path):
    """torchvggish's .pth pickles NumPy arrays (its loader converts them with torch.as_tensor); files
    written under NumPy 1 name `numpy.core.multiarray`. Both load with weights_only=True."""
    rng = np.random.default_rng(5)
    vectors, means = rng.normal(size=(128, 128)), rng.normal(size=128).astype(np.float32)
    buffer = io.BytesIO()
    torch.save({"pca_eigen_vectors": vectors, "pca_means": means}, buffer, _use_new_zipfile_serialization=False)
    numpy2 = buffer.getvalue()
    numpy1 = numpy2.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    if numpy1 == numpy2:  # NumPy 1 installed: the file already carries the old name
        assert b"numpy.core.multiarray\n" in numpy2
    for name, data in (("np2.pth", numpy2), ("np1.pth", numpy1)):
        (tmp_path / name).write_bytes(data)
        pca = VGGishPCA.from_file(tmp_path / name)
        np.testing.assert_array_equal(pca.eigen_vectors, vectors)
        np.testing.assert_array_equal(pca.means, means.astype(np.float64))


def test_vggish_pca_torch_file_with_code_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    path = tmp_path / "evil.pth"
    torch.save({"pca_eigen_vectors": Payload(), "pca_means": np.zeros(128)}, path)
    with pytest.raises(VtagError, match="evil.pth"):
        VGGishPCA.from_file(path)


def test_vggish_pca_bad_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "vggish_pca_params.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(VtagError, match="vggish_pca_params.npz"):
        VGGishPCA.from_file(bad)


def test_quantize_round_and_truncate():
    f = np.array([-5.0, -2.0, 0.0, 1.0, 2.0, 3.0])
    # round((f + 2) * 255 / 4): 0, 0, 127.5 -> 128, 191.25 -> 191, 255, 255 (clipped)
    np.testing.assert_array_equal(quantize(f), [0, 0, 128, 191, 255, 255])
    # AudioSet truncates: 127.5 -> 127, 191.25 -> 191
    np.testing.assert_array_equal(quantize(f, mode="truncate"), [0, 0, 127, 191, 255, 255])
    assert quantize(f).dtype == np.uint8
    with pytest.raises(ValueError):
        quantize(f, mode="floor")


def test_dequantize_matches_the_starter_code_formula():
    q = np.array([0, 1, 128, 255], dtype=np.uint8)
    np.testing.assert_allclose(dequantize(q), q * 4.0 / 255.0 + 4.0 / 512.0 - 2.0, rtol=0, atol=1e-6)
    assert dequantize(q).dtype == np.float32
    assert dequantize(q)[0] == pytest.approx(-1.9921875)


def test_round_trip_error_is_within_half_a_step_plus_the_starter_offset():
    f = np.linspace(-2.0, 2.0, 10001)
    err = dequantize(quantize(f)) - f
    step = 4.0 / 255.0
    assert np.abs(err - 4.0 / 512.0).max() <= step / 2 + 1e-6
    # truncation sits half a step lower on average
    err_trunc = dequantize(quantize(f, mode="truncate")) - f
    assert err.mean() - err_trunc.mean() == pytest.approx(step / 2, abs=step / 50)


def test_loaders_without_files_name_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("VTAG_CACHE", str(tmp_path))
    with pytest.raises(VtagError, match="vtag weights"):
        load_yt8m_pca()
    with pytest.raises(VtagError, match="vtag weights"):
        load_vggish_pca()
    assert load_yt8m_pca(random_weights=True).projection.shape == (2048, 1024)
    assert load_vggish_pca(random_weights=True).eigen_vectors.shape == (128, 128)


def test_vggish_pca_loader_falls_back_to_the_torch_file(tmp_path, monkeypatch):
    monkeypatch.setenv("VTAG_CACHE", str(tmp_path))
    rng = np.random.default_rng(3)
    path = tmp_path / "vggish_pca_params-970ea276.pth"
    torch.save({"pca_eigen_vectors": torch.from_numpy(rng.normal(size=(128, 128))),
                "pca_means": torch.from_numpy(rng.normal(size=(128, 1)))}, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    registry = dict(weights.WEIGHT_FILES)
    registry[path.name] = weights.WeightFile(path.name, "http://127.0.0.1/x", digest[:8], None, "test copy")
    monkeypatch.setattr(weights, "WEIGHT_FILES", registry)
    assert load_vggish_pca().means.shape == (128,)


def test_golden_pca_arrays_are_sorted_components(shared_data):
    eigenvals = np.load(shared_data / "golden" / "yt8m_pca_eigenvals.npy")
    mean = np.load(shared_data / "golden" / "yt8m_pca_mean.npy")
    assert eigenvals.shape == mean.shape == (2048, 1)
    # Sorted by decreasing variance: the first 1,024 rows are the top components.
    assert (np.diff(eigenvals[:, 0]) <= 0).all()


def test_golden_pca_energy_is_consistent_with_the_formula(shared_data):
    """Without eigenvecs.npy, the golden frame still checks mean and whitening: un-whitening the
    expected output, f_j^2 (eigenval_j + 1e-4) summed over j, is the energy of (x - mean) projected
    on 1,024 orthonormal directions, so it must not exceed |x - mean|^2 (measured: 99.74% of it).
    Skipping the mean subtraction (105% of |x|^2) or whitening by the wrong eigenvalues (0.3%)
    does not fit."""
    with open(shared_data / "golden" / "sports1m_frame.pkl", "rb") as fh:
        golden = pickle.load(fh, encoding="latin1")
    mean = np.load(shared_data / "golden" / "yt8m_pca_mean.npy")[:, 0].astype(np.float64)
    eigenvals = np.load(shared_data / "golden" / "yt8m_pca_eigenvals.npy")[:, 0].astype(np.float64)
    projected = np.sum(golden["pca"] ** 2 * (eigenvals[:1024] + 1e-4))
    assert 0.99 < projected / np.sum((golden["original"] - mean) ** 2) <= 1.0
    assert projected / np.sum(golden["original"] ** 2) > 1.0  # impossible without the mean


def test_golden_sports1m_pca(shared_data):
    directory = weights.weight_path("yt8m_pca.tgz", required=False)
    if directory is None:
        pytest.skip("official yt8m_pca (eigenvecs.npy) not in the weight cache (vtag weights pull yt8m_pca.tgz)")
    with open(shared_data / "golden" / "sports1m_frame.pkl", "rb") as fh:
        golden = pickle.load(fh, encoding="latin1")
    got = load_yt8m_pca()(golden["original"])
    expected = golden["pca"]
    # The upstream YT8M test's metric and bound.
    difference = np.abs(got - expected) / (0.01 + np.maximum(np.abs(got), np.abs(expected)))
    assert difference.mean() < 1e-5
