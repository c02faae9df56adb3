"""JSON Lines files: one record per line (predictions, generated reports)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from .atomic import write_text_whole


def reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` for ``json.load``: a key given twice is an error, never "the last one wins"."""
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f'key "{key}" appears twice in one object; keep one')
        seen[key] = value
    return seen


def write_jsonl(path: str | os.PathLike, records: Sequence[dict[str, Any]]) -> None:
    """One JSON object per line (parent folders created), written whole: through a temporary file renamed over
    ``path``."""
    write_text_whole(path, "".join(json.dumps(record) + "\n" for record in records))


__all__ = ["reject_duplicate_keys", "write_jsonl"]
