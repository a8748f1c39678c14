"""Inception-v3 pool_3 port: state-dict layout, TF1 resize, forward shape; golden features when the
official weights are in the cache."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vtag import weights
from vtag.errors import VtagError
from vtag.features.inception import (
    WEIGHT_FILE,
    InceptionV3Pool3,
    load_inception,
    tf1_resize_bilinear,
    tf1_resize_matrix,
)


def _conv(name, cin, cout, kh, kw=None):
    return name, (cout, cin, kh, kw if kw is not None else kh)


def _block_a(p, cin, pool):
    return [_conv(f"{p}.branch1x1", cin, 64, 1), _conv(f"{p}.branch5x5_1", cin, 48, 1),
            _conv(f"{p}.branch5x5_2", 48, 64, 5), _conv(f"{p}.branch3x3dbl_1", cin, 64, 1),
            _conv(f"{p}.branch3x3dbl_2", 64, 96, 3), _conv(f"{p}.branch3x3dbl_3", 96, 96, 3),
            _conv(f"{p}.branch_pool", cin, pool, 1)]


def _block_c(p, c7):
    return [_conv(f"{p}.branch1x1", 768, 192, 1), _conv(f"{p}.branch7x7_1", 768, c7, 1),
            _conv(f"{p}.branch7x7_2", c7, c7, 1, 7), _conv(f"{p}.branch7x7_3", c7, 192, 7, 1),
            _conv(f"{p}.branch7x7dbl_1", 768, c7, 1), _conv(f"{p}.branch7x7dbl_2", c7, c7, 7, 1),
            _conv(f"{p}.branch7x7dbl_3", c7, c7, 1, 7), _conv(f"{p}.branch7x7dbl_4", c7, c7, 7, 1),
            _conv(f"{p}.branch7x7dbl_5", c7, 192, 1, 7), _conv(f"{p}.branch_pool", 768, 192, 1)]


def _block_e(p, cin):
    return [_conv(f"{p}.branch1x1", cin, 320, 1), _conv(f"{p}.branch3x3_1", cin, 384, 1),
            _conv(f"{p}.branch3x3_2a", 384, 384, 1, 3), _conv(f"{p}.branch3x3_2b", 384, 384, 3, 1),
            _conv(f"{p}.branch3x3dbl_1", cin, 448, 1), _conv(f"{p}.branch3x3dbl_2", 448, 384, 3),
            _conv(f"{p}.branch3x3dbl_3a", 384, 384, 1, 3), _conv(f"{p}.branch3x3dbl_3b", 384, 384, 3, 1),
            _conv(f"{p}.branch_pool", cin, 192, 1)]


def official_layout() -> dict[str, tuple[int, ...]]:
    """Key -> shape of pytorch-fid's pt_inception-2015-12-05 state dict: torchvision's Inception3
    module names without AuxLogits, every conv bias-free with a BatchNorm (num_batches_tracked
    included: the file carries it), and a 1,008-way fc."""
    convs = [_conv("Conv2d_1a_3x3", 3, 32, 3), _conv("Conv2d_2a_3x3", 32, 32, 3),
             _conv("Conv2d_2b_3x3", 32, 64, 3), _conv("Conv2d_3b_1x1", 64, 80, 1),
             _conv("Conv2d_4a_3x3", 80, 192, 3)]
    convs += _block_a("Mixed_5b", 192, 32) + _block_a("Mixed_5c", 256, 64) + _block_a("Mixed_5d", 288, 64)
    convs += [_conv("Mixed_6a.branch3x3", 288, 384, 3), _conv("Mixed_6a.branch3x3dbl_1", 288, 64, 1),
              _conv("Mixed_6a.branch3x3dbl_2", 64, 96, 3), _conv("Mixed_6a.branch3x3dbl_3", 96, 96, 3)]
    convs += _block_c("Mixed_6b", 128) + _block_c("Mixed_6c", 160) + _block_c("Mixed_6d", 160)
    convs += _block_c("Mixed_6e", 192)
    convs += [_conv("Mixed_7a.branch3x3_1", 768, 192, 1), _conv("Mixed_7a.branch3x3_2", 192, 320, 3),
              _conv("Mixed_7a.branch7x7x3_1", 768, 192, 1), _conv("Mixed_7a.branch7x7x3_2", 192, 192, 1, 7),
              _conv("Mixed_7a.branch7x7x3_3", 192, 192, 7, 1), _conv("Mixed_7a.branch7x7x3_4", 192, 192, 3)]
    convs += _block_e("Mixed_7b", 1280) + _block_e("Mixed_7c", 2048)
    layout = {}
    for name, shape in convs:
        out = shape[0]
        layout[f"{name}.conv.weight"] = shape
        for stat in ("weight", "bias", "running_mean", "running_var"):
            layout[f"{name}.bn.{stat}"] = (out,)
        layout[f"{name}.bn.num_batches_tracked"] = ()
    layout["fc.weight"] = (1008, 2048)
    layout["fc.bias"] = (1008,)
    return layout


def test_state_dict_matches_the_official_layout():
    expected = official_layout()
    assert len(expected) == 566  # 94 conv+BN units x 6 tensors + fc weight and bias
    got = {k: tuple(v.shape) for k, v in InceptionV3Pool3().state_dict().items()}
    assert set(got) == set(expected)
    assert got == expected


def test_batch_norm_epsilon_is_tensorflows():
    bn = InceptionV3Pool3().Mixed_7c.branch_pool.bn
    assert bn.eps == pytest.approx(0.001)


def _tf1_resize_reference(image: np.ndarray, out_h: int, out_w: int, ys=None, xs=None) -> np.ndarray:
    """Pixel-by-pixel TF1 legacy bilinear: source = dst * (in / out) in float32, neighbours
    floor(source) and min(ceil(source), in - 1), lerp along x, then along y. `ys`/`xs` pick a
    subset of output rows/columns (the loop is slow)."""
    in_h, in_w = image.shape[:2]
    sy, sx = np.float32(in_h) / np.float32(out_h), np.float32(in_w) / np.float32(out_w)
    ys = range(out_h) if ys is None else ys
    xs = range(out_w) if xs is None else xs
    out = np.zeros((len(ys), len(xs)) + image.shape[2:], dtype=np.float64)
    for i, y in enumerate(ys):
        fy = np.float32(y) * sy
        y0, y1 = int(np.floor(fy)), min(int(np.ceil(fy)), in_h - 1)
        dy = float(fy) - np.floor(fy)
        for j, x in enumerate(xs):
            fx = np.float32(x) * sx
            x0, x1 = int(np.floor(fx)), min(int(np.ceil(fx)), in_w - 1)
            dx = float(fx) - np.floor(fx)
            top = image[y0, x0] + (image[y0, x1] - image[y0, x0]) * dx
            bottom = image[y1, x0] + (image[y1, x1] - image[y1, x0]) * dx
            out[i, j] = top + (bottom - top) * dy
    return out


@pytest.mark.parametrize("in_hw,out_hw", [((5, 7), (3, 4)), ((4, 6), (9, 11)), ((6, 6), (6, 6)), ((13, 3), (7, 8))])
def test_tf1_resize_matrices_match_the_formula(in_hw, out_hw):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=in_hw + (3,)).astype(np.float64)
    expected = _tf1_resize_reference(image, *out_hw)
    rows = tf1_resize_matrix(in_hw[0], out_hw[0])
    cols = tf1_resize_matrix(in_hw[1], out_hw[1])
    got = np.einsum("oh,hwc,pw->opc", rows, image, cols, optimize=True)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("in_hw", [(240, 320), (7, 5), (720, 1280)])
def test_tf1_resize_to_299_matches_the_formula(in_hw):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(1, 3) + in_hw).astype(np.float32)
    ours = tf1_resize_bilinear(torch.from_numpy(image), 299)[0].permute(1, 2, 0).numpy()
    assert ours.shape == (299, 299, 3)
    picks = [0, 1, 2, 57, 148, 149, 150, 297, 298]
    expected = _tf1_resize_reference(image[0].transpose(1, 2, 0).astype(np.float64), 299, 299, picks, picks)
    np.testing.assert_allclose(ours[np.ix_(picks, picks)], expected, rtol=0, atol=2e-3)
    # Every pixel: the gather/blend equals the matrix form of the same mapping.
    rows, cols = tf1_resize_matrix(in_hw[0], 299), tf1_resize_matrix(in_hw[1], 299)
    dense = (rows @ image[0].astype(np.float64) @ cols.T).transpose(1, 2, 0)
    np.testing.assert_allclose(ours, dense, rtol=0, atol=2e-3)


def test_tf1_resize_is_not_torchs_half_pixel_bilinear():
    image = torch.from_numpy(np.random.default_rng(2).integers(0, 256, (1, 3, 240, 320)).astype(np.float32))
    ours = tf1_resize_bilinear(image, 299)
    # TF1 legacy maps output 0 exactly onto input 0; torch's half-pixel mapping does not.
    torch.testing.assert_close(ours[..., 0, 0], image[..., 0, 0])
    half_pixel = F.interpolate(image, size=(299, 299), mode="bilinear", align_corners=False)
    assert (ours - half_pixel).abs().max() > 1.0


@pytest.fixture(scope="module")
def random_forward():
    """One forward of a random-weight model on 2 small frames (Inception costs ~6 GFLOP a frame on
    CPU), keeping the inputs of the blocks and of their pool branches."""
    model = load_inception(random_weights=True)
    seen = {}

    def keep(name):
        return lambda module, inputs, output: seen.update({name: inputs[0]})

    for block in ("Mixed_5b", "Mixed_6b", "Mixed_7b", "Mixed_7c"):
        getattr(model, block).register_forward_hook(keep(block))
        getattr(model, block).branch_pool.register_forward_hook(keep(block + ".pool"))
    with torch.inference_mode():
        features = model(torch.randint(0, 256, (2, 48, 64, 3), dtype=torch.uint8))
    return model, features, seen


def test_forward_shape_on_random_weights(random_forward):
    model, features, _ = random_forward
    assert features.shape == (2, 2048) and features.dtype == torch.float32
    assert torch.isfinite(features).all() and (features >= 0).all()  # an average of ReLU outputs
    assert features.std() > 0.01  # He init keeps the random features at a usable scale
    with pytest.raises(ValueError):
        model(torch.zeros(1, 3, 48, 64, dtype=torch.uint8))


def test_pool_branches_follow_the_2015_graph(random_forward):
    """FID-port behaviour: block average pools exclude padding; Mixed_7c's pool branch max-pools."""
    _, _, seen = random_forward
    for block in ("Mixed_5b", "Mixed_6b", "Mixed_7b"):
        expected = F.avg_pool2d(seen[block], 3, stride=1, padding=1, count_include_pad=False)
        torch.testing.assert_close(seen[block + ".pool"], expected)
        with_pad = F.avg_pool2d(seen[block], 3, stride=1, padding=1, count_include_pad=True)
        assert not torch.allclose(seen[block + ".pool"], with_pad)  # the borders differ
    torch.testing.assert_close(seen["Mixed_7c.pool"], F.max_pool2d(seen["Mixed_7c"], 3, stride=1, padding=1))
    assert seen["Mixed_7c"].shape == (2, 2048, 8, 8)


