"""Load R2Gen-layout annotations (IU X-Ray, MIMIC-CXR, CheXpert Plus) into a ``datasets.DatasetDict``.

An R2Gen annotation is ``{"train": [...], "val": [...], "test": [...]}``, each entry
``{"id", "report", "image_path": [relative paths], "split", ...}``. The loader validates every entry and
resolves image paths under ``image_root``. Splits become ``train`` / ``validation`` / ``test``; columns are
``id``, ``images`` (absolute paths, decoded lazily by the collators, or ``datasets.Image`` features with
``cast_images=True``), ``report`` and the entry's other scalar fields (``view``, ``study_id``, ...) as strings.

Bad data policy (``on_error``):

* ``"raise"`` (default): the first bad entry raises ``ValueError`` (``FileNotFoundError`` for a missing
  image) naming the split, entry id and field;
* ``"skip"``: each bad entry is dropped with a ``UserWarning`` naming it, and a summary is logged.

Checked: malformed entries (not an object, missing or non-string ``id`` / ``image_path`` / report, a film listed
twice in one study), empty reports, image paths that are absolute or escape ``image_root`` as written (`image_file`:
a symlink inside the root is an ordinary file), missing image files and, with
``verify_images=True``, unreadable image files. ``image_root=None`` loads a text-only dataset (no ``images``
column; the relative paths stay in ``image_path``) and says so with a warning. If not a single image file
exists under ``image_root`` the loader raises whatever the policy, since the root is then surely wrong.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets

from ..image_processing_xray import load_xray_image
from .jsonl import reject_duplicate_keys

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike

#: Split names of the R2Gen layout and of the raw releases -> DatasetDict split names.
SPLIT_ALIASES: dict[str, str] = {
    "train": "train",
    "val": "validation",
    "valid": "validation",
    "validate": "validation",
    "validation": "validation",
    "test": "test",
}
_RESERVED = ("id", "image_path", "split")


class BadEntry(ValueError):
    """A malformed, incomplete or unsafe annotation entry (message names the entry and the field)."""


class MissingImage(FileNotFoundError):
    """An image file named by an entry does not exist."""


def _entry_name(source: str, split: str, index: int, entry: Any) -> str:
    entry_id = entry.get("id") if isinstance(entry, dict) else None
    return f"{source}: {split}[{index}]" + (f" (id={entry_id!r})" if entry_id is not None else "")


def _check_readable(path: Path, where: str) -> None:
    """Decode the file with the reader the processor uses, so DICOM and 16-bit PNG count as readable."""
    try:
        load_xray_image(path)
    except ValueError as error:
        raise BadEntry(f"{where}: image file {path} is unreadable ({error})") from None


def image_file(image_root: Path, relative: str, where: str) -> Path:
    """The one rule for an annotation's image path, shared by the loaders, ``verify``, ``generate`` and ``train``:
    relative to ``image_root`` and inside it as written (no ``..`` above it; a symlink inside the root, to a file
    anywhere, is an ordinary file), naming an existing file. Raises `BadEntry` or `MissingImage` naming ``where``."""
    if os.path.isabs(relative):
        raise BadEntry(f"{where}={relative!r} is absolute; paths must be relative to the image root {image_root}")
    normal = os.path.normpath(relative)
    if normal == os.pardir or normal.startswith(os.pardir + os.sep):
        raise BadEntry(f"{where}={relative!r} escapes the image root {image_root}")
    path = image_root / normal
    if path.is_dir():
        raise BadEntry(f"{where}={relative!r}: {path} is a folder, not an image file")
    if not path.is_file():
        what = "is a link to a missing file" if path.is_symlink() else "does not exist"
        raise MissingImage(f"{where}: image file {path} {what}")
    return path


def _resolve_images(relative: list[str], image_root: Path, where: str, verify: bool) -> list[str]:
    resolved = []
    for position, rel in enumerate(relative):
        path = image_file(image_root, rel, f"{where}: field image_path[{position}]")
        if verify:
            _check_readable(path, f"{where}: field image_path[{position}]")
        resolved.append(str(path))
    return resolved


def _validate_entry(entry: Any, where: str, report_field: str | None) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise BadEntry(f"{where}: entry is a {type(entry).__name__}, expected an object")
    if not isinstance(entry.get("id"), (str, int)) or str(entry.get("id")).strip() == "":
        raise BadEntry(f"{where}: field 'id' is missing or not a non-empty string")
    paths = entry.get("image_path")
    if isinstance(paths, str):
        paths = [paths]
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) and p for p in paths):
        raise BadEntry(f"{where}: field 'image_path' must be a non-empty list of relative paths, got {paths!r}")
    repeated = sorted({p for p in paths if [os.path.normpath(q) for q in paths].count(os.path.normpath(p)) > 1})
    if repeated:
        raise BadEntry(f"{where}: field 'image_path' lists {_names(repeated)} more than once (one film per view)")
    if report_field is not None:
        report = entry.get(report_field)
        if report is None:
            raise BadEntry(f"{where}: field {report_field!r} (the report) is missing")
        if not isinstance(report, str):
            raise BadEntry(f"{where}: field {report_field!r} must be a string, got {type(report).__name__}")
        if not report.strip():
            raise BadEntry(f"{where}: field {report_field!r} (the report) is empty")
    return {**entry, "image_path": paths}


def _metadata_fields(entries: Sequence[Mapping[str, Any]], report_field: str | None) -> list[str]:
    fields: dict[str, None] = {}
    for entry in entries:
        for key, value in entry.items():
            if (
                key not in _RESERVED
                and key != report_field
                and (value is None or isinstance(value, (str, int, float, bool)))
            ):
                fields.setdefault(key, None)
    return list(fields)


def _names(items: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(repr(item) for item in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _drop_duplicate_ids(kept: list[dict[str, Any]], source: str, split: str, on_error: str) -> list[dict[str, Any]]:
    """Duplicate study ids in one split: an error naming them, or (``skip``) keep each id's first entry."""
    seen: dict[str, int] = {}
    for entry in kept:
        seen[str(entry["id"])] = seen.get(str(entry["id"]), 0) + 1
    duplicates = [entry_id for entry_id, count in seen.items() if count > 1]
    if not duplicates:
        return kept
    message = f"{source}: split {split!r} has duplicate study ids {_names(duplicates)}"
    if on_error == "raise":
        raise BadEntry(message + " (each study once; on_error='skip' keeps the first of each)")
    warnings.warn(message + "; keeping the first entry of each", UserWarning, stacklevel=3)
    first, unique = set(), []
    for entry in kept:
        if str(entry["id"]) not in first:
            first.add(str(entry["id"]))
            unique.append(entry)
    return unique


