"""vtag's feature pipeline against the reference implementations, stage by stage, on random weights.

    python bench/verify_feature_parity.py            # installs .parity-venv/ on first use, then runs
    python bench/verify_feature_parity.py --only resize,audio
    python bench/verify_feature_parity.py --list

The references (bench/parity-requirements.txt: TensorFlow, tf-slim, pytorch-fid, OpenCV, torchvggish,
resampy, Pillow) live in a side environment, `.parity-venv/`, never in vtag's own. When started from
vtag's environment this script creates it (torch, torchvision and numpy are shared with vtag's
environment through a .pth file, so the versions under test are vtag's), installs the references
and runs itself again there, with the repository on sys.path. Everything runs in that one process:
vtag's side and the reference's side see the same inputs.

For every case it prints the largest absolute difference and how many 8-bit codes differ (for
audio and network stages: the features run through the same random VGGish/Inception, PCA and
quantizer on both sides, so a difference anywhere upstream shows up as codes). A case over its
limit fails the run (exit 1).

Adding a stage: write `def stage_NAME(ctx) -> list[Case]` and append it to `STAGES`. `ctx` holds a
scratch folder (`ctx.tmp`), the shared data folder (`ctx.data`, may be None) and seeded random
networks (`ctx.vggish`, `ctx.vggish_pca`, `ctx.inception`, `ctx.yt8m_pca`).
"""

from __future__ import annotations

import argparse
import decimal
import functools
import os
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / ".parity-venv"
REQUIREMENTS = REPO / "bench" / "parity-requirements.txt"
REFERENCE_MODULES = ("tensorflow", "tf_slim", "pytorch_fid", "cv2", "torchvggish", "resampy", "soundfile", "PIL", "scipy")


# ---- side environment -----------------------------------------------------------------------------


def _references_importable() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in REFERENCE_MODULES)