def test_preprocess_scales_like_the_graph():
    model = InceptionV3Pool3()
    frames = torch.full((1, 10, 10, 3), 255, dtype=torch.uint8)
    x = model.preprocess(frames)
    assert x.shape == (1, 3, 299, 299)
    torch.testing.assert_close(x, torch.full_like(x, 127.0 / 128.0))


def test_loader_reads_a_state_dict_strictly(tmp_path, monkeypatch, random_forward):
    source = random_forward[0]
    path = tmp_path / WEIGHT_FILE
    torch.save(source.state_dict(), path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    registry = dict(weights.WEIGHT_FILES)
    registry[WEIGHT_FILE] = weights.WeightFile(WEIGHT_FILE, "http://127.0.0.1/x", digest, None, "test copy")
    monkeypatch.setattr(weights, "WEIGHT_FILES", registry)
    monkeypatch.setenv("VTAG_CACHE", str(tmp_path))
    loaded = load_inception()
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_missing_weights_name_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("VTAG_CACHE", str(tmp_path))
    with pytest.raises(VtagError, match="vtag weights") as info:
        load_inception()
    assert WEIGHT_FILE in str(info.value)


def _mean_elementwise_difference(a: np.ndarray, b: np.ndarray) -> float:
    """The upstream YT8M test's metric: |a - b| / (0.01 + max(|a|, |b|)), averaged."""
    return float((np.abs(a - b) / (0.01 + np.maximum(np.abs(a), np.abs(b)))).mean())


def test_golden_pool3_features(shared_data):
    path = weights.weight_path(WEIGHT_FILE, required=False)
    if path is None:
        pytest.skip(f"official {WEIGHT_FILE} not in the weight cache (vtag weights pull)")
    from vtag.features.still import read_image

    # Decoded by PIL, as the upstream test does (FFmpeg's JPEG chroma upsampling differs).
    image = read_image(shared_data / "golden" / "AO7u7fwGzJQ_at_second_0.jpg")
    frame = torch.from_numpy(image.copy())[None]  # [1, H, W, 3] uint8 RGB
    expected = np.array(json.loads((shared_data / "golden" / "AO7u7fwGzJQ_at_second_0_feats.json").read_text()))
    with torch.inference_mode():
        got = load_inception()(frame)[0].numpy()
    assert _mean_elementwise_difference(got, expected) < 0.1


def test_tf1_resize_of_uint8_equals_resize_of_float():
    # preprocess gathers from the uint8 frame before casting, to keep full-size floats out of memory
    image = torch.from_numpy(np.random.default_rng(3).integers(0, 256, (2, 3, 63, 97), dtype=np.uint8))
    torch.testing.assert_close(tf1_resize_bilinear(image, 299), tf1_resize_bilinear(image.float(), 299), rtol=0, atol=0)