def check_view_counts(entries: Sequence[Mapping[str, Any]], source: str, split: str) -> None:
    """Studies of one split must have the same number of views (they are batched together); the error names them."""
    by_count: dict[int, list[str]] = {}
    for entry in entries:
        by_count.setdefault(len(entry["image_path"]), []).append(str(entry["id"]))
    if len(by_count) <= 1:
        return
    common = max(by_count, key=lambda count: len(by_count[count]))
    odd = "; ".join(
        f"{len(ids)} with {count} view(s): {_names(ids)}" for count, ids in sorted(by_count.items()) if count != common
    )
    raise BadEntry(
        f"{source}: split {split!r} mixes studies with different numbers of views ({len(by_count[common])} "
        f"have {common}; {odd}); a batch needs the same number of views per study: split the annotation by "
        "view count or give every study the same views"
    )


def check_split_overlap(splits: Mapping[str, Sequence[Mapping[str, Any]]], source: str) -> None:
    """The same study (id or image file) in two splits leaks test data into training: an error naming them."""
    owners: dict[str, str] = {}
    overlaps: list[str] = []
    for split, entries in splits.items():
        for entry in entries:
            keys = {f"id {entry['id']!s}"} | {f"image {path}" for path in entry["image_path"]}
            clashes = sorted({owners[key] for key in keys if key in owners and owners[key] != split})
            if clashes:
                overlaps.append(f"{entry['id']!s} ({'/'.join(clashes)} and {split})")
            for key in keys:
                owners.setdefault(key, split)
    if overlaps:
        raise BadEntry(
            f"{source}: {len(overlaps)} studies are in more than one split: {_names(overlaps)}; remove "
            "them from all but one split (or pass allow_split_overlap=True / --allow_split_overlap)"
        )


