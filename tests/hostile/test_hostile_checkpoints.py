"""A training run killed while it saves a checkpoint leaves a temp folder beside `last`; the next save
removes it (and nothing else)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from vtag.tasks.checkpoints import write_checkpoint

KILLED_SAVE = """
import os, signal, sys
from pathlib import Path
from vtag.tasks.checkpoints import write_checkpoint

def write(folder):
    (folder / "model.safetensors").write_bytes(b"x" * 1000)
    os.kill(os.getpid(), signal.SIGKILL)  # killed mid-save: no cleanup runs

write_checkpoint(Path(sys.argv[1]) / "last", write)
"""


def _write(folder: Path) -> None:
    (folder / "state.json").write_text("{}")


def test_a_killed_save_leaves_nothing_after_the_next_save(tmp_path):
    run = tmp_path / "run"
    killed = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(run)], capture_output=True)
    assert killed.returncode == -9
    stale = [p.name for p in run.iterdir() if p.name.startswith(".last.")]
    assert len(stale) == 1, stale
    keep = [run / ".last.notatemp-folder", run / ".best.abcd1234", run / "last.old.abcd1234", run / ".lastx.abcd1234"]
    for folder in keep:
        folder.mkdir()
    (run / ".last.file1234").write_text("a file, not a folder mkdtemp made")

    write_checkpoint(run / "last", _write)
    assert (run / "last" / "state.json").is_file()
    assert not [p for p in run.iterdir() if p.name in stale]
    assert all(folder.is_dir() for folder in keep) and (run / ".last.file1234").is_file()
