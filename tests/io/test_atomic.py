"""Atomic writes: strict JSON files."""

from __future__ import annotations

import json
import math

import pytest

from vtag.errors import VtagError
from vtag.io.atomic import atomic_write_json


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_json_with_nan_or_infinity_is_one_line_and_writes_nothing(tmp_path, bad):
    target = tmp_path / "config.json"
    with pytest.raises(VtagError, match="config.json: not written: a value in it is NaN or infinity") as info:
        atomic_write_json(target, {"metrics": {"gap": bad}})
    assert "\n" not in str(info.value)
    assert not list(tmp_path.iterdir())  # no file, no temp left behind


def test_json_is_written_as_before(tmp_path):
    target = tmp_path / "config.json"
    value = {"name": "vidéo", "gap": 0.5, "list": [1, 2]}
    atomic_write_json(target, value)
    assert target.read_text() == json.dumps(value, indent=2) + "\n"