def build_dataset_dict(
    annotation: Mapping[str, Any],
    image_root: PathLike | None = None,
    report_field: str | None = "report",
    on_error: str = "raise",
    cast_images: bool = False,
    verify_images: bool = False,
    source: str = "annotation",
    allow_split_overlap: bool = False,
) -> datasets.DatasetDict:
    """Validate an in-memory R2Gen-layout annotation and build the ``DatasetDict`` (see the module docstring).

    ``report_field`` names the entry field holding the report (``None`` for an image-only dataset, e.g. a
    collection without reports); it becomes the ``report`` column. Duplicate study ids within a split follow
    ``on_error``; studies with different numbers of views in one split, and (unless ``allow_split_overlap``) a
    study (same id or same image file) in two splits, raise `BadEntry` naming them.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error: expected 'raise' or 'skip', got {on_error!r}")
    if not isinstance(annotation, Mapping):
        raise BadEntry(f"{source}: expected an object with split lists, got {type(annotation).__name__}")
    unknown = [k for k in annotation if k not in SPLIT_ALIASES]
    if unknown:
        raise BadEntry(f"{source}: unknown split key(s) {unknown}; expected some of {sorted(SPLIT_ALIASES)}")
    root = None if image_root is None else Path(image_root).resolve()
    if root is None:
        warnings.warn(
            f"{source}: no image_root given, so images are missing: loading a text-only dataset "
            "(no 'images' column; relative paths kept in 'image_path')",
            UserWarning,
            stacklevel=2,
        )
    elif not root.is_dir():
        raise FileNotFoundError(f"image_root: directory {root} does not exist")

    valid: dict[str, list[dict[str, Any]]] = {}
    images_found = images_checked = 0
    for split_key, entries in annotation.items():
        if not isinstance(entries, list):
            raise BadEntry(f"{source}: split {split_key!r} must be a list of entries, got {type(entries).__name__}")
        kept, skipped = [], 0
        for index, entry in enumerate(entries):
            where = _entry_name(source, split_key, index, entry)
            try:
                entry = _validate_entry(entry, where, report_field)
                if root is not None:
                    images_checked += 1
                    entry["images"] = _resolve_images(entry["image_path"], root, where, verify_images)
                    images_found += 1
            except MissingImage:
                if on_error == "raise":
                    if images_found == 0:
                        _raise_if_root_is_empty(root, source, annotation, report_field)
                    raise
                warnings.warn(f"skipping {where}: image file missing", UserWarning, stacklevel=2)
                skipped += 1
                continue
            except BadEntry as error:
                if on_error == "raise":
                    raise
                warnings.warn(f"skipping entry: {error}", UserWarning, stacklevel=2)
                skipped += 1
                continue
            kept.append(entry)
        if skipped:
            logger.warning("%s: skipped %d of %d entries of split %r", source, skipped, len(entries), split_key)
        kept = _drop_duplicate_ids(kept, source, split_key, on_error)
        check_view_counts(kept, source, split_key)
        valid[split_key] = kept
    if root is not None and images_checked and not images_found:
        raise FileNotFoundError(
            f"{source}: none of the {images_checked} entries has its images under {root}; "
            "the images are missing (pass image_root=None to load the reports as text only)"
        )
    if not allow_split_overlap:
        check_split_overlap(valid, source)
    splits = {
        SPLIT_ALIASES[key]: _to_dataset(kept, report_field, root is not None, cast_images)
        for key, kept in valid.items()
    }
    return datasets.DatasetDict(splits)


def _raise_if_root_is_empty(root: Path, source: str, annotation: Mapping[str, Any], report_field: str | None) -> None:
    """Turn a first missing image into a clearer error when no entry at all has its images."""
    for entries in annotation.values():
        for entry in entries if isinstance(entries, list) else ():
            try:
                paths = _validate_entry(entry, source, report_field)["image_path"]
            except BadEntry:
                continue
            if all((root / os.path.normpath(p)).is_file() for p in paths):
                return
    raise FileNotFoundError(
        f"{source}: no entry has its image files under {root}; the images are missing "
        "(pass image_root=None to load the reports as a text-only dataset)"
    )


def _to_dataset(
    entries: list[dict[str, Any]], report_field: str | None, with_images: bool, cast_images: bool
) -> datasets.Dataset:
    columns: dict[str, list] = {"id": [str(e["id"]) for e in entries]}
    features: dict[str, Any] = {"id": datasets.Value("string")}
    if with_images:
        columns["images"] = [e["images"] for e in entries]
        features["images"] = datasets.List(datasets.Image() if cast_images else datasets.Value("string"))
    else:
        columns["image_path"] = [e["image_path"] for e in entries]
        features["image_path"] = datasets.List(datasets.Value("string"))
    if report_field is not None:
        columns["report"] = [e[report_field] for e in entries]
        features["report"] = datasets.Value("string")
    for field in _metadata_fields(entries, report_field):
        columns[field] = [None if e.get(field) is None else str(e.get(field)) for e in entries]
        features[field] = datasets.Value("string")
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features))


def read_annotation(annotation_path: PathLike) -> dict[str, Any]:
    """Read an R2Gen ``annotation.json`` with an error naming the file when it is not valid JSON."""
    path = Path(annotation_path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation: file {path} does not exist")
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle, object_pairs_hook=reject_duplicate_keys)
    except json.JSONDecodeError as error:
        raise BadEntry(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from None
    except UnicodeDecodeError as error:
        raise BadEntry(
            f"{path}: not UTF-8 text (byte {error.object[error.start]:#04x} at offset {error.start}); "
            "save the annotation as UTF-8"
        ) from None
    except ValueError as error:  # a key given twice (reject_duplicate_keys)
        raise BadEntry(f"{path}: {error}") from None


def load_r2gen_annotation(
    annotation_path: PathLike,
    image_root: PathLike | None = None,
    report_field: str | None = "report",
    on_error: str = "raise",
    cast_images: bool = False,
    verify_images: bool = False,
    allow_split_overlap: bool = False,
) -> datasets.DatasetDict:
    """Load an R2Gen-layout ``annotation.json`` (IU X-Ray, MIMIC-CXR, or one built by ``processing/``).

    Example (IU X-Ray in R2Gen's release layout)::

        ds = load_r2gen_annotation("iu_xray/annotation.json", image_root="iu_xray/images")
        ds["train"][0]   # {"id": "CXR2384_IM-0942", "images": [".../0.png", ".../1.png"], "report": ...}
    """
    return build_dataset_dict(
        read_annotation(annotation_path),
        image_root=image_root,
        report_field=report_field,
        on_error=on_error,
        cast_images=cast_images,
        verify_images=verify_images,
        source=str(annotation_path),
        allow_split_overlap=allow_split_overlap,
    )