def ensure_side_environment(argv: list[str]) -> None:
    """Re-run this script inside .parity-venv/ (creating it first) unless the references are here."""
    if _references_importable():
        return
    if os.environ.get("VTAG_PARITY_CHILD"):
        sys.exit(f"{VENV}: references still missing after install ({', '.join(REFERENCE_MODULES)})")
    python = VENV / "bin" / "python"
    started = time.perf_counter()
    if not python.exists():
        print(f"creating {VENV} ...", flush=True)
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(VENV)], check=True)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # Lowest priority (the name sorts last): the side venv's own packages win, torch & co. come from here.
    shared = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(site) / "zz_vtag_main_venv.pth").write_text("\n".join(sorted(shared)) + "\n")
    check = subprocess.run([str(python), "-c", "import " + ",".join(REFERENCE_MODULES)], capture_output=True)
    if check.returncode != 0:
        print(f"installing {REQUIREMENTS.name} into {VENV} ...", flush=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        "-r", str(REQUIREMENTS)], check=True)
        print(f"side environment ready in {time.perf_counter() - started:.0f} s", flush=True)
    env = dict(os.environ, VTAG_PARITY_CHILD="1",
               PYTHONPATH=os.pathsep.join([str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    sys.exit(subprocess.run([str(python), str(Path(__file__).resolve())] + argv, env=env).returncode)


# ---- results --------------------------------------------------------------------------------------


@dataclass
class Case:
    stage: str
    name: str
    max_abs: float  # largest |vtag - reference| of the compared values (floats or pixel levels)
    codes_differ: int  # 8-bit codes (or uint8 values) that differ
    codes: int  # how many were compared
    max_abs_limit: float
    codes_limit: int  # most codes allowed to differ
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.max_abs <= self.max_abs_limit and self.codes_differ <= self.codes_limit


def _float_error_codes(total: int) -> int:
    """Network stages: float error may move at most 1e-4 of the codes (at least one) by one step."""
    return max(1, total // 10_000)


@dataclass
class Context:
    tmp: Path
    data: Path | None
    nets: dict = field(default_factory=dict)

    @functools.cached_property
    def vggish(self):
        from vtag.features.vggish import load_vggish

        return load_vggish(random_weights=True, seed=3)

    @functools.cached_property
    def vggish_pca(self):
        from vtag.features.pca import VGGishPCA

        return VGGishPCA.random(seed=4)

    def audio_codes(self, examples):
        """Log-mel examples -> the 8-bit audio codes vtag would write (same random networks)."""
        import numpy as np
        import torch

        from vtag.features.extract import AUDIO_QUANTIZE
        from vtag.features.pca import quantize

        with torch.inference_mode():
            embeddings = self.vggish(torch.from_numpy(np.ascontiguousarray(examples, dtype=np.float32))).numpy()
        return quantize(self.vggish_pca(embeddings), AUDIO_QUANTIZE)


def _codes_compare(a, b) -> tuple[int, int]:
    import numpy as np

    n = min(len(a), len(b))
    differ = int(np.count_nonzero(a[:n] != b[:n])) + abs(len(a) - len(b)) * (a.shape[1] if a.ndim > 1 else 1)
    return differ, int(a[:n].size)


# ---- stage: log-mel examples (torchvggish's NumPy port of mel_features / vggish_input) ----------


def _write_wav(path: Path, data, rate: int, codec: str) -> Path:
    """Interleaved samples [N, C] written with PyAV (WAV, or AAC in .mp4 for float planar input)."""
    import av
    import numpy as np

    channels = data.shape[1]
    layout = {1: "mono", 2: "stereo", 6: "5.1", 8: "7.1"}[channels]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.layout = layout
        fmt = stream.codec_context.format.name
        for start in range(0, len(data), 1024):
            chunk = data[start:start + 1024]
            if fmt.endswith("p"):
                array = np.ascontiguousarray(chunk.T)
            else:
                array = np.ascontiguousarray(chunk.reshape(1, -1))
            if fmt.startswith("s16"):
                array = np.clip(np.round(array * 32767), -32768, 32767).astype(np.int16)
            else:
                array = array.astype(np.float32)
            # plane by plane: PyAV's from_ndarray trips over 8-channel planar frames
            frame = av.AudioFrame(format=fmt, layout=layout, samples=len(chunk))
            for i, row in enumerate(array):
                np.frombuffer(frame.planes[i], dtype=array.dtype, count=row.size)[:] = row
            frame.sample_rate = rate
            frame.pts = start
            frame.time_base = Fraction(1, rate)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _test_signal(seconds: float, rate: int, channels: int):
    """Different tones and noise levels per channel, so a wrong mix shows."""
    import numpy as np

    rng = np.random.default_rng(channels)
    t = np.arange(int(seconds * rate)) / rate
    return np.stack([(0.6 / (c + 1)) * np.sin(2 * np.pi * (220 * (c + 1)) * t) + 0.02 * (c + 1) * rng.standard_normal(t.size)
                     for c in range(channels)], axis=1) / 2


def _reference_decode(path: Path):
    """(samples [N, C] float64 as the reference reads them, rate): WAV through scipy's wavfile (int16
    / 32768 as vggish_input does), anything else frame by frame through PyAV without resampling."""
    import numpy as np

    if path.suffix == ".wav":
        from scipy.io import wavfile

        rate, data = wavfile.read(str(path))
        data = data.reshape(len(data), -1)
        if data.dtype == np.int16:
            return data / 32768.0, rate
        return data.astype(np.float64), rate
    import av

    parts, rate = [], None
    with av.open(str(path)) as container:
        for frame in container.decode(container.streams.audio[0]):
            rate = frame.sample_rate
            channels = len(frame.layout.channels)
            dtype = {"s16": np.int16, "flt": np.float32, "s32": np.int32, "dbl": np.float64}[frame.format.name.rstrip("p")]
            if frame.format.is_planar:  # (PyAV's to_ndarray reads one plane too many at 8 channels)
                array = np.stack([np.frombuffer(frame.planes[c], dtype, count=frame.samples) for c in range(channels)], 1)
            else:
                array = np.frombuffer(frame.planes[0], dtype, count=frame.samples * channels).reshape(-1, channels)
            if frame.format.name.startswith("s16"):
                array = array / 32768.0
            parts.append(array.astype(np.float64))
    return np.ascontiguousarray(np.concatenate(parts)), rate


def _reference_examples(data, rate):
    from torchvggish import vggish_input, vggish_params

    vggish_params.EXAMPLE_HOP_SECONDS = 1.0  # YouTube-8M's hop (AudioSet's own is 0.96 s)
    # float32, as the network takes it (torchvggish's return_tensor path does `.float()` too)
    return vggish_input.waveform_to_examples(data, rate, return_tensor=False).astype("float32")


def _reference_waveform(data, rate):
    import numpy as np
    import resampy

    mono = np.mean(data, axis=1) if data.ndim > 1 else data
    return resampy.resample(mono, rate, 16000) if rate != 16000 else mono


def stage_audio(ctx: Context) -> list[Case]:
    import numpy as np

    from vtag.features import media
    from vtag.features.vggish import log_mel_examples

    sources = []
    for channels in (1, 2, 6, 8):
        sources.append((f"16 kHz {channels} ch s16 WAV", _write_wav(ctx.tmp / f"a16_{channels}.wav",
                                                                    _test_signal(3.3, 16000, channels), 16000, "pcm_s16le"), True))
    sources.append(("16 kHz 2 ch float WAV", _write_wav(ctx.tmp / "a16_f32.wav", _test_signal(3.3, 16000, 2), 16000, "pcm_f32le"), True))
    sources.append(("16 kHz 6 ch AAC (float planar)", _write_wav(ctx.tmp / "a16_6.mp4", _test_signal(3.3, 16000, 6), 16000, "aac"), True))
    sources.append(("16 kHz 8 ch AAC (float planar)", _write_wav(ctx.tmp / "a16_8.mp4", _test_signal(3.3, 16000, 8), 16000, "aac"), True))
    sources.append(("48 kHz 8 ch AAC (float planar)", _write_wav(ctx.tmp / "a48_8.mp4", _test_signal(3.3, 48000, 8), 48000, "aac"), False))
    sources.append(("44.1 kHz 8 ch s16 WAV", _write_wav(ctx.tmp / "a44_8.wav", _test_signal(3.3, 44100, 8), 44100, "pcm_s16le"), False))
    if ctx.data is not None:
        sources.append(("bigbuckbunny.mp4 48 kHz 5.1 AAC", ctx.data / "media" / "bigbuckbunny.mp4", False))
        sources.append(("sunday-02.mp3 44.1 kHz MP3", ctx.data / "media" / "6457__dobroide__sunday-02.mp3", False))
        sources.append(("speech_16k_mono_4s.wav", ctx.data / "media" / "speech_16k_mono_4s.wav", True))
    cases = []
    for name, path, at_16k in sources:
        data, rate = _reference_decode(path)
        ours_wave = media.read_audio(path, align_to_video=False)
        ref_wave = _reference_waveform(data, rate)
        n = min(len(ours_wave), len(ref_wave))
        wave_diff = float(np.abs(ours_wave[:n] - ref_wave[:n]).max()) if n else 0.0
        lengths_ok = len(ours_wave) == len(ref_wave)
        ours = log_mel_examples(ours_wave)
        ref = _reference_examples(data, rate)
        differ, total = _codes_compare(ctx.audio_codes(ours), ctx.audio_codes(ref))
        mel_diff = float(np.abs(ours[:len(ref)] - ref[:len(ours)]).max()) if len(ours) and len(ref) else 0.0
        if not lengths_ok or len(ours) != len(ref):
            mel_diff = float("inf")
        note = f"waveform max |diff| {wave_diff:.1e}, {len(ours)} examples"
        # 16 kHz input is not resampled: it must be the reference's samples exactly. Resampled input
        # may differ by float rounding of the (regrouped) resampler sums.
        cases.append(Case("audio", name, mel_diff, differ, total, 0.0 if at_16k else 1e-6,
                          0 if at_16k else _float_error_codes(total), note))
        if not at_16k:
            cases.append(Case("resample", name, wave_diff, 0, 0, 1e-9, 0, "vtag.features.resample vs resampy kaiser_best"))
    return cases


# ---- stage: PCA + quantization (AudioSet's vggish_postprocess; YT8M's quantize) ------------------


def _audioset_postprocess(embeddings, npz_path):
    """AudioSet's `vggish_postprocess.Postprocessor.postprocess`, from its published logic."""
    import numpy as np

    params = np.load(npz_path)
    matrix, means = params["pca_eigen_vectors"], params["pca_means"].reshape(-1, 1)
    pca_applied = np.dot(matrix, (embeddings.T - means)).T
    clipped = np.clip(pca_applied, -2.0, 2.0)
    return pca_applied, ((clipped - -2.0) * (255.0 / (2.0 - -2.0))).astype(np.uint8)


def _yt8m_quantize(features):
    """YT8M's `extract_tfrecords_main.quantize` under Python 2: float32 arithmetic, then `round`
    (halves away from zero), here through Decimal so no float rounding rule is assumed."""
    import numpy as np

    features = np.clip(np.asarray(features, np.float32), np.float32(-2.0), np.float32(2.0))
    scaled = (features - np.float32(-2.0)) * np.float32(255.0 / 4.0)
    return np.array([int(decimal.Decimal(float(v)).quantize(0, rounding=decimal.ROUND_HALF_UP)) for v in scaled.ravel()],
                    np.uint8).reshape(scaled.shape)


def stage_pca_quantize(ctx: Context) -> list[Case]:
    import numpy as np
    import torch

    from vtag.features.pca import VGGishPCA, quantize
    from vtag.io.records import quantize_floats

    rng = np.random.default_rng(7)
    q, _ = np.linalg.qr(rng.standard_normal((128, 128)))
    npz = ctx.tmp / "vggish_pca_params.npz"
    np.savez(npz, pca_eigen_vectors=q, pca_means=rng.normal(0.0, 0.5, 128))  # the official file's keys and dtypes
    embeddings = (rng.standard_normal((400, 128)) * 0.8).astype(np.float32)
    ref_float, ref_codes = _audioset_postprocess(embeddings, npz)
    pca = VGGishPCA.from_file(npz)
    ours_float = pca(embeddings)
    ours_codes = quantize(ours_float, "truncate")
    differ = int(np.count_nonzero(ours_codes != ref_codes))
    cases = [Case("pca+quantize", "VGGish PCA + truncation vs AudioSet postprocessor",
                  float(np.abs(ours_float - ref_float).max()), differ, ours_codes.size, 1e-5,
                  _float_error_codes(ours_codes.size), "vtag keeps float32 features between PCA and quantizer")]
    # torchvggish's port of the same PCA (it rounds instead of truncating; only its floats are compared).
    from torchvggish.torchvggish import Postprocessor

    post = Postprocessor.__new__(Postprocessor)
    post._pca_matrix = torch.as_tensor(q).float()
    post._pca_means = torch.as_tensor(np.load(npz)["pca_means"].reshape(-1, 1)).float()
    port = torch.mm(post._pca_matrix, torch.from_numpy(embeddings).t() - post._pca_means).t().numpy()
    cases.append(Case("pca+quantize", "VGGish PCA vs torchvggish Postprocessor (float32)",
                      float(np.abs(ours_float - port).max()), 0, 0, 1e-4, 0))
    # YT8M's rounding, on random features and on exact ties (k + 0.5 after scaling).
    ties = np.array([(k + 0.5) / 63.75 - 2.0 for k in range(255)], np.float32)
    features = np.concatenate([rng.uniform(-2.5, 2.5, 20000).astype(np.float32), ties])
    ref = _yt8m_quantize(features)
    for name, ours in (("features.quantize(round)", quantize(features, "round")),
                       ("records.quantize_floats", quantize_floats(features))):
        cases.append(Case("pca+quantize", f"{name} vs YT8M quantize (incl. {len(ties)} ties)",
                          float(np.abs(ours.astype(int) - ref.astype(int)).max()),
                          int(np.count_nonzero(ours != ref)), ref.size, 0, 0))
    return cases


# ---- stage: Inception (pytorch-fid's fid_inception_v3, one random state dict) --------------------


def _random_inception_state():
    import torch

    from vtag.features.inception import load_inception

    model = load_inception(random_weights=True, seed=5)
    state = model.state_dict()
    gen = torch.Generator().manual_seed(6)
    for key, value in state.items():
        if key.endswith("running_mean") or key.endswith("bn.bias"):
            state[key] = 0.1 * torch.randn(value.shape, generator=gen)
        elif key.endswith("running_var") or key.endswith("bn.weight"):
            state[key] = 0.5 + torch.rand(value.shape, generator=gen)
    return state


def stage_inception(ctx: Context) -> list[Case]:
    import numpy as np
    import torch
    import pytorch_fid.inception as fid

    from vtag.features.pca import YT8MPCA, quantize
    from vtag.features.inception import InceptionV3Pool3

    state = _random_inception_state()
    ours = InceptionV3Pool3()
    ours.load_state_dict(state, strict=True)
    ours.eval()
    # fid_inception_v3 fetches its weights from a URL; hand it the same random state dict instead.
    fid.load_state_dict_from_url = lambda *args, **kwargs: state
    ref = fid.InceptionV3([fid.InceptionV3.BLOCK_INDEX_BY_DIM[2048]], resize_input=False, normalize_input=False,
                          use_fid_inception=True).eval()
    rng = np.random.default_rng(8)
    frames = torch.from_numpy(rng.integers(0, 256, (6, 240, 320, 3), dtype=np.uint8))
    with torch.inference_mode():
        x = ours.preprocess(frames)
        a = ours.pool3(x).numpy()
        b = ref(x)[0].flatten(1).numpy()
    # Scale the random pool_3 features to a realistic spread so the quantizer sees them.
    pca = YT8MPCA.random(seed=9)
    qa, qb = quantize(pca(a), "round"), quantize(pca(b), "round")
    differ = int(np.count_nonzero(qa != qb))
    return [Case("inception", "pool_3 vs pytorch-fid fid_inception_v3 (6 frames)",
                 float(np.abs(a - b).max()), differ, qa.size, 1e-3 * max(1.0, float(np.abs(b).max())),
                 _float_error_codes(qa.size), f"pool_3 max |value| {np.abs(b).max():.2f}")]


# ---- stage: TF1 resize (tf.compat.v1.image.resize_bilinear) ---------------------------------------


def stage_resize(ctx: Context) -> list[Case]:
    import numpy as np
    import tensorflow as tf
    import torch

    from vtag.features.inception import tf1_resize_bilinear

    rng = np.random.default_rng(10)
    cases = []
    for h, w in ((240, 320), (720, 1280), (1080, 1920), (272, 640), (97, 63), (299, 299), (150, 100), (7, 5)):
        image = rng.integers(0, 256, (1, h, w, 3), dtype=np.uint8)
        ref = tf.compat.v1.image.resize_bilinear(image, [299, 299], align_corners=False, half_pixel_centers=False).numpy()
        ours = tf1_resize_bilinear(torch.from_numpy(image).permute(0, 3, 1, 2), 299).permute(0, 2, 3, 1).numpy()
        cases.append(Case("resize", f"{h}x{w} -> 299x299", float(np.abs(ours - ref).max()),
                          int(np.count_nonzero(ours != ref)), ref.size, 0.0, 0, "values differing (float32)"))
    return cases


# ---- stage: frame choice and pixels (OpenCV's VideoCapture, as YT8M's frame_iterator drove it) ----


def _opencv_frames(path: Path, every_ms: float = 1000.0, max_frames: int = 300):
    """YT8M's `extract_tfrecords_main.frame_iterator`, with OpenCV, returning RGB frames."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    last_ts = -99999
    frames = []
    while len(frames) < max_frames:
        while cap.get(cv2.CAP_PROP_POS_MSEC) < every_ms + last_ts:
            if not cap.read()[0]:
                return frames
        last_ts = cap.get(cv2.CAP_PROP_POS_MSEC)
        has_frames, frame = cap.read()
        if not has_frames:
            break
        frames.append(frame[:, :, ::-1])
    return frames


def _bt709_clip(path: Path, seconds: float = 3.2, fps: int = 25) -> Path:
    """H.264 tagged BT.709 (matrix, primaries, transfer), limited range."""
    import av
    import numpy as np

    sys.path.insert(0, str(REPO / "tests"))
    from media_factory import index_pattern

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 160, 96, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "18",
                          "x264-params": "colorprim=bt709:transfer=bt709:colormatrix=bt709"}
        for i in range(int(seconds * fps)):
            rgb = index_pattern(i, 160, 96).copy()
            rgb[:, :40] = np.array([200, 30, 90], np.uint8)  # saturated colour: the matrix matters
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            for packet in stream.encode(frame.reformat(format="yuv420p", dst_colorspace="itu709")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def stage_frames(ctx: Context) -> list[Case]:
    import numpy as np

    sys.path.insert(0, str(REPO / "tests"))
    from media_factory import make_media

    from vtag.features import media

    clips = {
        "25 fps": make_media(ctx.tmp / "v25.mp4", duration_s=4.2, fps=25, audio=False),
        "29.97 fps": make_media(ctx.tmp / "v2997.mp4", duration_s=4.2, fps=30000 / 1001, audio=False),
        "VFR": make_media(ctx.tmp / "vfr.mkv", frame_times=[0, 0.3, 0.35, 0.9, 1.0, 1.04, 1.5, 2.02, 2.03, 2.5, 3.1, 3.2],
                          audio=False),
        "first pts 0.5 s": make_media(ctx.tmp / "offset.mkv", frame_times=[0.5 + i / 25 for i in range(90)], audio=False),
        "rotated 90": make_media(ctx.tmp / "rot.mp4", duration_s=3.2, rotation=90, audio=False),
        "BT.709": _bt709_clip(ctx.tmp / "bt709.mp4"),
    }
    if ctx.data is not None:
        clips["bikes.mp4"] = ctx.data / "media" / "bikes.mp4"
    cases = []
    for name, path in clips.items():
        ours = [f.rgb for f in media.sample_frames_timed(path)]
        ref = _opencv_frames(path)
        same_count = len(ours) == len(ref)
        shapes = same_count and all(a.shape == b.shape for a, b in zip(ours, ref))
        if shapes:
            diff = max(int(np.abs(a.astype(int) - b.astype(int)).max()) for a, b in zip(ours, ref))
            differ = sum(int(np.count_nonzero(a != b)) for a, b in zip(ours, ref))
            total = sum(a.size for a in ours)
        else:
            diff, differ, total = 255, -1, 0
        cases.append(Case("frames", f"{name}: {len(ours)} frames (OpenCV {len(ref)})", float(diff),
                          differ if differ >= 0 else 10 ** 9, total, 0.0, 0, "pixel levels"))
    return cases


# ---- stage: still images (PIL) --------------------------------------------------------------------


def stage_images(ctx: Context) -> list[Case]:
    import numpy as np
    from PIL import Image

    from vtag.features import media

    rng = np.random.default_rng(11)
    smooth = np.repeat(np.repeat(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8), 8, 0), 8, 1)
    images = {}
    Image.fromarray(smooth).save(ctx.tmp / "still.jpg", quality=85)
    Image.fromarray(smooth).save(ctx.tmp / "still.png")
    Image.fromarray(smooth).convert("RGBA").save(ctx.tmp / "still_rgba.png")
    images.update({"JPEG 4:2:0": ctx.tmp / "still.jpg", "PNG": ctx.tmp / "still.png", "PNG RGBA": ctx.tmp / "still_rgba.png"})
    if ctx.data is not None:
        images["golden AO7u7fwGzJQ_at_second_0.jpg"] = ctx.data / "golden" / "AO7u7fwGzJQ_at_second_0.jpg"
    cases = []
    for name, path in images.items():
        ours = next(iter(media.sample_frames(path)))
        ref = np.asarray(Image.open(path).convert("RGB"))
        if ours.shape != ref.shape:
            cases.append(Case("images", name, 255.0, 10 ** 9, 0, 0.0, 0, f"shape {ours.shape} vs {ref.shape}"))
            continue
        cases.append(Case("images", name, float(np.abs(ours.astype(int) - ref.astype(int)).max()),
                          int(np.count_nonzero(ours != ref)), ref.size, 0.0, 0, "uint8 values"))
    return cases


# The VGGish network against a TF graph with AudioSet's variable names goes here too (issue 10).
STAGES = [stage_audio, stage_pca_quantize, stage_inception, stage_resize, stage_frames, stage_images]


def _shared_data() -> Path | None:
    for candidate in (os.environ.get("VTAG_SHARED_DATA"), REPO.parent / "shared" / "data", Path("/work/shared/data")):
        if candidate and Path(candidate, "media").is_dir():
            return Path(candidate)
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="", help="comma-separated stage names (e.g. audio,resize)")
    parser.add_argument("--list", action="store_true", help="list the stages and exit")
    args = parser.parse_args(argv)
    names = {s.__name__.removeprefix("stage_"): s for s in STAGES}
    if args.list:
        print("\n".join(names))
        return 0
    chosen = [names[n] for n in args.only.split(",") if n] if args.only else STAGES
    ensure_side_environment(argv)
    sys.path.insert(0, str(REPO))
    import torch

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    data = _shared_data()
    if data is None:
        print("shared data (../shared/data) not found: the cases on real files are skipped")
    failed = 0
    with tempfile.TemporaryDirectory(prefix="vtag-parity-") as tmp:
        ctx = Context(tmp=Path(tmp), data=data)
        print(f"{'stage':<13} {'case':<58} {'max |diff|':>11} {'codes differ':>18}  ok")
        for stage in chosen:
            started = time.perf_counter()
            for case in stage(ctx):
                failed += not case.ok
                codes = f"{case.codes_differ}/{case.codes}" if case.codes else "-"
                print(f"{case.stage:<13} {case.name:<58} {case.max_abs:>11.3g} {codes:>18}  "
                      f"{'ok' if case.ok else 'FAIL'}  {case.note}", flush=True)
            print(f"{'':<13} ({stage.__name__} took {time.perf_counter() - started:.1f} s)", flush=True)
    print(f"{failed} case(s) over their limit" if failed else "all stages within their limits")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
