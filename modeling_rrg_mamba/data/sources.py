"""Build R2Gen-layout annotations from the raw releases: IU X-Ray (Open-i XML), MIMIC-CXR, CheXpert Plus.

Each builder returns ``{"train": [...], "val": [...], "test": [...]}`` with entries ``{"id", "report",
"image_path", "split", ...}``; :func:`modeling_rrg_mamba.data.build_dataset_dict` turns that into a
``DatasetDict`` and the scripts under ``processing/`` write it as ``annotation.json``.
"""

from __future__ import annotations

import csv
import json
import logging
import random
import re
import xml.etree.ElementTree as ElementTree
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .annotation import SPLIT_ALIASES, PathLike
from .atomic import write_text_whole

logger = logging.getLogger(__name__)

R2GEN_SPLITS = ("train", "val", "test")
_TO_R2GEN_SPLIT = {"train": "train", "validation": "val", "test": "test"}


def _r2gen_split(name: str, where: str) -> str:
    try:
        return _TO_R2GEN_SPLIT[SPLIT_ALIASES[name.strip().lower()]]
    except KeyError:
        raise ValueError(f"{where}: unknown split {name!r}; expected one of {sorted(SPLIT_ALIASES)}") from None


def _group_by_split(entries: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    annotation: dict[str, list[dict[str, Any]]] = {split: [] for split in R2GEN_SPLITS}
    for entry in entries:
        annotation[entry["split"]].append(entry)
    return {split: entries for split, entries in annotation.items() if entries}


def write_annotation(annotation: Mapping[str, list[dict[str, Any]]], path: PathLike) -> None:
    """Write an annotation as ``annotation.json`` and log the number of entries per split."""
    write_text_whole(path, json.dumps(annotation, indent=1))  # whole or not at all
    logger.info("wrote %s: %s", path, {split: len(entries) for split, entries in annotation.items()})


# --------------------------------------------------------------------------------------------- IU X-Ray
def parse_open_i_report(xml_path: PathLike) -> dict[str, Any]:
    """One Open-i / NLMCXR report: ``{"uid", "findings", "impression", "images": [image ids in XML order],
    "mesh": [the indexers' manual MeSH major headings, e.g. "Cardiomegaly/mild"]}``."""
    try:
        root = ElementTree.parse(xml_path).getroot()
    except ElementTree.ParseError as error:
        raise ValueError(f"{xml_path}: malformed XML ({error})") from None
    sections = {(node.get("Label") or "").upper(): (node.text or "").strip() for node in root.iter("AbstractText")}
    uid = root.find("uId")
    return {
        "uid": uid.get("id") if uid is not None else Path(xml_path).stem,
        "findings": sections.get("FINDINGS", ""),
        "impression": sections.get("IMPRESSION", ""),
        "images": [node.get("id") for node in root.iter("parentImage") if node.get("id")],
        "mesh": [node.text.strip() for node in root.iter("major") if node.text and node.text.strip()],
    }


def read_projections(path: PathLike) -> dict[str, str]:
    """Image id -> ``"frontal"`` / ``"lateral"`` from a CSV with columns ``image`` and ``projection``."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"image", "projection"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing column(s) {sorted(missing)}")
        return {Path(row["image"]).stem: row["projection"].strip().lower() for row in reader}


def study_id_from_image(image_id: str) -> str:
    """R2Gen's IU study id: the image id without its last ``-NNNN`` part (``CXR1_1_IM-0001-3001`` -> "
    "``CXR1_1_IM-0001``)."""
    return image_id.rsplit("-", 1)[0]


def iu_xray_annotation(
    reports_dir: PathLike,
    image_suffix: str = ".png",
    projections: Mapping[str, str] | None = None,
    min_images: int = 2,
    max_images: int = 2,
    ratios: tuple[float, float, float] = (0.7, 0.1, 0.2),
    seed: int = 42,
    reference_splits: Mapping[str, str] | None = None,
) -> dict[str, list[dict]]:
    """IU X-Ray studies from Open-i XML reports: FINDINGS as report, frontal view first.

    Views come from ``projections`` (image id -> frontal/lateral) when given; otherwise the XML order is kept
    (a warning says so). Studies with empty findings or fewer than ``min_images`` images are dropped and
    counted. Splits follow ``reference_splits`` (study id -> split, e.g. from R2Gen's annotation) when given,
    else a seeded random split by ``ratios``. ``image_path`` holds the image file names (``<image id><suffix>``)
    relative to the image folder.
    """
    xml_files = sorted(Path(reports_dir).glob("*.xml"))
    if not xml_files:
        raise FileNotFoundError(f"reports_dir: no .xml reports in {reports_dir}")
    if projections is None:
        logger.warning("IU X-Ray: no projections table; view order is the XML order (pass one for frontal-first)")
    dropped: Counter = Counter()
    studies = []
    for xml_file in xml_files:
        report = parse_open_i_report(xml_file)
        if not report["findings"]:
            dropped["empty findings"] += 1
            continue
        images = report["images"]
        if projections is not None:
            images = sorted(images, key=lambda image: projections.get(image, "unknown") != "frontal")
        if len(images) < min_images:
            dropped[f"fewer than {min_images} images"] += 1
            continue
        images = images[:max_images]
        views = [projections.get(image, "unknown") if projections else "unknown" for image in images]
        studies.append(
            {
                "id": study_id_from_image(images[0]),
                "report": report["findings"],
                "image_path": [image + image_suffix for image in images],
                "view": ",".join(views),
                "uid": report["uid"],
            }
        )
    for reason, count in dropped.items():
        logger.warning("IU X-Ray: dropped %d reports (%s)", count, reason)
    return _group_by_split(_assign_splits(studies, ratios, seed, reference_splits))


def _assign_splits(
    studies: list[dict[str, Any]], ratios: Sequence[float], seed: int, reference_splits: Mapping[str, str] | None
) -> list[dict[str, Any]]:
    if reference_splits is not None:
        kept = [
            dict(s, split=_r2gen_split(reference_splits[s["id"]], s["id"]))
            for s in studies
            if s["id"] in reference_splits
        ]
        if len(kept) < len(studies):
            logger.warning("dropped %d studies absent from the reference split", len(studies) - len(kept))
        return kept
    if len(ratios) != 3 or any(r < 0 for r in ratios) or abs(sum(ratios) - 1.0) > 1e-6:
        raise ValueError(f"ratios: expected three non-negative fractions summing to 1, got {tuple(ratios)}")
    order = list(range(len(studies)))
    random.Random(seed).shuffle(order)
    n_train, n_val = round(ratios[0] * len(order)), round(ratios[1] * len(order))
    split_of = {
        i: ("train" if rank < n_train else "val" if rank < n_train + n_val else "test") for rank, i in enumerate(order)
    }
    return [dict(s, split=split_of[i]) for i, s in enumerate(studies)]


# ------------------------------------------------------------------------------------------- MIMIC-CXR
_SECTION_HEADER = re.compile(r"^\s*([A-Z][A-Z /&-]{2,40}):", re.MULTILINE)


def extract_section(report: str, name: str = "FINDINGS") -> str:
    """The text of one ``NAME:`` section of a MIMIC-CXR report (up to the next upper-case header), stripped.

    Returns ``""`` when the section is absent. Whitespace inside the section is collapsed.
    """
    headers = list(_SECTION_HEADER.finditer(report))
    for position, header in enumerate(headers):
        if header.group(1).strip().upper() == name.upper():
            end = headers[position + 1].start() if position + 1 < len(headers) else len(report)
            return " ".join(report[header.end() : end].split())
    return ""


def _read_csv(path: PathLike, required: Sequence[str]) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = set(required) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing column(s) {sorted(missing)}")
        return list(reader)


def mimic_cxr_annotation(
    split_csv: PathLike,
    reports_root: PathLike,
    metadata_csv: PathLike | None = None,
    section: str = "FINDINGS",
    image_suffix: str = ".jpg",
) -> dict[str, list[dict]]:
    """MIMIC-CXR-JPG images with the ``section`` of their study report, one entry per image (R2Gen layout).

    ``split_csv`` is ``mimic-cxr-2.0.0-split.csv`` (dicom_id, study_id, subject_id, split); report files are
    ``<reports_root>/p10/p10000032/s50414267.txt`` (the ``files/`` folder of mimic-cxr-reports); the optional
    ``metadata_csv`` adds ``view`` (ViewPosition). Images whose report lacks the section are dropped and counted.
    """
    rows = _read_csv(split_csv, ("dicom_id", "study_id", "subject_id", "split"))
    views = {}
    if metadata_csv is not None:
        views = {r["dicom_id"]: r["ViewPosition"] for r in _read_csv(metadata_csv, ("dicom_id", "ViewPosition"))}
    sections: dict[tuple[str, str], str] = {}
    entries, dropped = [], Counter()
    for row in rows:
        subject, study = row["subject_id"], row["study_id"]
        folder = f"p{subject[:2]}/p{subject}"
        key = (subject, study)
        if key not in sections:
            report_file = Path(reports_root) / folder / f"s{study}.txt"
            if not report_file.is_file():
                raise FileNotFoundError(
                    f"{split_csv}: dicom {row['dicom_id']}: report file {report_file} does not exist"
                )
            sections[key] = extract_section(report_file.read_text(encoding="utf-8"), section)
        if not sections[key]:
            dropped[f"no {section} section"] += 1
            continue
        entry = {
            "id": row["dicom_id"],
            "study_id": study,
            "subject_id": subject,
            "report": sections[key],
            "image_path": [f"{folder}/s{study}/{row['dicom_id']}{image_suffix}"],
            "split": _r2gen_split(row["split"], f"{split_csv}: dicom {row['dicom_id']}"),
        }
        if row["dicom_id"] in views:
            entry["view"] = views[row["dicom_id"]]
        entries.append(entry)
    for reason, count in dropped.items():
        logger.warning("MIMIC-CXR: dropped %d images (%s)", count, reason)
    return _group_by_split(entries)


# --------------------------------------------------------------------------------------- CheXpert Plus
def chexpert_plus_annotation(
    csv_path: PathLike,
    sections: Sequence[str] = ("section_findings",),
    frontal_only: bool = False,
    split_column: str = "split",
) -> dict[str, list[dict]]:
    """CheXpert Plus rows (one per image) in R2Gen layout; the report joins the named CSV ``sections``.

    Rows whose sections are all empty keep an empty report, so the loader's bad-data policy reports them.
    ``view`` combines ``frontal_lateral`` and ``ap_pa``.
    """
    rows = _read_csv(csv_path, ("path_to_image", split_column, *sections))
    entries = []
    for number, row in enumerate(rows, start=2):
        frontal_lateral = (row.get("frontal_lateral") or "").strip()
        if frontal_only and frontal_lateral.lower() != "frontal":
            continue
        path = row["path_to_image"].strip()
        entries.append(
            {
                "id": path.rsplit(".", 1)[0],
                "report": " ".join(" ".join((row[s] or "").split()) for s in sections if (row[s] or "").strip()),
                "image_path": [path],
                "split": _r2gen_split(row[split_column], f"{csv_path}: line {number}"),
                "view": " ".join(v for v in (frontal_lateral, (row.get("ap_pa") or "").strip()) if v),
                "study_id": str(Path(path).parent),
            }
        )
    return _group_by_split(entries)
