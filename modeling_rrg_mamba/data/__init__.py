"""Datasets for report generation: R2Gen-layout loaders, raw-release builders, pseudo-labels and collators."""

from .annotation import BadEntry, MissingImage, build_dataset_dict, load_r2gen_annotation, read_annotation
from .collators import EMRRGDataCollator, ReportGenerationCollator, RRGMambaDataCollator, open_image
from .jsonl import write_jsonl
from .labels import OBSERVATION_LABELS_COLUMN, add_observation_labels
from .outputs import JsonlWriter, OutputPathError, check_output_dir, check_output_file, read_jsonl_records
from .sources import (
    chexpert_plus_annotation,
    extract_section,
    iu_xray_annotation,
    mimic_cxr_annotation,
    parse_open_i_report,
    read_projections,
    write_annotation,
)
from .verify import BadImage, format_bad_images, scan_images


def load_chexpert_plus(
    csv_path,
    image_root=None,
    sections=("section_findings",),
    frontal_only=False,
    on_error="raise",
    cast_images=False,
    verify_images=False,
    allow_split_overlap=False,
):
    """Load the CheXpert Plus CSV (one row per image) as a ``DatasetDict``; see :func:`chexpert_plus_annotation`."""
    return build_dataset_dict(
        chexpert_plus_annotation(csv_path, sections=sections, frontal_only=frontal_only),
        image_root=image_root,
        on_error=on_error,
        cast_images=cast_images,
        verify_images=verify_images,
        source=str(csv_path),
        allow_split_overlap=allow_split_overlap,
    )


__all__ = [
    "BadEntry",
    "BadImage",
    "EMRRGDataCollator",
    "JsonlWriter",
    "OutputPathError",
    "check_output_dir",
    "check_output_file",
    "format_bad_images",
    "read_jsonl_records",
    "scan_images",
    "MissingImage",
    "OBSERVATION_LABELS_COLUMN",
    "ReportGenerationCollator",
    "RRGMambaDataCollator",
    "add_observation_labels",
    "build_dataset_dict",
    "chexpert_plus_annotation",
    "extract_section",
    "iu_xray_annotation",
    "load_chexpert_plus",
    "load_r2gen_annotation",
    "mimic_cxr_annotation",
    "open_image",
    "parse_open_i_report",
    "read_annotation",
    "read_projections",
    "write_annotation",
    "write_jsonl",
]
