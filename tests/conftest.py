"""Shared test fixtures. Real data lives in ../shared/data beside the checkout; tests that need it skip
with a reason where it is absent (a user's fresh clone), and the repo's own fixtures cover the rest."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("VTAG_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (set VTAG_SHARED_DATA to use it)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A small random 2018-vocabulary model folder (fc-early-fusion, hidden 32) for tests that need a
    model but not a meaningful one; tests only read it."""
    import torch

    from vtag.models.registry import create_model
    from vtag.models.storage import save_model

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("model")
    save_model(create_model("fc-early-fusion", num_classes=3862, hidden=32), folder, extra={"vocabulary": "2018"})
    return folder
