"""JSON Lines files: one record per line (predictions, generated reports)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` for ``json.load``: a key given twice is an error, never "the last one wins"."""
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f'key "{key}" appears twice in one object; keep one')
        seen[key] = value
    return seen


def write_jsonl(path: str | os.PathLike, records: Sequence[dict[str, Any]]) -> None:
    """One JSON object per line (parent folders created)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")


__all__ = ["reject_duplicate_keys", "write_jsonl"]
