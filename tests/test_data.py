"""Dataset loaders, raw-release builders, pseudo-labels, collators and the bad-data policy."""

import csv
import importlib.util
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from modeling_rrg_mamba.data import (
    OBSERVATION_LABELS_COLUMN,
    BadEntry,
    EMRRGDataCollator,
    ReportGenerationCollator,
    RRGMambaDataCollator,
    add_observation_labels,
    build_dataset_dict,
    extract_section,
    load_chexpert_plus,
    load_r2gen_annotation,
    mimic_cxr_annotation,
)
from modeling_rrg_mamba.labeler import binarize_labels, label_reports

SHARED = Path("/work/shared/data")
for _candidate in (Path(__file__).resolve().parents[2] / "shared" / "data", SHARED):
    if _candidate.is_dir():
        SHARED = _candidate
        break
IU = SHARED / "iu-xray-reports" / "annotation.json"
COVID = SHARED / "covid-cxr-sample"
REPO = Path(__file__).resolve().parents[1]


class FakeProcessor:
    """Stands in for a ProcessorMixin: images -> (B, V, 1, 8, 8) tensor, text / reports -> padded character ids."""

    def __init__(self):
        self.calls = []

    def __call__(self, images=None, text=None, reports=None):
        self.calls.append({"images": images, "text": text, "reports": reports})
        pixels = torch.stack(
            [
                torch.stack(
                    [torch.from_numpy(np.asarray(im.convert("L").resize((8, 8)), dtype=np.float32)) for im in study]
                )
                for study in images
            ]
        ).unsqueeze(2)
        batch = {"pixel_values": pixels}
        for key, texts in (("input_ids", text), ("labels", reports)):
            if texts is not None:
                width = max(len(t) for t in texts)
                batch[key] = torch.tensor([[ord(c) for c in t] + [0] * (width - len(t)) for t in texts])
        return batch


