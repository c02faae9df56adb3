"""Scan every image of a dataset before any work starts, and list every bad file (``rrg-mamba verify``,
``rrg-mamba train --verify_images``)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm

from ..image_processing_xray import load_xray_image

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BadImage:
    """One image that cannot be used: where it is (split, study id, file) and why."""

    split: str
    study_id: str
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.split} id={self.study_id!r}: {self.reason}"


def check_image_file(path: str) -> str | None:
    """``None`` if the file decodes into a usable film, else the reason (which names the file)."""
    try:
        load_xray_image(path)
    except (OSError, ValueError) as error:
        return str(error)
    return None


def scan_images(
    splits: Mapping[str, Iterable[Mapping[str, Any]]], image_column: str = "images", progress: bool = True
) -> list[BadImage]:
    """Decode every image path of every split (``{split: examples}``); returns all the bad ones."""
    bad: list[BadImage] = []
    for split, examples in splits.items():
        for example in tqdm(examples, desc=f"verifying {split} images", unit="study", disable=not progress):
            for path in example.get(image_column) or ():
                if isinstance(path, str) and (reason := check_image_file(path)) is not None:
                    bad.append(BadImage(split, str(example.get("id")), path, reason))
    return bad


def format_bad_images(bad: list[BadImage]) -> str:
    """One line per bad file, then a count."""
    return "\n".join([*(str(item) for item in bad), f"{len(bad)} bad image file(s)"])


__all__ = ["BadImage", "check_image_file", "format_bad_images", "scan_images"]
