"""JSON Lines files: one record per line (predictions, generated reports)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def write_jsonl(path: str | os.PathLike, records: Sequence[dict[str, Any]]) -> None:
    """One JSON object per line (parent folders created)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")


__all__ = ["write_jsonl"]
