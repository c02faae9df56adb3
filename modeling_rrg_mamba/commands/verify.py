"""``rrg-mamba verify``: check a whole annotation before training -- every entry, every image -- and list every
problem at once (missing or unreadable files, films too small / elongated / large, duplicate ids, a study in two
splits, mixed view counts)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from ..data import build_dataset_dict, read_annotation
from ..data.annotation import BadEntry
from ..data.verify import check_image_file


def image_problems(annotation: dict[str, Any], image_root: Path) -> list[str]:
    """One line per image file that is missing or does not decode into a usable film."""
    problems = []
    for split, entries in annotation.items():
        for index, entry in enumerate(entries if isinstance(entries, list) else ()):
            paths = entry.get("image_path") if isinstance(entry, dict) else None
            paths = [paths] if isinstance(paths, str) else paths
            for path in paths if isinstance(paths, list) else ():
                if isinstance(path, str) and (reason := check_image_file(str(image_root / path))) is not None:
                    problems.append(f"{split}[{index}] id={entry.get('id')!r}: {reason}")
    return problems


def verify_annotation(
    annotation_path: str | os.PathLike, image_root: str | os.PathLike, allow_split_overlap: bool = False
) -> list[str]:
    """Every problem of the annotation and its images, one line each (empty: all usable)."""
    annotation = read_annotation(annotation_path)
    if not isinstance(annotation, dict):
        return [f"{annotation_path}: expected an object with split lists"]
    root = Path(image_root)
    if not root.is_dir():
        return [f"{root}: image root folder does not exist"]
    problems = image_problems(annotation, root)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:  # entry checks without the images (already listed above)
            build_dataset_dict(
                annotation,
                image_root=None,
                on_error="skip",
                source=str(annotation_path),
                allow_split_overlap=allow_split_overlap,
            )
        except BadEntry as error:
            problems.append(str(error))
    problems += [str(w.message) for w in caught if "no image_root given" not in str(w.message)]
    return problems


__all__ = ["image_problems", "verify_annotation"]