def _png(path: Path, size=(20, 16), value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", size, value).save(path)


@pytest.fixture
def tiny_release(tmp_path):
    """An R2Gen-layout annotation with two-view studies and real PNG files."""
    images = tmp_path / "images"
    annotation = {"train": [], "val": []}
    for split, count in (("train", 3), ("val", 1)):
        for i in range(count):
            study = f"{split}{i}"
            for view in (0, 1):
                _png(images / study / f"{view}.png", value=40 * i + view)
            annotation[split].append(
                {
                    "id": study,
                    "report": f"Heart size is normal. Study {study} has cardiomegaly."
                    if i == 1
                    else "No pneumothorax or pleural effusion.",
                    "image_path": [f"{study}/0.png", f"{study}/1.png"],
                    "split": split,
                    "view": "PA,LATERAL",
                }
            )
    path = tmp_path / "annotation.json"
    path.write_text(json.dumps(annotation))
    return path, images, annotation


@pytest.mark.skipif(not IU.is_file(), reason="shared IU X-Ray reports not available")
def test_iu_reports_load_as_text_only_dataset_and_say_images_are_missing():
    with pytest.warns(UserWarning, match="images are missing"):
        ds = load_r2gen_annotation(IU)
    assert set(ds) == {"train", "validation"}
    assert ds["train"].num_rows == 2069 and ds["validation"].num_rows == 296
    assert "images" not in ds["train"].column_names
    row = ds["train"][0]
    assert row["image_path"] == [f"{row['id']}/0.png", f"{row['id']}/1.png"] and row["report"].strip()
    with pytest.raises(FileNotFoundError, match="images are missing"):
        load_r2gen_annotation(IU, image_root=COVID / "images" if COVID.is_dir() else IU.parent)


@pytest.mark.skipif(not COVID.is_dir(), reason="shared covid-cxr-sample not available")
def test_real_chest_films_load_and_collate_lazily():
    annotation = json.loads((COVID / "annotation.json").read_text())
    subset = {"train": annotation["train"][:6], "test": annotation["test"][:2]}
    ds = build_dataset_dict(subset, image_root=COVID / "images", report_field=None, source="covid-cxr-sample")
    assert ds["train"].column_names[:2] == ["id", "images"] and "view" in ds["train"].column_names
    assert isinstance(ds["train"][0]["images"][0], str)  # paths: nothing decoded yet
    processor = FakeProcessor()
    batch = EMRRGDataCollator(processor, report_column=None, prompt="Describe the film.")(list(ds["train"])[:4])
    assert batch["pixel_values"].shape == (4, 1, 1, 8, 8)
    assert processor.calls[0]["text"] == ["Describe the film."] * 4 and processor.calls[0]["reports"] is None
    assert all(im.mode == "RGB" for study in processor.calls[0]["images"] for im in study)
    decoded = build_dataset_dict(subset, image_root=COVID / "images", report_field=None, cast_images=True)
    assert isinstance(decoded["test"][0]["images"][0], Image.Image)
    with pytest.warns(UserWarning, match="field 'notes'"):
        with_notes = build_dataset_dict(annotation, image_root=COVID / "images", report_field="notes", on_error="skip")
    kept = sum(d.num_rows for d in with_notes.values())
    assert 0 < kept < sum(len(v) for v in annotation.values())
    assert all(r.strip() for d in with_notes.values() for r in d["report"])


def test_rrg_mamba_collator_batches_views_reports_and_pseudo_labels(tiny_release):
    path, images, annotation = tiny_release
    ds = add_observation_labels(load_r2gen_annotation(path, image_root=images))
    train = ds["train"]
    expected = binarize_labels(label_reports(train["report"]), uncertain="positive")
    np.testing.assert_array_equal(np.array(train[OBSERVATION_LABELS_COLUMN]), expected)
    processor = FakeProcessor()
    batch = RRGMambaDataCollator(processor)(list(train))
    assert batch["pixel_values"].shape == (3, 2, 1, 8, 8)
    # Views stay in annotation order: view 1 of each study was written one grey level brighter.
    assert torch.all(batch["pixel_values"][:, 1] - batch["pixel_values"][:, 0] == 1)
    assert (
        batch[OBSERVATION_LABELS_COLUMN].shape == (3, 14) and batch[OBSERVATION_LABELS_COLUMN].dtype == torch.float32
    )
    assert processor.calls[0]["reports"] == train["report"] and processor.calls[0]["text"] is None
    with pytest.raises(ValueError, match="add_observation_labels"):
        RRGMambaDataCollator(processor)([{k: v for k, v in train[0].items() if k != OBSERVATION_LABELS_COLUMN}])


def test_collator_errors_name_the_example(tiny_release, tmp_path):
    path, images, _ = tiny_release
    train = list(load_r2gen_annotation(path, image_root=images)["train"])
    (images / "train0" / "1.png").write_bytes(b"not a png")
    collator = RRGMambaDataCollator(FakeProcessor(), label_column=None)
    with pytest.raises(ValueError, match=r"id='train0', field images\[1\].*unreadable"):
        collator(train[:1])
    with pytest.raises(ValueError, match="text-only"):
        collator([{"id": "x", "report": "r"}])
    with pytest.raises(ValueError, match="'report' is missing or empty"):
        collator([dict(train[1], report=" ")])


def test_collator_works_with_trainer(tiny_release, tmp_path):
    from transformers import Trainer, TrainingArguments

    path, images, _ = tiny_release
    train = load_r2gen_annotation(path, image_root=images)["train"]

    class TinyModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(64, 1)

        def forward(self, pixel_values, labels):
            return {"loss": self.linear(pixel_values.flatten(2).mean(1) / 255).pow(2).mean() + 0 * labels.sum()}

    args = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=2,
        max_steps=2,
        use_cpu=True,
        report_to=[],
        remove_unused_columns=False,
        save_strategy="no",
        logging_strategy="no",
        dataloader_num_workers=0,
    )
    trainer = Trainer(
        model=TinyModel(),
        args=args,
        train_dataset=train,
        data_collator=RRGMambaDataCollator(FakeProcessor(), label_column=None),
    )
    assert trainer.train().global_step == 2


def _write(tmp_path, annotation):
    path = tmp_path / "bad.json"
    path.write_text(annotation if isinstance(annotation, str) else json.dumps(annotation))
    return path


