"""YT8MDataset: sample layout, worker/rank splits, shuffle buffer, input specs, bad records."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from vtag.tasks.dataset import YT8MDataset
from vtag.errors import VtagError
from vtag.io.records import YT8MRecord, write_records


def write_numbered(folder, files: int, per_file: int, level: str = "video", labelled: bool = True) -> list:
    """Records whose visual[0] is their global number, so every yielded sample can be identified."""
    folder.mkdir(exist_ok=True)
    paths = []
    n = 0
    for f in range(files):
        records = []
        for _ in range(per_file):
            if level == "video":
                rgb, audio = np.full(1024, n, np.float32), np.full(128, -n, np.float32)
            else:
                rgb = np.full((3, 1024), 100 + n % 50, np.uint8)
                audio = np.zeros((3, 128), np.uint8)
            labels = np.array([n % 7, 10 + n % 3], np.int64) if labelled else None
            records.append(YT8MRecord(f"r{n}", labels, rgb, audio, level))
            n += 1
        path = folder / f"part{f:02d}.tfrecord"
        write_records(path, records, level=level)
        paths.append(path)
    return paths


def numbers(samples) -> list[int]:
    return [int(v[0]) for v, _, _ in samples]


def test_samples_in_order(tmp_path):
    write_numbered(tmp_path / "d", files=3, per_file=4)
    samples = list(YT8MDataset(tmp_path / "d", num_classes=20))
    assert numbers(samples) == list(range(12))
    visual, audio, target = samples[5]
    assert visual.shape == (1024,) and audio.shape == (128,) and target.shape == (20,)
    assert visual.dtype == audio.dtype == target.dtype == torch.float32
    assert torch.equal(audio, torch.full((128,), -5.0))
    assert target.nonzero().flatten().tolist() == [5, 12] and target.sum() == 2


def test_workers_split_files_without_overlap(tmp_path):
    write_numbered(tmp_path / "d", files=5, per_file=6)
    loader = DataLoader(YT8MDataset(tmp_path / "d", num_classes=20), batch_size=4, num_workers=2)
    seen = [int(x) for v, _, _ in loader for x in v[:, 0]]
    assert sorted(seen) == list(range(30))


@pytest.mark.parametrize("files", [6, 2])  # by file, and (fewer files than readers) by record
def test_ranks_partition_the_records(tmp_path, files):
    write_numbered(tmp_path / "d", files=files, per_file=12 // files)
    per_rank = [numbers(YT8MDataset(tmp_path / "d", num_classes=20, rank=r, world_size=3)) for r in range(3)]
    assert all(per_rank)
    assert sorted(sum(per_rank, [])) == list(range(12))


def test_shuffle_is_seeded_and_changes_per_epoch(tmp_path):
    write_numbered(tmp_path / "d", files=4, per_file=10)
    ds = YT8MDataset(tmp_path / "d", num_classes=20, shuffle=True, buffer_size=8, seed=3)
    first = numbers(ds)
    assert numbers(ds) == first  # same seed, same epoch
    assert sorted(first) == list(range(40)) and first != list(range(40))
    ds.set_epoch(1)
    second = numbers(ds)
    assert sorted(second) == list(range(40)) and second != first
    other = YT8MDataset(tmp_path / "d", num_classes=20, shuffle=True, buffer_size=8, seed=4)
    assert numbers(other) != first


def test_frame_level_input_specs(tmp_path):
    write_numbered(tmp_path / "f", files=1, per_file=3, level="frame")
    (visual, audio, target), *_ = YT8MDataset(tmp_path / "f", num_classes=20, input_spec="mean+std")
    assert visual.shape == (2048,) and audio.shape == (256,)
    expected = np.float32(100) * np.float32(4 / 255) + np.float32(4 / 512 - 2)
    assert torch.allclose(visual[:1024], torch.tensor(expected)) and torch.all(visual[1024:] == 0)
    (visual, audio, _), *_ = YT8MDataset(tmp_path / "f", num_classes=20, input_spec="mean")
    assert visual.shape == (1024,) and audio.shape == (128,)


def test_mean_std_on_video_level_is_a_clear_error(tmp_path):
    write_numbered(tmp_path / "d", files=1, per_file=2)
    with pytest.raises(VtagError, match="video-level records hold only mean features"):
        YT8MDataset(tmp_path / "d", num_classes=20, input_spec="mean+std")
    with pytest.raises(VtagError, match="input spec"):
        YT8MDataset(tmp_path / "d", num_classes=20, input_spec="median")


def test_labels_checked(tmp_path):
    write_numbered(tmp_path / "d", files=1, per_file=3)
    with pytest.raises(VtagError, match="record 0: label 10 outside the vocabulary"):
        list(YT8MDataset(tmp_path / "d", num_classes=10))
    write_numbered(tmp_path / "u", files=1, per_file=2, labelled=False)
    with pytest.raises(VtagError, match="has no labels"):
        list(YT8MDataset(tmp_path / "u", num_classes=20))
    samples = list(YT8MDataset(tmp_path / "u", num_classes=20, require_labels=False))
    assert len(samples) == 2 and all(t.sum() == 0 for _, _, t in samples)


def test_skip_bad_in_dataset(tmp_path):
    (path,) = write_numbered(tmp_path / "d", files=1, per_file=4)
    data = bytearray(path.read_bytes())
    data[200] ^= 0xFF  # inside record 0's floats
    path.write_bytes(bytes(data))
    with pytest.raises(VtagError, match="record 0: CRC mismatch"):
        list(YT8MDataset(path, num_classes=20))
    ds = YT8MDataset(path, num_classes=20, skip_bad=True)
    assert numbers(ds) == [1, 2, 3] and ds.stats.skipped == 1


def test_release_shards(shared_data):
    ds = YT8MDataset(shared_data / "yt8m-2018" / "valid" / "validate0100.tfrecord", num_classes=3862)
    counts = Counter(int(t.sum()) for _, _, t in ds)
    assert sum(counts.values()) == 293 and 0 not in counts
