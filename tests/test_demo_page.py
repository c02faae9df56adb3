"""``rrg-mamba demo``'s comparison with image-blind baselines and its report page: the slot / baseline helpers, and
a tiny real run (one training step, no METEOR) whose index.html holds every test film, its reports, heatmap images
that exist, and the metrics table; the console shows the table, not Trainer log dicts."""

from __future__ import annotations

import contextlib
import io
import json
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest

from modeling_rrg_mamba.commands.arguments import DemoArguments
from modeling_rrg_mamba.commands.demo import (
    DEMO_DATA,
    SLOTS,
    comparison_rows,
    majority_rates,
    most_frequent_report,
    random_train_reports,
    report_slots,
    run_demo,
    slot_accuracy,
    templated_report,
)

TRAIN = [
    "ap view of the chest . findings consistent with covid-19 pneumonia .",
    "ap view of the chest . findings consistent with covid-19 pneumonia .",
    "lateral view of the chest . findings consistent with pneumonia .",
]
TEST = [
    "lateral view of the chest . findings consistent with pneumonia .",
    "pa view of the chest . findings consistent with pneumonia .",
]


class PageParser(HTMLParser):
    """Sections (id -> {images, generated, reference}), image sources, metrics-table rows."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: dict[str, dict] = {}
        self.current: str | None = None
        self.field: str | None = None
        self.table_rows: list[list[str]] = []
        self.in_cell = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section" and "film" in attrs.get("class", ""):
            self.current = attrs["id"]
            self.sections[self.current] = {"images": [], "generated": "", "reference": ""}
        elif tag == "img" and self.current:
            self.sections[self.current]["images"].append((attrs.get("class"), attrs["src"]))
        elif tag == "dd" and attrs.get("class") in ("generated", "reference"):
            self.field = attrs["class"]
        elif tag == "tr":
            self.table_rows.append([])
        elif tag in ("td", "th"):
            self.in_cell = True
            self.table_rows[-1].append("")

    def handle_endtag(self, tag):
        if tag == "dd":
            self.field = None
        elif tag in ("td", "th"):
            self.in_cell = False

    def handle_data(self, data):
        if self.field and self.current:
            self.sections[self.current][self.field] += data
        if self.in_cell:
            self.table_rows[-1][-1] += data


def test_template_and_slots():
    assert templated_report("L", "Pneumocystis") == "lateral view of the chest . findings consistent with pneumonia ."
    assert templated_report("AP Supine", "COVID-19, ARDS").endswith("covid-19 pneumonia .")
    assert report_slots("Lateral view of the chest. No acute cardiopulmonary abnormality.") == {
        "view": "lateral view of the chest",
        "diagnosis": "no acute cardiopulmonary abnormality",
    }
    assert report_slots("pa view") == {"view": "pa view", "diagnosis": ""}
    with pytest.raises(ValueError, match="no phrase for view"):
        templated_report("Oblique", "COVID-19")


def test_baselines_and_rates():
    assert most_frequent_report(TRAIN) == TRAIN[0]
    assert set(random_train_reports(TRAIN, 5, seed=0)) <= set(TRAIN)
    assert random_train_reports(TRAIN, 5, seed=0) == random_train_reports(TRAIN, 5, seed=0)
    assert slot_accuracy([TRAIN[0]] * 2, TEST) == {"view": 0.0, "diagnosis": 0.0}
    assert slot_accuracy(TEST, TEST) == {"view": 1.0, "diagnosis": 1.0}
    assert majority_rates(TRAIN, TEST) == {"view": 0.0, "diagnosis": 0.0}  # majority: ap / covid-19
    scores = {
        "model": {"BLEU_4": 0.9, "view_correct": 1.0, "diagnosis_correct": 0.5},
        "blind": {"BLEU_4": 0.8, "view_correct": 0.25, "diagnosis_correct": 0.5},
    }
    header, rows, best = comparison_rows(scores, {"view": 0.25, "diagnosis": 0.5})
    assert header == ["metric", "model", "blind", "majority rate"]
    assert rows == [
        ["BLEU-4", "0.900", "0.800", ""],
        ["view correct", "100%", "25%", "25%"],
        ["diagnosis correct", "50%", "50%", "50%"],
    ]
    assert best == [{1}, {1}, {1, 2}]


def test_bundled_split_is_balanced_over_views_and_keeps_cases_together():
    annotation = json.loads((DEMO_DATA / "annotation.json").read_text())
    test_views = sorted(entry["view"] for entry in annotation["test"])
    assert test_views == sorted(["AP", "AP Supine", "L", "PA"] * 2)
    cases = {split: {e["url"] for e in entries if "eurorad" in e["url"]} for split, entries in annotation.items()}
    assert not cases["train"] & cases["test"] and not cases["val"] & cases["test"]
    for entries in annotation.values():
        for entry in entries:
            assert entry["report"] == templated_report(entry["view"], entry["finding"])
            assert (DEMO_DATA / "images" / entry["image_path"][0]).is_file()


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory):
    output = tmp_path_factory.mktemp("demo") / "rrg-mamba-demo"
    args = DemoArguments(output_dir=str(output), max_steps=1, max_minutes=5, meteor=False)
    console = io.StringIO()
    with contextlib.redirect_stdout(console):
        summary = run_demo(args)
    return output, summary, console.getvalue()


def test_tiny_run_writes_a_page_with_every_test_film(tiny_demo):
    output, summary, _ = tiny_demo
    page = output / "index.html"
    assert Path(summary["page"]) == page
    parser = PageParser()
    parser.feed(page.read_text(encoding="utf-8"))
    annotation = json.loads((DEMO_DATA / "annotation.json").read_text())
    expected = {entry["id"]: entry["report"] for entry in annotation["test"]}
    assert set(parser.sections) == set(expected)
    records = {json.loads(line)["id"]: json.loads(line) for line in (output / "test_reports.jsonl").open()}
    for study, section in parser.sections.items():
        assert section["reference"] == expected[study]
        assert section["generated"] == records[study]["prediction"]
        kinds = [kind for kind, _ in section["images"]]
        assert kinds == ["film", "heatmap"]
        for _, src in section["images"]:
            assert not src.startswith(("/", "file:", "http")), src  # relative: works offline, after moving
            image = output / unquote(src)
            assert image.is_file() and image.resolve().is_relative_to(output.resolve())
    header, *rows = parser.table_rows
    assert header[0] == "metric" and header[-1] == "majority rate" and len(header) == 5
    assert [row[0] for row in rows] == ["BLEU-1", "BLEU-4", "ROUGE-L", "CIDEr", *(f"{s} correct" for s in SLOTS)]
    assert rows[-2][-1] == "25%"  # two test films per view: the majority view is right on a quarter of them


def test_tiny_run_console_is_the_table_and_logs_go_to_the_file(tiny_demo):
    output, summary, console = tiny_demo
    log = (output / "demo.log").read_text(encoding="utf-8")
    assert "'train_runtime'" in log  # the Trainer's log dicts went to the file
    assert "train_runtime" not in console and "eval_" not in console and "ce_5" not in console
    assert "majority rate" in console and "most frequent report" in console and "index.html" in console
    assert len(console.splitlines()) < 30
    metrics = json.loads((output / "test_metrics.json").read_text())
    assert set(metrics["systems"]) == set(summary["test_metrics"]) and len(metrics["systems"]) == 3
    assert metrics["majority_rate"]["view"] == 0.25
