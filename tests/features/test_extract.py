"""vtag.features.extract: the video -> YT8M features pipeline and `vtag extract`, with random weights (the
official ones cannot be downloaded here). Inception always runs at 299x299 (~11 GFLOP a frame on
CPU), so clips stay at 2-3 s."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from media_factory import make_broken, make_media
from vtag.cli import app
from vtag.errors import VtagError
from vtag.features.extract import FeatureExtractor, _fuse_batch_norm, assemble_features, pooled
from vtag.features.pca import dequantize, quantize
from vtag.io.records import pool_frames, read_records

ZERO_RGB = 128  # quantize(0.0) rounding: (0 + 2) * 255 / 4 = 127.5 -> 128
ZERO_AUDIO = 127  # truncating: 127.5 -> 127


@pytest.fixture(scope="module")
def extractor() -> FeatureExtractor:
    return FeatureExtractor(random_weights=True, batch_size=4)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_media(tmp_path_factory.mktemp("clips") / "clip.mp4", size=(96, 64), duration_s=2.5,
                      audio_rate=48000, audio_channels=2)


# ---- preprocessing and the network ---------------------------------------------------------------


def test_batch_norm_folding_keeps_the_output():
    from vtag.features.inception import load_inception

    torch.manual_seed(1)
    plain = load_inception(random_weights=True)
    for module in plain.modules():  # non-trivial statistics, as trained weights have
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    x = torch.randn(1, 3, 299, 299)
    with torch.inference_mode():
        expected = plain.pool3(x)
        fused = _fuse_batch_norm(plain).pool3(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules())
    torch.testing.assert_close(fused, expected, rtol=1e-4, atol=1e-4 * expected.abs().mean().item())


def test_batches_give_the_same_features_as_single_frames(extractor):
    frames = np.random.default_rng(2).integers(0, 256, (5, 50, 70, 3), dtype=np.uint8)
    batched = extractor.visual_features(frames)  # batch size 4: one batch of 4, one of 1
    single = np.concatenate([extractor.visual_features(f[None]) for f in frames[[1, 4]]])
    assert batched.shape == (5, 1024) and batched.dtype == np.float32
    batched = batched[[1, 4]]
    np.testing.assert_allclose(batched, single, rtol=1e-3, atol=1e-3)
    assert np.abs(batched[0] - batched[1]).max() > 1e-2  # different frames, different features


# ---- row rules ------------------------------------------------------------------------------------


def test_assemble_pads_audio_with_quantized_zero_and_means_real_rows():
    visual = np.full((4, 1024), 0.5, np.float32)
    audio = np.stack([np.full(128, v, np.float32) for v in (0.1, 0.3)])
    f = assemble_features("x", visual, audio, 4.2)
    assert f.rgb.shape == (4, 1024) and f.audio.shape == (4, 128)
    np.testing.assert_array_equal(f.audio[:2], quantize(audio, "truncate"))
    assert (f.audio[2:] == ZERO_AUDIO).all()
    np.testing.assert_array_equal(f.rgb, quantize(visual, "round"))
    np.testing.assert_allclose(f.mean_audio, 0.2, rtol=1e-6)  # over the 2 real rows, floats
    np.testing.assert_allclose(f.mean_rgb, 0.5)
    assert f.audio_rows == 2 and f.has_video and f.has_audio


def test_assemble_truncates_longer_audio():
    f = assemble_features("x", np.zeros((2, 1024), np.float32), np.ones((5, 128), np.float32), 2.0)
    assert f.audio.shape == (2, 128) and f.audio_rows == 2
    np.testing.assert_allclose(f.mean_audio, 1.0)


def test_assemble_missing_modalities():
    video_only = assemble_features("v", np.full((3, 1024), -1.0, np.float32), None, 3.0)
    assert (video_only.audio == ZERO_AUDIO).all() and video_only.audio.shape == (3, 128)
    assert not video_only.has_audio and video_only.missing == ["audio"]
    assert (video_only.mean_audio == 0).all()
    audio_only = assemble_features("a", None, np.full((400, 128), 0.25, np.float32), 400.0, max_frames=300)
    assert audio_only.rgb.shape == (300, 1024) and (audio_only.rgb == ZERO_RGB).all()
    assert audio_only.audio.shape == (300, 128) and audio_only.missing == ["video"]
    assert (audio_only.mean_rgb == 0).all()
    with pytest.raises(VtagError, match="neither video nor audio"):
        assemble_features("n", None, None, 0.0)
    with pytest.raises(VtagError, match="shorter than one 0.96 s"):
        assemble_features("s", None, np.zeros((0, 128), np.float32), 0.5)


# ---- whole files ----------------------------------------------------------------------------------


def test_extract_generated_clip(extractor, clip):
    seen = []
    f = extractor.extract(clip, progress=lambda done, total: seen.append((done, total)))
    assert [round(done, 2) for done, _ in seen] == [0.0, 1.04, 2.04, 2.5]  # seconds processed
    assert all(total == pytest.approx(2.5, abs=0.05) for _, total in seen)
    assert f.id == "clip" and f.random_weights
    assert f.rgb.shape == (3, 1024) and f.audio.shape == (3, 128)  # frames at 0, 1.04, 2.04 s
    assert f.rgb.dtype == np.uint8 and f.audio.dtype == np.uint8
    assert f.has_video and f.has_audio and f.audio_rows == 2  # 2.5 s of audio: 2 whole 0.96 s windows
    assert (f.audio[2] == ZERO_AUDIO).all() and not (f.audio[0] == ZERO_AUDIO).all()
    np.testing.assert_allclose(f.frame_times_s, [0.0, 1.04, 2.04], atol=1e-6)
    # The means are of the floats: where no row was clipped at +-2 they agree with the quantized rows
    # to within a quantization step (half a step of rounding plus the dequantizer's 4/512 offset).
    unclipped = ((f.rgb > 0) & (f.rgb < 255)).all(axis=0)
    assert unclipped.sum() > 500
    assert np.abs(dequantize(f.rgb).mean(0) - f.mean_rgb)[unclipped].max() < 4 / 255
    visual, audio = pooled(f, "mean+std")
    assert visual.shape == (2048,) and audio.shape == (256,)


def test_extract_video_only_and_max_frames(shared_data):
    capped = FeatureExtractor(random_weights=True, max_frames=2)
    f = capped.extract(shared_data / "media" / "bikes.mp4")
    assert f.rgb.shape == (2, 1024) and (f.audio == ZERO_AUDIO).all()
    assert f.missing == ["audio"] and f.duration_s == pytest.approx(10.0)


def test_extract_audio_only(extractor, shared_data):
    f = extractor.extract(shared_data / "media" / "6457__dobroide__sunday-02.mp3")
    assert f.rgb.shape == (17, 1024) and (f.rgb == ZERO_RGB).all()  # 17.6 s: 17 whole windows
    assert f.audio_rows == 17 and f.missing == ["video"]


def test_extract_broken_file_names_it(extractor, tmp_path):
    path = make_broken(tmp_path / "bad.mp4", "garbage")
    with pytest.raises(VtagError, match="bad.mp4"):
        extractor.extract(path)


# ---- the command ----------------------------------------------------------------------------------


def test_cli_extract_frame_and_video_level(clip, tmp_path):
    bad = make_broken(tmp_path / "notavideo.mp4", "text")
    runner = CliRunner()
    frame_out = tmp_path / "frames.tfrecord"
    result = runner.invoke(app, ["extract", str(clip), str(bad), "-o", str(frame_out), "--random-weights"])
    assert result.exit_code == 1, result.output  # one file failed, the other was written
    assert "NOT meaningful" in result.output and "notavideo.mp4" in result.output
    (record,) = read_records(frame_out)
    assert record.id == "clip" and record.level == "frame" and record.labels is None
    assert record.rgb.shape == (3, 1024) and record.audio.shape == (3, 128)

    video_out = tmp_path / "video.tfrecord"
    result = runner.invoke(app, ["extract", str(clip), "-o", str(video_out), "--level", "video",
                                 "--random-weights", "--max-frames", "2"])
    assert result.exit_code == 0, result.output
    (video,) = read_records(video_out)
    assert video.level == "video" and video.rgb.shape == (1024,) and video.audio.shape == (128,)

    # The same features straight from Python: the frame record pools to what `pooled` gives, the
    # video record holds the float means.
    f = FeatureExtractor(random_weights=True, max_frames=2).extract(clip)
    np.testing.assert_allclose(video.rgb, f.mean_rgb, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(video.audio, f.mean_audio, rtol=1e-5, atol=1e-5)
    rv, ra = pool_frames(record.rgb[:2], record.audio[:2])
    pv, pa = pooled(f)
    np.testing.assert_allclose(rv, pv, atol=2 / 255)  # 3 vs 2 frames aside, same quantized rows
    np.testing.assert_allclose(ra, pa, atol=1e-6)


def test_cli_extract_all_failed_writes_nothing(tmp_path):
    bad = make_broken(tmp_path / "empty.mp4", "empty")
    out = tmp_path / "out.tfrecord"
    result = CliRunner().invoke(app, ["extract", str(bad), "-o", str(out), "--random-weights"])
    assert result.exit_code == 1 and not out.exists()
    assert "empty.mp4" in result.output and "nothing written" in result.output


def test_cli_extract_without_weights_names_the_fix(clip, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VTAG_CACHE", str(tmp_path / "empty-cache"))
    from vtag.cli import main

    monkeypatch.setattr("sys.argv", ["vtag", "extract", str(clip), "-o", str(tmp_path / "o.tfrecord")])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "vtag weights" in err and "Traceback" not in err
    assert not (tmp_path / "o.tfrecord").exists()
