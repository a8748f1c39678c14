"""AudioSet's own VGGish files: registry, pull order (official first, torchvggish ports as fallback),
which file loading prefers, the PCA npz loader, and a user's own weights imported with --unverified."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_weights import _Server, _sha  # the local HTTP server of the pull tests
from typer.testing import CliRunner

from vtag import weights
from vtag.features import vggish_weights
from vtag.errors import VtagError
from vtag.features.pca import VGGishPCA, load_vggish_pca
from vtag.io.user_weights import forget_unverified, unverified_path, unverified_status
from vtag.weights import WeightFile, pull, status


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("VTAG_CACHE", str(root))
    return root


def _pair(server, official: bytes | None, port: bytes, official_sha: str | None = None) -> dict[str, WeightFile]:
    """An official file and its port, as the real registry pairs vggish_model.ckpt and vggish-10086976.pth."""
    if official is not None:
        server.files["official.ckpt"] = official
    server.files["port.pth"] = port
    sha = official_sha or _sha(official or b"never served")
    return {
        "official.ckpt": WeightFile("official.ckpt", f"{server.url}/official.ckpt", sha, None, "official"),
        "port.pth": WeightFile("port.pth", f"{server.url}/port.pth", _sha(port)[:8], None, "port",
                               fallback_for="official.ckpt"),
    }


def test_registry_has_audiosets_files_with_their_checksums_and_urls():
    ckpt = weights.WEIGHT_FILES["vggish_model.ckpt"]
    assert ckpt.url == "https://storage.googleapis.com/audioset/vggish_model.ckpt"
    assert ckpt.sha256 == "0962b1914e3e053922d957c45bc84a78c985765641dc6bceeeb3a7d8dfecfdf6"
    assert ckpt.size == 291_108_469
    npz = weights.WEIGHT_FILES["vggish_pca_params.npz"]
    assert npz.url == "https://storage.googleapis.com/audioset/vggish_pca_params.npz"
    assert npz.sha256 == "4d878af3e306defbfb37095365aa7e5a6cecb86bad13e859e626151c4e6a8b9d" and npz.size == 73_020
    assert weights.WEIGHT_FILES["vggish-10086976.pth"].fallback_for == "vggish_model.ckpt"
    assert weights.WEIGHT_FILES["vggish_pca_params-970ea276.pth"].fallback_for == "vggish_pca_params.npz"
    order = list(weights.WEIGHT_FILES)
    assert order.index("vggish_model.ckpt") < order.index("vggish-10086976.pth")


def test_pull_fetches_the_official_file_and_not_the_port(server, cache):
    registry = _pair(server, b"official weights" * 100, b"port weights" * 100)
    assert pull(progress=False, registry=registry) == [cache / "official.ckpt"]
    assert server.requests == [("official.ckpt", None)]
    assert [(s.name, s.present, s.verified) for s in status(registry)] == [
        ("official.ckpt", True, True), ("port.pth", False, False)]


def test_pull_falls_back_to_the_port_when_the_official_file_is_unreachable(server, cache, capsys):
    registry = _pair(server, None, b"port weights" * 100)  # the official URL answers 404
    assert pull(progress=False, registry=registry) == [cache / "port.pth"]
    assert [name for name, _ in server.requests] == ["official.ckpt", "port.pth"]
    assert "fetching the port port.pth instead" in capsys.readouterr().err


def test_pull_falls_back_when_the_official_download_fails_its_checksum(server, cache):
    registry = _pair(server, b"tampered" * 100, b"port weights" * 100, official_sha="0" * 64)
    assert pull(progress=False, registry=registry) == [cache / "port.pth"]
    assert not (cache / "official.ckpt").exists() and not (cache / "official.ckpt.part").exists()


def test_pull_fails_when_official_and_port_both_fail(server, cache):
    registry = _pair(server, None, b"port weights")
    server.files.pop("port.pth")
    with pytest.raises(VtagError, match="port.pth"):
        pull(progress=False, registry=registry)


def test_pull_of_a_named_port_fetches_just_it(server, cache):
    registry = _pair(server, b"official weights", b"port weights")
    assert pull(["port.pth"], progress=False, registry=registry) == [cache / "port.pth"]
    assert server.requests == [("port.pth", None)]


# ---- which file loading takes ---------------------------------------------------------------------


def _fake_official_registry(monkeypatch, official: bytes, port: bytes) -> None:
    """Stand-ins under the real names, with checksums of their fake contents."""
    registry = dict(weights.WEIGHT_FILES)
    registry["vggish_model.ckpt"] = WeightFile("vggish_model.ckpt", "http://127.0.0.1:9/x", _sha(official), None, "o")
    registry["vggish-10086976.pth"] = WeightFile("vggish-10086976.pth", "http://127.0.0.1:9/y", _sha(port)[:8], None,
                                                 "p", fallback_for="vggish_model.ckpt")
    monkeypatch.setattr(weights, "WEIGHT_FILES", registry)


def test_loading_prefers_official_then_port_then_a_clear_error(cache, monkeypatch):
    _fake_official_registry(monkeypatch, b"official", b"port")
    with pytest.raises(VtagError, match="missing weight file vggish_model.ckpt"):
        vggish_weights.network_weights_path()
    cache.mkdir()
    (cache / "vggish-10086976.pth").write_bytes(b"port")
    assert vggish_weights.network_weights_path() == cache / "vggish-10086976.pth"
    (cache / "vggish_model.ckpt").write_bytes(b"official")
    assert vggish_weights.network_weights_path() == cache / "vggish_model.ckpt"
    (cache / "vggish_model.ckpt").write_bytes(b"OFFICIAL")  # no longer the verified file: skipped
    assert vggish_weights.network_weights_path() == cache / "vggish-10086976.pth"


def _pca_npz(path, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    vectors, means = rng.standard_normal((128, 128)), rng.standard_normal((128, 1))
    np.savez(path, pca_eigen_vectors=vectors, pca_means=means)  # AudioSet's shapes: means is [128, 1]
    return vectors, means


def test_pca_npz_loads_without_pickle_and_a_pickled_one_is_refused(tmp_path):
    vectors, means = _pca_npz(tmp_path / "vggish_pca_params.npz")
    pca = VGGishPCA.from_file(tmp_path / "vggish_pca_params.npz")
    np.testing.assert_array_equal(pca.eigen_vectors, vectors)
    np.testing.assert_array_equal(pca.means, means[:, 0])
    x = np.random.default_rng(1).standard_normal((3, 128))
    np.testing.assert_allclose(pca(x), (vectors @ (x.T - means)).T, rtol=1e-5, atol=1e-5)
    pickled = tmp_path / "pickled.npz"
    objects = np.empty(1, dtype=object)
    objects[0] = {"code": "would run on unpickling"}
    np.savez(pickled, pca_eigen_vectors=objects, pca_means=means)
    with pytest.raises(VtagError, match="not a VGGish PCA parameter file") as info:
        VGGishPCA.from_file(pickled)
    assert "\n" not in str(info.value)


# ---- a user's own weights -------------------------------------------------------------------------


def test_import_unverified_pca_is_listed_as_unverified_and_used(tmp_path, cache, monkeypatch):
    from vtag.cli import app

    vectors, _ = _pca_npz(tmp_path / "my_finetuned_pca.npz", seed=3)
    runner = CliRunner()
    env = {"VTAG_CACHE": str(cache), "COLUMNS": "250"}
    result = runner.invoke(app, ["weights", "import", "--unverified", str(tmp_path / "my_finetuned_pca.npz")], env=env)
    assert result.exit_code == 0, result.output
    assert "UNVERIFIED" in result.output and "VGGish PCA" in result.output
    assert unverified_path("vggish_pca") == cache / "unverified" / "vggish_pca.npz"
    np.testing.assert_array_equal(load_vggish_pca().eigen_vectors, vectors)
    listed = runner.invoke(app, ["weights"], env=env)
    assert listed.exit_code == 0, listed.output
    row = next(line for line in listed.output.splitlines() if "vggish_pca (user's own)" in line)
    assert "unverified" in row
    assert [r.name for r in unverified_status()] == ["vggish_pca (user's own)"]
    forgot = runner.invoke(app, ["weights", "forget", "vggish_pca"], env=env)
    assert forgot.exit_code == 0 and unverified_path("vggish_pca") is None
    with pytest.raises(VtagError, match="missing weight file"):
        load_vggish_pca()


def test_official_files_stay_verified_beside_an_unverified_import(tmp_path, cache, monkeypatch):
    official = b"official npz bytes"
    registry = {"vggish_pca_params.npz": WeightFile("vggish_pca_params.npz", "http://127.0.0.1:9/z",
                                                    _sha(official), None, "o")}
    monkeypatch.setattr(weights, "WEIGHT_FILES", registry)
    cache.mkdir()
    (cache / "vggish_pca_params.npz").write_bytes(official)
    _pca_npz(tmp_path / "mine.npz")
    vggish_weights.import_unverified(tmp_path / "mine.npz")
    assert [(s.name, s.verified) for s in status()] == [("vggish_pca_params.npz", True)]
    assert [(s.name, s.present, s.verified) for s in unverified_status()] == [("vggish_pca (user's own)", True, False)]


def test_import_unverified_says_which_role_by_format_and_shape(tmp_path, cache):
    from vtag.features.vggish import VGGish

    state_path = tmp_path / "finetuned.pth"
    torch.save(VGGish().state_dict(), state_path)
    role = vggish_weights.identify(state_path)
    assert (role.role, role.fmt) == ("vggish", "torch")
    _, installed = vggish_weights.import_unverified(state_path)
    assert installed == cache / "unverified" / "vggish.pth"
    assert vggish_weights.network_weights_path() == installed  # the user's file wins while installed
    assert forget_unverified("vggish") == installed and not installed.exists()

    wrong = tmp_path / "wrong.pth"
    torch.save({"features.0.weight": torch.zeros(3, 3)}, wrong)
    with pytest.raises(VtagError, match="torchvggish's layout"):
        vggish_weights.identify(wrong)
    with pytest.raises(VtagError, match="not a VGGish checkpoint with AudioSet's variable names"):
        vggish_weights.identify(vggish_weights.Path(__file__).parent / "features" / "fixtures" / "tf_v1_small.ckpt")
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    with pytest.raises(VtagError, match="none of them"):
        vggish_weights.identify(notes)
    bad_pca = tmp_path / "bad.npz"
    np.savez(bad_pca, pca_eigen_vectors=np.zeros((64, 64)), pca_means=np.zeros(64))
    with pytest.raises(VtagError, match="expected \\(128, 128\\)"):
        vggish_weights.identify(bad_pca)


def test_conv_kernel_mapping_matches_an_nhwc_reference():
    """HWIO -> OIHW, checked against a direct NHWC cross-correlation with SAME padding in NumPy."""
    rng = np.random.default_rng(0)
    kernel = rng.standard_normal((3, 3, 2, 5)).astype(np.float32)  # TF: [h, w, in, out]
    image = rng.standard_normal((1, 6, 4, 2)).astype(np.float32)  # NHWC
    padded = np.pad(image, ((0, 0), (1, 1), (1, 1), (0, 0)))
    reference = np.zeros((1, 6, 4, 5), np.float32)
    for y in range(6):
        for x in range(4):
            reference[0, y, x] = np.einsum("hwi,hwio->o", padded[0, y:y + 3, x:x + 3], kernel)
    weight = torch.from_numpy(vggish_weights.tf_kernel_to_torch(kernel))
    ours = torch.nn.functional.conv2d(torch.from_numpy(image).permute(0, 3, 1, 2), weight, padding=1)
    np.testing.assert_allclose(ours.permute(0, 2, 3, 1).numpy(), reference, rtol=1e-5, atol=1e-5)
    dense = rng.standard_normal((7, 3)).astype(np.float32)  # TF fc: [in, out]
    v = rng.standard_normal(7).astype(np.float32)
    np.testing.assert_allclose(vggish_weights.tf_kernel_to_torch(dense) @ v, v @ dense, rtol=1e-5)

