"""Build the sample data bundled for ``rrg-mamba demo`` (modeling_rrg_mamba/demo_data/) from covid-cxr-sample.

Usage::

    python processing/build_demo_data.py /work/shared/data/covid-cxr-sample modeling_rrg_mamba/demo_data

Picks 40 films (28 train / 6 validation / 6 test, taken from the source's patient-level splits), spread over
views and diagnosis labels, downscales them to at most 256 px, and writes an R2Gen-layout ``annotation.json``
and ``ATTRIBUTION.md`` that keep every image's own license, url and doi.

The source's notes are clinical case descriptions, not radiology reports, and IU X-Ray report text may not be
redistributed, so the demo's "report" for each film is a templated sentence built from its metadata: the view
("pa view of the chest") and the diagnosis label ("findings consistent with covid-19 pneumonia"). A model can
learn the view from the pixels; the label part is mostly the majority class. The demo says so when it runs.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from itertools import zip_longest
from pathlib import Path
from typing import Any

from PIL import Image

SPLIT_SIZES = {"train": 28, "val": 6, "test": 6}
MAX_SIDE = 256
VIEW_PHRASES = {
    "PA": "pa view of the chest",
    "AP": "ap view of the chest",
    "AP Supine": "supine ap view of the chest",
    "L": "lateral view of the chest",
}
FINDING_PHRASES = {
    "No Finding": "no acute cardiopulmonary abnormality",
    "COVID-19": "findings consistent with covid-19 pneumonia",
    "COVID-19, ARDS": "findings consistent with covid-19 pneumonia and acute respiratory distress syndrome",
    "ARDS": "findings consistent with acute respiratory distress syndrome",
    "Pneumonia": "findings consistent with pneumonia",
    "Mycoplasma Bacterial Pneumonia": "findings consistent with mycoplasma pneumonia",
}


def templated_report(view: str, finding: str) -> str:
    """The demo's training text for one film: its view and its diagnosis label as two short sentences."""
    if view not in VIEW_PHRASES:
        raise ValueError(f"view: no phrase for view {view!r}; known: {sorted(VIEW_PHRASES)}")
    finding_phrase = FINDING_PHRASES.get(
        finding, f"findings consistent with {finding.lower().replace('.', ' ')} pneumonia"
    )
    return f"{VIEW_PHRASES[view]} . {finding_phrase} ."


def spread_pick(entries: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """``count`` entries taken round-robin over the views (so lateral and supine films are represented); the
    diagnosis labels keep their source frequencies (mostly COVID-19)."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in sorted(entries, key=lambda e: e["id"]):
        groups[entry["view"]].append(entry)
    ordered = [e for row in zip_longest(*(groups[k] for k in sorted(groups))) for e in row if e is not None]
    return ordered[:count]


def downscale(source: Path, target: Path) -> None:
    with Image.open(source) as image:
        image = image.convert("L")
        image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
        image.save(target, quality=85, optimize=True)


def attribution_markdown(annotation: dict[str, list[dict[str, Any]]]) -> str:
    lines = [
        "# Attribution of the demo films",
        "",
        "These chest radiographs come from the COVID-19 Image Data Collection (J. P. Cohen, P. Morrison, L. Dao,",
        '"COVID-19 image data collection", arXiv:2003.11597, 2020; github.com/ieee8023/covid-chestxray-dataset).',
        "Each film keeps its own license, listed below with its source url and doi. They were converted to",
        f"grayscale and downscaled to at most {MAX_SIDE} px (JPEG); no other change was made.",
        "The films are not covered by the package's Apache-2.0 license: each stays under its own license",
        "(NC: non-commercial use only; SA: adaptations are shared under the same license).",
        "",
        "The `report` text in annotation.json is NOT a radiology report: it is a sentence generated from the",
        "film's metadata (view and diagnosis label) by processing/build_demo_data.py, so that the demo has text",
        "to train on. The images are for demonstrating the software, not for any clinical or benchmark use.",
        "",
        "| file | split | view | finding | license | source url | doi |",
        "|---|---|---|---|---|---|---|",
    ]
    for split, entries in annotation.items():
        for e in entries:
            lines.append(
                f"| {e['image_path'][0]} | {split} | {e['view']} | {e['finding']} | {e['license']} | "
                f"{e['url'] or '-'} | {e['doi'] or '-'} |"
            )
    return "\n".join(lines) + "\n"


def build(source_dir: Path, output_dir: Path) -> dict[str, list[dict[str, Any]]]:
    source = json.loads((source_dir / "annotation.json").read_text(encoding="utf-8"))
    (output_dir / "images").mkdir(parents=True, exist_ok=True)
    annotation: dict[str, list[dict[str, Any]]] = {}
    for split, count in SPLIT_SIZES.items():
        picked = spread_pick(source[split], count)
        if len(picked) < count:
            raise ValueError(f"{source_dir}: split {split!r} has only {len(picked)} films, need {count}")
        annotation[split] = []
        for entry in picked:
            name = Path(entry["image_path"][0]).stem + ".jpg"
            downscale(source_dir / "images" / entry["image_path"][0], output_dir / "images" / name)
            annotation[split].append(
                {
                    "id": entry["id"],
                    "image_path": [name],
                    "split": split,
                    "report": templated_report(entry["view"], entry["finding"]),
                    "view": entry["view"],
                    "finding": entry["finding"],
                    "license": entry["license"],
                    "url": entry["url"],
                    "doi": entry["doi"],
                }
            )
    (output_dir / "annotation.json").write_text(json.dumps(annotation, indent=1) + "\n", encoding="utf-8")
    (output_dir / "ATTRIBUTION.md").write_text(attribution_markdown(annotation), encoding="utf-8")
    return annotation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source_dir", type=Path, help="covid-cxr-sample folder (annotation.json + images/)")
    parser.add_argument("output_dir", type=Path, help="where to write the bundle (modeling_rrg_mamba/demo_data)")
    args = parser.parse_args()
    annotation = build(args.source_dir, args.output_dir)
    print({split: len(entries) for split, entries in annotation.items()})


if __name__ == "__main__":
    main()
