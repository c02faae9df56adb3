"""``rrg-mamba verify``: check a whole annotation before training -- every entry, every image -- and list every
problem at once (missing or unreadable files, films too small / elongated / large, duplicate ids, a study in two
splits, mixed view counts)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from ..data import build_dataset_dict, read_annotation
from ..data.annotation import BadEntry, MissingImage, image_file
from ..data.verify import check_image_file


def image_problems(annotation: dict[str, Any], image_root: Path) -> list[str]:
    """One line per image path that breaks the loaders' rule (`image_file`: inside the root, an existing file) or
    does not decode into a usable film."""
    problems = []
    for split, entries in annotation.items():
        for index, entry in enumerate(entries if isinstance(entries, list) else ()):
            paths = entry.get("image_path") if isinstance(entry, dict) else None
            paths = [paths] if isinstance(paths, str) else paths
            where = f"{split}[{index}] id={entry.get('id')!r}" if isinstance(entry, dict) else f"{split}[{index}]"
            for position, path in enumerate(paths if isinstance(paths, list) else ()):
                if not isinstance(path, str) or not path:
                    continue  # named by the entry checks
                try:
                    found = image_file(image_root, path, f"{where}: field image_path[{position}]")
                except (BadEntry, MissingImage) as error:
                    problems.append(str(error))
                    continue
                if (reason := check_image_file(str(found))) is not None:
                    problems.append(f"{where}: {reason}")
    return problems


def verify_annotation(
    annotation_path: str | os.PathLike, image_root: str | os.PathLike, allow_split_overlap: bool = False
) -> list[str]:
    """Every problem of the annotation and its images, one line each (empty: all usable)."""
    annotation = read_annotation(annotation_path)
    if not isinstance(annotation, dict):
        return [f"{annotation_path}: expected an object with split lists"]
    root = Path(image_root).resolve()
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
