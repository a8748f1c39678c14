"""Hostile record files and model folders (issue 11): values that are not features, weight files that
are not a model's, configs too large to build, memories with labels outside the classes, files with
no records, and extracted records that must keep saying how they were made. Every file is made here,
in tmp_path; each test asserts the one line a user sees, the exit code, and that nothing is lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from model_helpers import model_copy
from vtag.errors import VtagError
from vtag.io.fast_reader import read_video_level_arrays
from vtag.io.records import ReadStats, YT8MRecord, read_records, write_records
from vtag.io.tfrecord import encode_example, write_tfrecord

REPO = Path(__file__).resolve().parents[2]


def run_vtag(*args: str) -> subprocess.CompletedProcess:
    """The real command line (exit codes and stderr as a user gets them), on this checkout."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "vtag", *args], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=300)


def one_error_line(result: subprocess.CompletedProcess, warnings: bool = False) -> str:
    """The error line of a run that must exit 2; nothing else on stderr (but, with `warnings`, the
    warning printed for each record --skip-bad skipped)."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr and lines[-1].startswith("error: "), result.stderr
    assert len(lines) == 1 or warnings and all(line.startswith("skipping bad record") for line in lines[:-1]), lines
    return lines[-1]


def good_records(n: int, seed: int = 0) -> list[YT8MRecord]:
    rng = np.random.default_rng(seed)
    return [YT8MRecord(f"r{seed}{i:03d}", np.array(sorted(rng.choice(3862, 1 + i % 3, replace=False)), np.int64),
                       rng.uniform(-2, 2, 1024).astype(np.float32), rng.uniform(-2, 2, 128).astype(np.float32))
            for i in range(n)]


def payload(record: YT8MRecord, **extra) -> bytes:
    """The Example TensorFlow writes for a video-level record (extra keys, e.g. provenance, appended)."""
    return encode_example({"id": [record.id.encode()], "labels": record.labels, "mean_rgb": record.rgb,
                           "mean_audio": record.audio, **extra})


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from vtag.models.registry import create_model
    from vtag.models.storage import save_model

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("model")
    save_model(create_model("fc-early-fusion", hidden=8), folder, extra={"vocabulary": "2018"})
    return folder


# ---- 1. values that are not features ---------------------------------------------------------------

POISONS = {"nan": (np.nan, "NaN"), "inf": (-np.inf, "infinity"), "huge": (3e38, "3e+38, far outside")}


def poisoned_file(tmp_path: Path, key: str, value: float, index: int = 7, n: int = 12,
                  canonical: bool = True) -> tuple[Path, list[YT8MRecord]]:
    records = good_records(n, seed=3)
    bad = records[index]
    target = bad.rgb if key == "mean_rgb" else bad.audio
    target[5] = value
    # an extra feature moves a record off the canonical layout, onto the general decoder
    extra = {} if canonical else {"vtag_note": [b"x"]}
    path = tmp_path / f"poisoned_{key}.tfrecord"
    write_tfrecord(path, [payload(r, **extra) for r in records])
    return path, records


@pytest.mark.parametrize("canonical", [True, False], ids=["fast-layout", "general-decoder"])
@pytest.mark.parametrize("key", ["mean_rgb", "mean_audio"])
@pytest.mark.parametrize("poison", list(POISONS))
@pytest.mark.parametrize("reader", ["records", "arrays"])
def test_non_finite_or_absurd_features_are_refused_naming_file_and_record(tmp_path, reader, poison, key, canonical):
    value, words = POISONS[poison]
    path, records = poisoned_file(tmp_path, key, value, canonical=canonical)
    read = (lambda **kw: list(read_records(path, **kw))) if reader == "records" else \
        (lambda **kw: read_video_level_arrays(path, **kw))
    with pytest.raises(VtagError) as info:
        read()
    message = str(info.value)
    assert message.startswith(f"{path}: record 7 (id '{records[7].id}'): {key} holds {words}"), message
    assert "the file is corrupt" in message and "--skip-bad" in message and "\n" not in message

    stats = ReadStats()
    got = read(skip_bad=True, stats=stats)
    ids = [r.id for r in got] if reader == "records" else got.ids
    assert ids == [r.id for i, r in enumerate(records) if i != 7]  # only the bad one is left out
    assert stats.skipped == 1 and stats.records == 11
    if reader == "arrays":
        assert got.skipped == 1 and np.isfinite(got.rgb).all() and np.isfinite(got.audio).all()
        assert np.array_equal(got.rgb[7], records[8].rgb)  # the rows after it are not shifted wrongly


def test_several_bad_rows_in_several_files_are_each_named(tmp_path):
    records = good_records(20, seed=4)
    records[2].audio[0] = np.nan
    records[15].rgb[1000] = -5e4
    write_tfrecord(tmp_path / "a.tfrecord", [payload(r) for r in records[:10]])
    write_tfrecord(tmp_path / "b.tfrecord", [payload(r) for r in records[10:]])
    stats = ReadStats()
    arrays = read_video_level_arrays([tmp_path / "a.tfrecord", tmp_path / "b.tfrecord"], skip_bad=True, stats=stats)
    assert arrays.ids == [r.id for i, r in enumerate(records) if i not in (2, 15)]
    assert stats.skipped == 2
    assert stats.errors[0].startswith(f"{tmp_path / 'a.tfrecord'}: record 2 (id 'r4002'): mean_audio holds NaN")
    assert stats.errors[1].startswith(f"{tmp_path / 'b.tfrecord'}: record 5 (id 'r4015'): mean_rgb holds -5e+04")


def test_writing_nan_features_is_refused_and_writes_nothing(tmp_path):
    records = good_records(4)
    records[2].rgb[3] = np.nan
    out = tmp_path / "out.tfrecord"
    for level, make in (("video", lambda r: r),
                        ("frame", lambda r: YT8MRecord(r.id, r.labels, np.stack([r.rgb, r.rgb]),
                                                       np.stack([r.audio, r.audio]), "frame"))):
        with pytest.raises(VtagError, match=r"record 2 \(id 'r0002'\): rgb holds NaN"):
            write_records(out, [make(r) for r in records], level=level)
        assert not out.exists()


def test_the_releases_features_are_all_in_range(shared_data):
    from vtag.io.paths import expand_paths

    files = expand_paths([shared_data / "yt8m-2018", shared_data / "yt8m-2018-extra", shared_data / "yt8m-2017"])
    stats = ReadStats()
    arrays = read_video_level_arrays(files, stats=stats)
    assert stats.skipped == 0 and len(arrays) > 40000


def test_cli_eval_and_classify_refuse_a_nan_record_and_skip_it_with_skip_bad(tmp_path, tiny_model):
    path, records = poisoned_file(tmp_path, "mean_rgb", np.nan)
    line = one_error_line(run_vtag("eval", str(path), "--model", str(tiny_model), "--device", "cpu", "--json"))
    assert f"record 7 (id '{records[7].id}'): mean_rgb holds NaN; the file is corrupt" in line and "--skip-bad" in line
    result = run_vtag("eval", str(path), "--model", str(tiny_model), "--device", "cpu", "--json", "--skip-bad")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["videos"] == 11  # the bad video is not scored

    line = one_error_line(run_vtag("classify", str(path), "--model", str(tiny_model), "--device", "cpu", "--json"))
    assert "mean_rgb holds NaN" in line
    result = run_vtag("classify", str(path), "--model", str(tiny_model), "--device", "cpu", "--json", "--skip-bad")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["source"] for row in rows] == [r.id for i, r in enumerate(records) if i != 7]
    assert all(np.isfinite(label["score"]) for row in rows for label in row["labels"])


# ---- 2. weight files that are not a model's, configs too large to build ------------------------------


def first_weight(state: dict) -> str:
    return sorted(k for k in state if k.endswith("weight"))[0]


def _retyped(dtype):
    def change(state):
        key = first_weight(state)
        state[key] = state[key].to(dtype)
    return change


def _poisoned(value, everywhere: bool):
    def change(state):
        key = first_weight(state)
        if everywhere:
            state[key] = state[key].clone().fill_(value)
        else:
            state[key] = state[key].clone()
            state[key].view(-1)[17] = value
    return change


@pytest.mark.parametrize("change, words", [
    (_retyped(torch.int32), "is int32 [8, 1152] where float32/float16/bfloat16 [8, 1152] belongs"),
    (_retyped(torch.float64), "is float64 [8, 1152] where float32/float16/bfloat16"),
    (_retyped(torch.bool), "is bool [8, 1152] where float32/float16/bfloat16"),
    (_poisoned(float("nan"), True), "holds NaN; the file is corrupt"),
    (_poisoned(float("inf"), False), "holds infinity; the file is corrupt"),
], ids=["int32", "float64", "bool", "all-nan", "one-inf"])
def test_weights_of_the_wrong_dtype_or_not_finite_are_refused_naming_the_tensor(tmp_path, tiny_model, change, words):
    from vtag.models.storage import load_model

    folder = model_copy(tiny_model, tmp_path, change)
    with pytest.raises(VtagError) as info:
        load_model(folder)
    message = str(info.value)
    assert message.startswith(f"{folder / 'model.safetensors'}: tensor 'body.0.0.weight' ") and words in message, message
    assert "\n" not in message


def test_cli_eval_refuses_a_nan_weight_in_one_line(tmp_path, tiny_model):
    folder = model_copy(tiny_model, tmp_path, _poisoned(float("nan"), False))
    records = tmp_path / "r.tfrecord"
    write_records(records, good_records(3))
    line = one_error_line(run_vtag("eval", str(records), "--model", str(folder), "--device", "cpu"))
    assert f"{folder / 'model.safetensors'}: tensor 'body.0.0.weight' holds NaN" in line


@pytest.mark.parametrize("settings, words", [
    ({"hidden": 10 ** 9}, "far more than any vtag model"),  # an allocation error before
    ({"hidden": 10 ** 6}, "far more than any vtag model"),
    ({"hidden": 30_000}, "weights do not match the model in config.json"),  # 3.7 GB allocated before
    ({"hidden": 10 ** 12}, "these model sizes cannot be built"),
    ({"num_classes": 10 ** 7, "hidden": 10 ** 4}, "far more than any vtag model"),
])
def test_configs_too_large_to_build_are_refused_before_building(tmp_path, tiny_model, monkeypatch, settings, words):
    import vtag.models.storage as storage

    def no_build(config):  # the model must not be built before the weights are known to fit
        raise AssertionError(f"build_model called with {config}")

    monkeypatch.setattr(storage, "build_model", no_build)
    folder = model_copy(tiny_model, tmp_path, meta_change=lambda meta: meta["model"].update(settings))
    with pytest.raises(VtagError, match=words) as info:
        storage.load_model(folder)
    assert "\n" not in str(info.value) and str(folder) in str(info.value)


def test_a_model_that_fits_still_loads_and_scores_the_same(tmp_path, tiny_model):
    from vtag.models.storage import load_model, save_model

    model, _ = load_model(tiny_model)
    for dtype in ("float16", "int8", "int4"):
        folder = save_model(model, tmp_path / dtype, dtype=dtype)
        again, _ = load_model(folder)
        v, a = torch.zeros(2, 1024), torch.zeros(2, 128)
        assert torch.allclose(model.eval()(v, a), again.eval()(v, a), atol=0.5)


def test_default_model_with_memory_and_int4_weights_loads(repo_root):
    from vtag.models.storage import DEFAULT_MODEL_DIR, load_model

    model, meta = load_model(DEFAULT_MODEL_DIR)
    assert model.config.memory is not None and meta["weights_dtype"] == "int4"


@pytest.mark.parametrize("text, words", [
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('{"model": {"name": "fc-visual"}, "pad": "' + "x" * (17 << 20) + '"}', "far larger than a model's config.json"),
], ids=["deep", "huge"])
def test_hostile_config_json_gives_one_line(tmp_path, tiny_model, text, words):
    from vtag.models.storage import load_model

    folder = model_copy(tiny_model, tmp_path)
    (folder / "config.json").write_text(text)
    with pytest.raises(VtagError, match=words) as info:
        load_model(folder)
    assert str(folder / "config.json") in str(info.value) and "\n" not in str(info.value)


def test_weights_that_overflow_to_nan_scores_are_an_error_not_labels(tmp_path, tiny_model):
    from vtag.tasks.evaluate import evaluate

    folder = model_copy(tiny_model, tmp_path, _poisoned(3e38, True))  # finite, but inf - inf downstream
    records = tmp_path / "r.tfrecord"
    write_records(records, good_records(5))
    with pytest.raises(VtagError, match=r"the model gives NaN scores for video 0 of the input") as info:
        evaluate(str(records), model=str(folder), device="cpu")
    assert "\n" not in str(info.value)


# ---- 3. a memory whose label ids are not classes --------------------------------------------------------


@pytest.fixture(scope="module")
def model_with_memory(tmp_path_factory, tiny_model) -> Path:
    from vtag.models.attach import attach_memory
    from vtag.models.storage import load_model, save_model

    model, _ = load_model(tiny_model)
    records = good_records(40, seed=9)
    hybrid = attach_memory(model, np.stack([r.rgb for r in records]), np.stack([r.audio for r in records]),
                           [r.labels for r in records], dim=16, bits=8, k=5)
    return save_model(hybrid, tmp_path_factory.mktemp("hybrid"), extra={"vocabulary": "2018"})


def _label(position: int, value: int):
    def change(state):
        state["memory.label_values"] = state["memory.label_values"].clone()
        state["memory.label_values"][position] = value
    return change


def _offsets(state):
    state["memory.label_offsets"] = state["memory.label_offsets"].clone()
    state["memory.label_offsets"][3] = 10_000


@pytest.mark.parametrize("change, words", [
    (_label(4, -3), "the memory holds label id -3, outside the model's 3862 classes (0..3861)"),  # voted for 3859
    (_label(0, 3862), "the memory holds label id 3862, outside the model's 3862 classes"),  # IndexError
    (_label(5, 30_000), "label id 30000"),
    (_offsets, "label offsets do not run from 0"),
], ids=["negative", "one-past", "far", "offsets"])
def test_memory_label_ids_outside_the_classes_are_refused_at_load(tmp_path, model_with_memory, change, words):
    from vtag.models.storage import load_model

    folder = model_copy(model_with_memory, tmp_path, change)
    with pytest.raises(VtagError) as info:
        load_model(folder)
    message = str(info.value)
    assert message.startswith(f"{folder / 'model.safetensors'}: ") and words in message, message
    assert "vtag memory" in message and "\n" not in message


def test_a_good_memory_still_loads(model_with_memory):
    from vtag.models.storage import load_model

    model, _ = load_model(model_with_memory)
    assert int(model.memory.label_values.max()) < 3862


# ---- 4. nothing to score ---------------------------------------------------------------------------------


def test_an_empty_record_file_is_an_error_for_classify_and_eval(tmp_path, tiny_model):
    empty = tmp_path / "empty.tfrecord"
    write_tfrecord(empty, [])
    for command in ("classify", "eval"):
        line = one_error_line(run_vtag(command, str(empty), "--model", str(tiny_model), "--device", "cpu"))
        assert line.endswith(f"{empty}: no records"), (command, line)


def test_every_record_skipped_is_an_error_not_a_score_on_0_videos(tmp_path, tiny_model):
    from vtag.tasks.classify import classify_paths
    from vtag.tasks.evaluate import evaluate

    records = good_records(3)
    for r in records:
        r.rgb[0] = np.nan
    bad = tmp_path / "bad.tfrecord"
    write_tfrecord(bad, [payload(r) for r in records])
    words = "no video could be scored: all 3 records were skipped"
    with pytest.raises(VtagError, match=words):
        evaluate(str(bad), model=str(tiny_model), device="cpu", skip_bad=True)
    with pytest.raises(VtagError, match=words):
        list(classify_paths([bad], model=tiny_model, device="cpu", skip_bad=True))
    line = one_error_line(run_vtag("eval", str(bad), "--model", str(tiny_model), "--device", "cpu", "--skip-bad"),
                          warnings=True)
    assert words in line and "GAP" not in line


# ---- 5. extracted records say how they were made -------------------------------------------------------


MARKS = {"vtag_extractor": "random", "vtag_video": "random", "vtag_audio": "zeros"}


@pytest.mark.parametrize("schema", ["2018", "2017"])
def test_provenance_round_trips_and_extra_features_leave_values_intact(tmp_path, schema):
    from vtag.io.tfrecord import decode_message

    plain = good_records(6, seed=5)
    marked = []
    for i, r in enumerate(plain):
        r.schema = schema
        if i % 2:  # every other record carries provenance, so the file mixes both layouts
            marked.append(YT8MRecord(r.id, r.labels, r.rgb, r.audio, "video", schema, dict(MARKS)))
        else:
            marked.append(r)
    path = tmp_path / "mixed.tfrecord"
    write_records(path, marked)
    got = list(read_records(path))
    assert [g.provenance for g in got] == [r.provenance for r in marked]
    arrays = read_video_level_arrays(path)
    assert arrays.ids == [r.id for r in marked] and arrays.schema == [schema] * 6
    for i, r in enumerate(marked):
        assert np.array_equal(arrays.rgb[i], r.rgb) and np.array_equal(arrays.audio[i], r.audio)
        assert np.array_equal(got[i].rgb, r.rgb) and np.array_equal(arrays.labels[i], r.labels)
    # the extra keys sit beside the standard ones, which keep their exact encoding (what TF parses)
    features, _ = decode_message(path.read_bytes(), 12, 12 + int.from_bytes(path.read_bytes()[:8], "little"))
    assert "mean_rgb" in features and "vtag_extractor" not in features  # record 0 is unmarked

    frame = tmp_path / "frame.tfrecord"
    write_records(frame, [YT8MRecord("f", None, np.zeros((3, 1024), np.uint8), np.zeros((3, 128), np.uint8),
                                     "frame", schema, dict(MARKS))], level="frame")
    assert next(iter(read_records(frame))).provenance == MARKS


def test_unknown_extra_features_do_not_break_the_readers(tmp_path):
    records = good_records(4, seed=6)
    extras = [{"some_other_tool": np.arange(5, dtype=np.float32)}, {"vtag_weird": np.array([1, 2])},
              {"vtag_extractor": [b"\xff\xfe" + b"x" * 5000]}, {}]
    path = tmp_path / "extra.tfrecord"
    write_tfrecord(path, [payload(r, **e) for r, e in zip(records, extras)])
    got = list(read_records(path))
    arrays = read_video_level_arrays(path)
    assert [g.id for g in got] == arrays.ids == [r.id for r in records]
    assert got[0].provenance is None and got[1].provenance is None and got[3].provenance is None
    assert len(got[2].provenance["vtag_extractor"]) <= 512  # a hostile value is cut, not kept whole
    assert all(np.array_equal(a, r.rgb) for a, r in zip(arrays.rgb, records))


def test_extracted_features_carry_their_provenance_into_records(tmp_path):
    from vtag.features.extract import assemble_features, official_extractor

    rng = np.random.default_rng(0)
    visual, audio = rng.normal(size=(4, 1024)).astype(np.float32), rng.normal(size=(4, 128)).astype(np.float32)
    cases = {
        "random-no-audio": (assemble_features("a", visual, None, 4.0, random_weights=True),
                            {"vtag_extractor": "random", "vtag_video": "random", "vtag_audio": "zeros"}),
        "official-no-video": (assemble_features("b", None, audio, 4.0),
                              {"vtag_extractor": official_extractor(), "vtag_video": "zeros", "vtag_audio": "vggish"}),
        "official": (assemble_features("c", visual, audio, 4.0),
                     {"vtag_extractor": official_extractor(), "vtag_video": "inception", "vtag_audio": "vggish"}),
    }
    assert "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2" in official_extractor()
    for level in ("frame", "video"):
        path = tmp_path / f"{level}.tfrecord"
        write_records(path, [features.to_record(level) for features, _ in cases.values()], level=level)
        assert [r.provenance for r in read_records(path)] == [want for _, want in cases.values()]


def test_cli_extract_random_weights_then_info_and_classify_say_so(tmp_path, tiny_model):
    from media_factory import make_media

    clip = make_media(tmp_path / "clip.mp4", duration_s=2.0, audio=False)
    out = tmp_path / "features.tfrecord"
    result = run_vtag("extract", str(clip), "-o", str(out), "--random-weights")
    assert result.returncode == 0, result.stderr
    assert next(iter(read_records(out))).provenance == {"vtag_extractor": "random", "vtag_video": "random",
                                                         "vtag_audio": "zeros"}

    info = run_vtag("info", str(out))
    assert info.returncode == 0, info.stderr
    assert "features.tfrecord: extractor: random weights — labels not meaningful" in info.stdout
    assert "features.tfrecord: audio: zero-filled" in info.stdout
    info = json.loads(run_vtag("info", str(out), "--json").stdout.splitlines()[0])  # JSON Lines
    assert info["provenance"]["vtag_extractor"] == ["random"] and len(info["warnings"]) == 2

    result = run_vtag("classify", str(out), "--model", str(tiny_model), "--device", "cpu", "--json")
    assert result.returncode == 0, result.stderr
    assert f"warning: {out}: extractor: random weights — labels not meaningful" in result.stderr
    assert f"warning: {out}: audio: zero-filled" in result.stderr
    row = json.loads(result.stdout.splitlines()[0])
    assert row["random_weights"] is True and row["missing"] == ["audio"]
    assert "extractor: random weights — labels not meaningful" in row["warnings"]
    assert row["provenance"]["vtag_audio"] == "zeros"


@pytest.mark.timeout(300)
def test_features_made_with_a_users_own_vggish_say_so_in_the_record_info_and_classify(tmp_path, monkeypatch, tiny_model):
    """A user's own VGGish network and PCA (imported --unverified) made the audio: the record names
    them with their sha256 instead of passing for the official extractor, and info/classify warn."""
    import hashlib

    from safetensors.torch import save_file

    from media_factory import make_media
    from vtag.features import extract as extract_module
    from vtag.features import inception, pca, vggish_weights
    from vtag.features.vggish import VGGish

    monkeypatch.setenv("VTAG_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    own_net = tmp_path / "my_vggish.safetensors"  # torchvggish's layout, random values
    save_file({k: v.contiguous() for k, v in VGGish().state_dict().items()}, own_net)
    own_pca = tmp_path / "my_pca.npz"
    rng = np.random.default_rng(0)
    np.savez(own_pca, pca_eigen_vectors=rng.standard_normal((128, 128)), pca_means=rng.standard_normal((128, 1)))
    for path in (own_net, own_pca):
        vggish_weights.import_unverified(path)
    own_net.unlink()  # the imported copy is what counts
    digests = {role: hashlib.sha256((tmp_path / "cache" / "unverified" / name).read_bytes()).hexdigest()[:16]
               for role, name in (("vggish", "vggish.safetensors"), ("vggish_pca", "vggish_pca.npz"))}
    # the official visual files are not in CI: random stand-ins for Inception and its PCA only
    real_inception, real_pca = inception.load_inception, pca.load_yt8m_pca
    monkeypatch.setattr(inception, "load_inception", lambda random_weights=False, **kw: real_inception(True, **kw))
    monkeypatch.setattr(pca, "load_yt8m_pca", lambda random_weights=False, **kw: real_pca(True, **kw))
    extract_module._load_networks.cache_clear()
    try:
        extractor = extract_module.FeatureExtractor(random_weights=False, batch_size=4)
    finally:
        extract_module._load_networks.cache_clear()  # other tests must not get these networks
    clip = make_media(tmp_path / "clip.mp4", duration_s=1.5)
    out = tmp_path / "features.tfrecord"
    extract_module.extract_to_records([clip], out, level="video", extractor=extractor)

    made = next(iter(read_records(out))).provenance
    marks = [f"vggish unverified sha256:{digests['vggish']}", f"vggish_pca unverified sha256:{digests['vggish_pca']}"]
    assert made["vtag_extractor"] == "; ".join([extract_module.official_extractor(), *marks])
    assert made["vtag_audio"] == "vggish"

    info = run_vtag("info", str(out))
    assert info.returncode == 0, info.stderr
    text = " ".join(info.stdout.split())  # the table wraps
    for mark in marks:
        assert f"features.tfrecord: extractor: {mark} — your own weights, not the official ones" in text
    result = run_vtag("classify", str(out), "--model", str(tiny_model), "--device", "cpu", "--json")
    assert result.returncode == 0, result.stderr
    assert f"warning: {out}: extractor: {marks[0]} — your own weights" in result.stderr
    row = json.loads(result.stdout.splitlines()[0])
    assert row["provenance"]["vtag_extractor"] == made["vtag_extractor"]
    assert [w for w in row["warnings"] if "unverified" in w] == [
        f"extractor: {mark} — your own weights, not the official ones the models were trained on" for mark in marks]
