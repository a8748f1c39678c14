"""vtag: tag videos with YouTube-8M labels using audio-visual fusion models."""

from pathlib import Path

__version__ = "0.1.0"

# The repository's weights/ folder holds the vocabularies and the default model; it sits beside the
# package in a source checkout (pip install -e .).
REPO_WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
