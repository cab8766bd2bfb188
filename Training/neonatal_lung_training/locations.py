"""Where the checkout and the shared data folder are, computed in one place.

Modules used to count ``parents[...]`` from their own file, and moving them into subpackages silently
pointed those paths into the repository instead of beside it. Every module asks here instead.
"""

from __future__ import annotations

from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]  # the checkout: Training/neonatal_lung_training/ is two down


def shared_data(name: str) -> Path:
    """``../shared/data/<name>`` beside the checkout (never inside it: the data may not be committed)."""
    return REPOSITORY.parent / "shared" / "data" / name