def _entry(**overrides):
    entry = {"id": "s1", "report": "No effusion.", "image_path": ["train0/0.png"], "split": "train"}
    entry.update(overrides)
    return {k: v for k, v in entry.items() if v is not ...}


@pytest.mark.parametrize(
    "annotation, error, message",
    [
        (
            {"train": [_entry(), _entry(id="s2", image_path=["train0/0.png", "train0/missing.png"])]},
            FileNotFoundError,
            r"id='s2'.*image_path\[1\].*does not exist",
        ),
        (
            {"train": [_entry(image_path=["train0/missing.png"])]},
            FileNotFoundError,
            r"no entry has its image files.*missing",
        ),
        (
            {"train": [_entry(image_path=["../../etc/passwd"])]},
            BadEntry,
            r"id='s1'.*image_path\[0\].*escapes the image root",
        ),
        ({"train": [_entry(image_path=["/etc/passwd"])]}, BadEntry, r"id='s1'.*image_path\[0\].*absolute"),
        ({"train": [_entry(report="   ")]}, BadEntry, r"id='s1'.*'report' \(the report\) is empty"),
        ({"train": [_entry(report=...)]}, BadEntry, r"id='s1'.*'report' \(the report\) is missing"),
        ({"train": [_entry(report=3)]}, BadEntry, r"'report' must be a string"),
        ({"train": [_entry(id=...)]}, BadEntry, r"train\[0\].*field 'id'"),
        ({"train": [_entry(image_path="")]}, BadEntry, r"field 'image_path'"),
        ({"train": ["just a string"]}, BadEntry, r"train\[0\].*entry is a str"),
        ({"train": {"id": "s1"}}, BadEntry, r"split 'train' must be a list"),
        ({"training": []}, BadEntry, r"unknown split key"),
        ('{"train": [', BadEntry, r"not valid JSON"),
    ],
)
def test_bad_data_raises_naming_entry_and_field(tiny_release, tmp_path, annotation, error, message):
    _, images, _ = tiny_release
    with pytest.raises(error, match=message):
        load_r2gen_annotation(_write(tmp_path, annotation), image_root=images)


def test_unreadable_image_is_caught_when_verifying(tiny_release, tmp_path):
    _, images, _ = tiny_release
    (images / "broken.png").write_bytes(b"\x89PNG broken")
    annotation = {"train": [_entry(), _entry(id="s2", image_path=["broken.png"])]}
    with pytest.raises(BadEntry, match=r"id='s2'.*unreadable"):
        load_r2gen_annotation(_write(tmp_path, annotation), image_root=images, verify_images=True)


