"""--shard I/N splits any list exactly once between N jobs, the same way wherever the folder is mounted;
`vtag batch --merge` joins the parts and refuses a file found in two of them."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from vtag.tasks.batch import find_media
from vtag.errors import VtagError
from vtag.tasks.merge import merge_results
from vtag.io.shard import Shard, canonical_names, parse_shard, select_shard, shard_of


def test_shards_cover_every_list_exactly_once():
    rng = random.Random(13)
    for _ in range(300):
        names = sorted({"/".join(rng.choice("abcdé日x") * rng.randint(1, 3) for _ in range(rng.randint(1, 3)))
                        + rng.choice([".mp4", ".mkv", ""]) for _ in range(rng.randint(0, 60))})
        count = rng.randint(1, 12)
        parts = [select_shard(names, names, Shard(i, count)) for i in range(1, count + 1)]
        flat = [n for part in parts for n in part]
        assert sorted(flat) == names and len(flat) == len(set(flat))
        # the same name lands in the same shard however the list around it changes
        subset = rng.sample(names, len(names) // 2)
        for name in subset:
            assert shard_of(name, count) == next(i for i, part in enumerate(parts, 1) if name in part)


def test_the_split_ignores_where_the_folder_is(tmp_path):
    for root in (tmp_path / "mnt" / "a", tmp_path / "data" / "elsewhere"):
        (root / "sub").mkdir(parents=True)
        for name in ("x.mp4", "y.mp4", "sub/z.mkv"):
            (root / name).write_bytes(b"")
    splits = []
    for root in (tmp_path / "mnt" / "a", tmp_path / "data" / "elsewhere"):
        roots: dict[str, str] = {}
        files = [str(f) for f in find_media([root], recursive=True, roots=roots)]
        names = canonical_names(files, roots)
        assert sorted(names) == ["sub/z.mkv", "x.mp4", "y.mp4"]
        splits.append([sorted(Path(f).relative_to(root).as_posix() for f in select_shard(files, names, Shard(i, 2)))
                       for i in (1, 2)])
    assert splits[0] == splits[1]


@pytest.mark.parametrize("text", ["0/3", "4/3", "1/0", "a/b", "2", ""])
def test_bad_shard_is_one_line(text):
    with pytest.raises(VtagError, match="--shard"):
        parse_shard(text)


def _write(path: Path, entries: list[dict]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))
    return path


def test_merge_joins_parts_and_reports_failed_and_missing(tmp_path):
    a = _write(tmp_path / "a.jsonl", [{"path": "v/1.mp4", "labels": []}, {"path": "v/2.mp4", "error": "v/2.mp4: bad"}])
    b = _write(tmp_path / "b.jsonl", [{"path": "v/3.mp4", "labels": []}])
    summary = merge_results(tmp_path / "all.jsonl", [a, b], expected=["v/1.mp4", "v/2.mp4", "v/3.mp4", "v/4.mp4"])
    lines = [json.loads(line) for line in (tmp_path / "all.jsonl").read_text().splitlines()]
    assert [e["path"] for e in lines] == ["v/1.mp4", "v/2.mp4", "v/3.mp4"]
    assert summary.failed == ["v/2.mp4"] and summary.missing == ["v/4.mp4"]


def test_merge_refuses_a_file_in_two_parts(tmp_path):
    a = _write(tmp_path / "a.jsonl", [{"path": "v/1.mp4", "labels": []}])
    b = _write(tmp_path / "b.jsonl", [{"path": "v/2.mp4", "labels": []}, {"path": "v/1.mp4", "labels": []}])
    with pytest.raises(VtagError) as info:
        merge_results(tmp_path / "all.jsonl", [a, b])
    message = str(info.value)
    assert "v/1.mp4" in message and str(a) in message and str(b) in message and "\n" not in message
    assert not (tmp_path / "all.jsonl").exists()


def test_merge_cli_exit_codes(tmp_path):
    a = _write(tmp_path / "a.jsonl", [{"path": "v/1.mp4", "labels": []}])
    run = lambda *args: subprocess.run([sys.executable, "-m", "vtag", "batch", *map(str, args)],
                                       capture_output=True, text=True, timeout=120)
    ok = run("--merge", tmp_path / "all.jsonl", a)
    assert ok.returncode == 0, ok.stderr
    assert "merged 1 files from 1 parts" in ok.stderr
    dup = run("--merge", tmp_path / "again.jsonl", a, a)
    assert dup.returncode == 2 and "appears twice in" in dup.stderr and "Traceback" not in dup.stderr


def test_ray_flag_without_ray_names_the_extra(monkeypatch, tmp_path):
    from vtag.tasks.distributed import batch_on_ray

    (tmp_path / "a.mp4").write_bytes(b"x")
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(VtagError, match=r"pip install 'vtag\[ray\]'"):
        batch_on_ray([tmp_path], tmp_path / "out.jsonl", random_weights=True)
