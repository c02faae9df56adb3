#!/usr/bin/env python
"""Agreement of the rule labeler with the manual MeSH tags of the IU X-Ray (Open-i) reports.

Example:
    python processing/label_mesh_agreement.py --reports ecgen-radiology            # the NLMCXR XML folder
    python processing/label_mesh_agreement.py --reports ecgen-radiology --show Pneumothorax --kind fp

Every Open-i report carries MeSH "major" headings assigned by human indexers (``normal``, ``Cardiomegaly/mild``,
``Catheters, Indwelling``, ...). MESH_HEADINGS lists, per CheXpert observation, the headings that assert it, as
prefixes of the "/"-separated tag ("Density/lung" matches "Density/lung/base/left" but not "Density/thorax"); an
observation counts as tagged when any tag of the report matches one of them. The labeler reads FINDINGS + IMPRESSION;
the table gives, per observation, the tagged and labeled-positive counts, the precision and recall of "positive", and
the recall of "positive or uncertain". Reports without text or tagged only "No Indexing" are skipped.

The tags are not CheXpert labels: indexers tag hedged findings ("atelectasis versus scarring") as present, where
CheXpert says uncertain; they tag hypoinflation, tortuous aortas and scoliosis, which CheXpert's No Finding ignores
or counts as other findings. Read the numbers as agreement with a second, independent annotation, not as accuracy.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

from modeling_rrg_mamba.data.sources import parse_open_i_report
from modeling_rrg_mamba.labeler import OBSERVATIONS, POSITIVE, label_reports

#: CheXpert observation -> the MeSH major headings (prefixes of whole "/" parts) that assert it.
MESH_HEADINGS = {
    "No Finding": ("normal",),
    "Cardiomegaly": ("Cardiomegaly",),
    "Lung Opacity": ("Opacity", "Infiltrate", "Airspace Disease", "Density/lung"),
    "Lung Lesion": ("Nodule", "Mass"),
    "Edema": ("Pulmonary Edema", "Edema"),
    "Consolidation": ("Consolidation",),
    "Pneumonia": ("Pneumonia",),
    "Atelectasis": ("Pulmonary Atelectasis", "Atelectasis"),
    "Pneumothorax": ("Pneumothorax",),
    "Pleural Effusion": ("Pleural Effusion",),
    "Fracture": ("Fractures, Bone",),
    "Support Devices": (
        "Catheters, Indwelling",
        "Implanted Medical Device",
        "Tube, Inserted",
        "Medical Device",
        "Stents",
        "Pacemaker, Artificial",
    ),
}


def read_reports(folder: Path) -> tuple[list[str], list[set[str]]]:
    """Texts (FINDINGS + IMPRESSION) and the sets of MeSH tags of the usable reports in ``folder``."""
    texts, tags = [], []
    for path in sorted(folder.glob("*.xml")):
        report = parse_open_i_report(path)
        text = " ".join(part for part in (report["findings"], report["impression"]) if part)
        found = {"/".join(part.strip() for part in tag.split("/")) for tag in report["mesh"]}
        if text and found and found != {"No Indexing"}:
            texts.append(text)
            tags.append(found)
    return texts, tags


def is_tagged(tags: set[str], headings: tuple[str, ...]) -> bool:
    """Whether a tag equals one of ``headings`` or extends one by further "/" parts."""
    return any(tag == heading or tag.startswith(heading + "/") for tag in tags for heading in headings)


def agreement_table(labels: np.ndarray, headings: list[set[str]]) -> list[tuple[str, int, int, float, float, float]]:
    """(observation, tagged, labeled positive, precision, recall, recall of positive-or-uncertain) rows."""
    rows = []
    for observation, heads in MESH_HEADINGS.items():
        column = labels[:, OBSERVATIONS.index(observation)]
        tagged = np.array([is_tagged(tags, heads) for tags in headings])
        positive = column == POSITIVE
        mentioned = ~np.isnan(column) & (column != 0)
        hits = int((positive & tagged).sum())
        rows.append(
            (
                observation,
                int(tagged.sum()),
                int(positive.sum()),
                hits / max(1, int(positive.sum())),
                hits / max(1, int(tagged.sum())),
                int((mentioned & tagged).sum()) / max(1, int(tagged.sum())),
            )
        )
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reports", required=True, help="folder of Open-i XML reports (ecgen-radiology)")
    parser.add_argument("--show", choices=list(MESH_HEADINGS), help="print disagreements for this observation")
    parser.add_argument("--kind", choices=["fp", "fn"], default="fp", help="labeled but untagged, or the reverse")
    parser.add_argument("--limit", type=int, default=20)
    args = parser.parse_args(argv)
    texts, headings = read_reports(Path(args.reports))
    if not texts:
        raise SystemExit(f"{args.reports}: no Open-i XML report with text and MeSH tags")
    labels = label_reports(texts)
    print(f"{len(texts)} reports")
    print(f"{'observation':<18} {'tagged':>6} {'labeled':>7} {'prec':>5} {'recall':>6} {'rec+unc':>7}")
    for name, tagged, labeled, precision, recall, lenient in agreement_table(labels, headings):
        print(f"{name:<18} {tagged:>6} {labeled:>7} {precision:>5.2f} {recall:>6.2f} {lenient:>7.2f}")
    if args.show:
        column, heads = labels[:, OBSERVATIONS.index(args.show)], MESH_HEADINGS[args.show]
        shown = 0
        for text, value, tags in zip(texts, column, headings):
            tagged = is_tagged(tags, heads)
            if (args.kind == "fp" and value == POSITIVE and not tagged) or (
                args.kind == "fn" and tagged and value != POSITIVE
            ):
                print(f"--- label {value}: {text}")
                shown += 1
                if shown >= args.limit:
                    break
    return 0


if __name__ == "__main__":
    sys.exit(main())