def test_skip_policy_warns_per_entry_and_keeps_the_good_ones(tiny_release, tmp_path):
    _, images, _ = tiny_release
    annotation = {
        "train": [
            _entry(),
            _entry(id="s2", image_path=["nope.png"]),
            _entry(id="s3", report=""),
            _entry(id="s4", image_path=["../outside.png"]),
        ],
        "test": [_entry(id="s5")],
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load_r2gen_annotation(
            _write(tmp_path, annotation), image_root=images, on_error="skip", allow_split_overlap=True
        )  # s1 and s5 share a film
    messages = [str(w.message) for w in caught]
    assert ds["train"]["id"] == ["s1"] and ds["test"]["id"] == ["s5"]
    for entry_id in ("s2", "s3", "s4"):
        assert any(f"id='{entry_id}'" in m for m in messages), (entry_id, messages)
    with pytest.raises(ValueError, match="on_error"):
        load_r2gen_annotation(_write(tmp_path, annotation), image_root=images, on_error="ignore")


def _load_script(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "processing" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


OPEN_I_XML = """<?xml version="1.0" encoding="utf-8"?>
<eCitation><uId id="CXR{n}"/><MedlineCitation><Article><Abstract>
<AbstractText Label="COMPARISON">None.</AbstractText>
<AbstractText Label="FINDINGS">{findings}</AbstractText>
<AbstractText Label="IMPRESSION">Normal chest.</AbstractText>
</Abstract></Article></MedlineCitation>
{images}</eCitation>"""


def test_build_iu_xray_from_synthetic_open_i_release(tmp_path):
    reports, png = tmp_path / "ecgen-radiology", tmp_path / "NLMCXR_png"
    reports.mkdir()
    projections = [["image", "projection"]]
    for n in range(1, 11):
        ids = [f"CXR{n}_IM-{n:04d}-{k}001" for k in (2, 1)]  # lateral listed first in the XML
        findings = "" if n == 10 else f"The heart is normal. Study {n}."
        images = "".join(f'<parentImage id="{i}"><figureId>F{j}</figureId></parentImage>' for j, i in enumerate(ids))
        (reports / f"{n}.xml").write_text(OPEN_I_XML.format(n=n, findings=findings, images=images))
        for image_id, projection in zip(ids, ("Lateral", "Frontal")):
            _png(png / f"{image_id}.png")
            projections.append([image_id, projection])
    (reports / "11.xml").write_text(
        OPEN_I_XML.format(n=11, findings="One view only.", images='<parentImage id="CXR11_IM-0011-1001"/>')
    )
    with open(tmp_path / "projections.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(projections)
    output = tmp_path / "annotation.json"
    build = _load_script("build_iu_xray")
    assert (
        build.main(
            [
                "--reports",
                str(reports),
                "--images",
                str(png),
                "--output",
                str(output),
                "--projections",
                str(tmp_path / "projections.csv"),
                "--seed",
                "0",
            ]
        )
        == 0
    )
    annotation = json.loads(output.read_text())
    entries = [e for split in annotation.values() for e in split]
    assert len(entries) == 9  # empty findings (CXR10) and the single-view study (CXR11) are dropped
    assert sum(len(v) for k, v in annotation.items() if k == "train") == 6
    first = next(e for e in entries if e["uid"] == "CXR1")
    assert first["id"] == "CXR1_IM-0001" and first["image_path"] == ["CXR1_IM-0001-1001.png", "CXR1_IM-0001-2001.png"]
    assert first["view"] == "frontal,lateral" and first["report"] == "The heart is normal. Study 1."
    ds = load_r2gen_annotation(output, image_root=png)
    assert sum(d.num_rows for d in ds.values()) == 9 and Path(ds["train"][0]["images"][0]).is_file()
    reference = tmp_path / "reference.json"
    reference.write_text(json.dumps({"test": [{"id": "CXR1_IM-0001"}], "train": [{"id": "CXR2_IM-0002"}]}))
    assert (
        build.main(["--reports", str(reports), "--output", str(output), "--reference-annotation", str(reference)]) == 0
    )
    assert {k: [e["id"] for e in v] for k, v in json.loads(output.read_text()).items()} == {
        "train": ["CXR2_IM-0002"],
        "test": ["CXR1_IM-0001"],
    }


MIMIC_REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___F with cough

 FINDINGS:

 The heart is mildly enlarged.  There is a small left
 pleural effusion.

 IMPRESSION:

 Cardiomegaly and small effusion.
"""


def test_mimic_findings_extraction_and_builder(tmp_path):
    assert extract_section(MIMIC_REPORT) == "The heart is mildly enlarged. There is a small left pleural effusion."
    assert extract_section(MIMIC_REPORT, "IMPRESSION") == "Cardiomegaly and small effusion."
    assert extract_section("IMPRESSION: normal.") == ""
    reports = tmp_path / "files"
    (reports / "p10" / "p10000032").mkdir(parents=True)
    (reports / "p10" / "p10000032" / "s50414267.txt").write_text(MIMIC_REPORT)
    (reports / "p10" / "p10000032" / "s50000001.txt").write_text("IMPRESSION: No acute process.")
    with open(tmp_path / "split.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(
            [
                ["dicom_id", "study_id", "subject_id", "split"],
                ["d1", "50414267", "10000032", "train"],
                ["d2", "50414267", "10000032", "train"],
                ["d3", "50000001", "10000032", "validate"],
            ]
        )
    with open(tmp_path / "meta.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([["dicom_id", "ViewPosition"], ["d1", "PA"], ["d2", "LATERAL"]])
    annotation = mimic_cxr_annotation(tmp_path / "split.csv", reports, metadata_csv=tmp_path / "meta.csv")
    assert list(annotation) == ["train"] and [e["view"] for e in annotation["train"]] == ["PA", "LATERAL"]
    assert annotation["train"][0]["image_path"] == ["p10/p10000032/s50414267/d1.jpg"]
    assert (
        _load_script("build_mimic_cxr").main(
            [
                "--split-csv",
                str(tmp_path / "split.csv"),
                "--reports",
                str(reports),
                "--output",
                str(tmp_path / "out.json"),
            ]
        )
        == 0
    )
    with open(tmp_path / "bad.csv", "w") as handle:
        handle.write("dicom_id,study_id\nd1,1\n")
    with pytest.raises(ValueError, match="missing column"):
        mimic_cxr_annotation(tmp_path / "bad.csv", reports)


def test_chexpert_plus_csv_loads_with_views_and_flags_empty_findings(tmp_path):
    rows = [
        ["path_to_image", "frontal_lateral", "ap_pa", "section_findings", "section_impression", "split"],
        ["train/patient1/study1/view1_frontal.jpg", "Frontal", "AP", "Small left effusion.", "Effusion.", "train"],
        ["train/patient1/study1/view2_lateral.jpg", "Lateral", "", "Small left effusion.", "Effusion.", "train"],
        ["valid/patient2/study1/view1_frontal.jpg", "Frontal", "PA", "", "Normal.", "valid"],
    ]
    with open(tmp_path / "chexpert_plus.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    for row in rows[1:]:
        _png(tmp_path / "png" / row[0])
    with pytest.raises(BadEntry, match=r"validation|valid.*'report' \(the report\) is empty"):
        load_chexpert_plus(tmp_path / "chexpert_plus.csv", image_root=tmp_path / "png")
    ds = load_chexpert_plus(
        tmp_path / "chexpert_plus.csv",
        image_root=tmp_path / "png",
        frontal_only=True,
        sections=("section_findings", "section_impression"),
    )
    assert ds["train"]["view"] == ["Frontal AP"] and ds["validation"]["report"] == ["Normal."]
    assert ds["train"]["report"] == ["Small left effusion. Effusion."]


@pytest.mark.parametrize("script", ["build_iu_xray", "build_mimic_cxr", "build_chexpert_plus", "label_reports"])
def test_processing_scripts_have_help(script, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _load_script(script).main(["--help"])
    assert exit_info.value.code == 0 and "usage" in capsys.readouterr().out


def test_emrrg_collator_sends_reports_as_targets_and_the_prompt_as_text():
    processor = FakeProcessor()
    examples = [{"id": i, "images": [Image.new("L", (8, 8), 10 * i)], "report": f"report {i}"} for i in range(3)]
    EMRRGDataCollator(processor, prompt="Describe.")(examples)
    EMRRGDataCollator(processor)(examples)
    assert processor.calls[0]["reports"] == ["report 0", "report 1", "report 2"]
    assert processor.calls[0]["text"] == ["Describe."] * 3
    assert processor.calls[1]["text"] is None  # the processor's default prompt


def test_collator_and_verifier_read_dicom_and_16_bit_png_with_the_shared_decoder(tmp_path):
    """Files go through load_xray_image: DICOM opens, and a 16-bit PNG is stretched to 8 bit, not clipped."""
    from conftest import write_dicom as _write_dicom

    dicom = _write_dicom(tmp_path / "film.dcm", np.tile(np.linspace(0, 4000, 16), (16, 1)))
    png16 = tmp_path / "film16.png"
    Image.fromarray(np.tile(np.linspace(0, 60000, 16), (16, 1)).astype(np.uint16)).save(png16)
    processor = FakeProcessor()
    ReportGenerationCollator(processor, report_column=None)([{"id": 0, "images": [str(dicom), str(png16)]}])
    dicom_image, png_image = processor.calls[0]["images"][0]
    for image in (dicom_image, png_image):
        pixels = np.asarray(image.convert("L"))
        assert pixels.min() == 0 and pixels.max() == 255  # full 8-bit range: min-max stretched, not clipped
    annotation = {"train": [{"id": "s", "report": "clear .", "image_path": ["film.dcm", "film16.png"]}]}
    loaded = build_dataset_dict(annotation, image_root=tmp_path, verify_images=True)
    assert loaded["train"].num_rows == 1
