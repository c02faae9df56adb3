"""Golden tests of the rule-based CheXpert-style labeler (sentences written for this project)."""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from modeling_rrg_mamba.labeler import (
    OBSERVATIONS,
    binarize_labels,
    extract_mentions,
    label_report,
    label_reports,
)

P, N, U, B = 1.0, 0.0, -1.0, "blank"

# (sentence, observation, expected label). Every observation appears positive, negated and uncertain.
GOLDEN = [
    # Enlarged Cardiomediastinum
    ("The mediastinum is widened.", "Enlarged Cardiomediastinum", P),
    ("There is mediastinal widening.", "Enlarged Cardiomediastinum", P),
    ("Enlarged cardiomediastinal silhouette.", "Enlarged Cardiomediastinum", P),
    ("The cardiomediastinal silhouette is within normal limits.", "Enlarged Cardiomediastinum", N),
    ("No mediastinal widening.", "Enlarged Cardiomediastinum", N),
    ("Mediastinal contours are normal.", "Enlarged Cardiomediastinum", N),
    ("Possible mediastinal widening.", "Enlarged Cardiomediastinum", U),
    ("The mediastinum may be widened.", "Enlarged Cardiomediastinum", U),
    ("Mediastinal widening cannot be excluded.", "Enlarged Cardiomediastinum", U),
    # Cardiomegaly
    ("Cardiomegaly.", "Cardiomegaly", P),
    ("The heart is mildly enlarged.", "Cardiomegaly", P),
    ("Moderate cardiomegaly is again seen.", "Cardiomegaly", P),
    ("Enlarged cardiac silhouette.", "Cardiomegaly", P),
    ("Heart size is normal.", "Cardiomegaly", N),
    ("No cardiomegaly.", "Cardiomegaly", N),
    ("The heart is not enlarged.", "Cardiomegaly", N),
    ("Normal heart size.", "Cardiomegaly", N),
    ("Heart size and mediastinal contours are within normal limits.", "Cardiomegaly", N),
    ("Borderline cardiomegaly.", "Cardiomegaly", U),
    (
        "Heart size is upper limits of normal.",
        "Cardiomegaly",
        N,
    ),  # CheXpert: "at/within upper limits of normal" negates
    ("Heart size is stable.", "Cardiomegaly", U),  # CheXpert: a stable heart / silhouette is uncertain
    ("The heart may be enlarged.", "Cardiomegaly", U),
    ("Possible cardiomegaly.", "Cardiomegaly", U),
    # Lung Opacity
    ("Patchy opacity in the right lower lobe.", "Lung Opacity", P),
    ("Bilateral interstitial opacities.", "Lung Opacity", P),
    ("There is a hazy density at the left base.", "Lung Opacity", P),
    ("No focal airspace disease.", "Lung Opacity", N),
    ("The lungs are free of focal airspace disease.", "Lung Opacity", N),
    ("There are no focal opacities.", "Lung Opacity", N),
    ("Possible opacity in the lingula.", "Lung Opacity", U),
    ("Questionable retrocardiac opacity.", "Lung Opacity", U),
    ("An infiltrate cannot be excluded.", "Lung Opacity", U),
    # Lung Lesion
    ("A 1 cm nodule in the right upper lobe.", "Lung Lesion", P),
    ("There is a large left hilar mass.", "Lung Lesion", P),
    ("Multiple pulmonary nodules consistent with metastases.", "Lung Lesion", P),
    ("No suspicious pulmonary nodules or masses.", "Lung Lesion", N),
    ("No pulmonary nodule is identified.", "Lung Lesion", N),
    ("Nodule is not seen on the current study.", "Lung Lesion", N),
    ("Possible nodule in the left lower lobe.", "Lung Lesion", U),
    ("A mass cannot be excluded.", "Lung Lesion", U),
    ("Questionable nodule in the right midlung.", "Lung Lesion", U),
    # Edema
    ("Mild pulmonary edema.", "Edema", P),
    ("There is interstitial edema.", "Edema", P),
    ("Pulmonary vascular congestion.", "Edema", U),  # CheXpert: congestion alone is uncertain edema
    ("Findings consistent with interstitial pulmonary edema.", "Edema", P),
    ("No pulmonary edema.", "Edema", N),
    ("Pulmonary vascularity is within normal limits.", "Edema", N),
    ("There is no evidence of edema.", "Edema", N),
    ("Possible mild interstitial edema.", "Edema", U),
    ("Findings may reflect mild pulmonary edema.", "Edema", U),
    ("Edema is not excluded.", "Edema", U),
    # Consolidation
    ("Right lower lobe consolidation.", "Consolidation", P),
    ("Dense consolidation in the left lung base.", "Consolidation", P),
    ("No focal consolidation.", "Consolidation", N),
    ("There is no consolidation, effusion or pneumothorax.", "Consolidation", N),
    ("Without consolidation.", "Consolidation", N),
    ("Possible consolidation at the right base.", "Consolidation", U),
    ("Atelectasis or consolidation in the left lower lobe.", "Consolidation", U),
    ("Consolidation cannot be excluded.", "Consolidation", U),
    # Pneumonia
    ("Findings are consistent with pneumonia.", "Pneumonia", P),
    ("Right lower lobe pneumonia.", "Pneumonia", P),
    ("No evidence of pneumonia.", "Pneumonia", N),
    ("No focal consolidation to suggest pneumonia.", "Pneumonia", N),
    ("Pneumonia has resolved.", "Pneumonia", N),
    ("Cannot exclude pneumonia.", "Pneumonia", U),
    ("Opacity may represent pneumonia.", "Pneumonia", U),
    ("Concerning for early pneumonia.", "Pneumonia", U),
    ("Atelectasis versus pneumonia.", "Pneumonia", U),
    ("Pneumonia is not excluded.", "Pneumonia", U),
    # Atelectasis
    ("Bibasilar atelectasis.", "Atelectasis", P),
    ("Plate-like atelectasis at the left base.", "Atelectasis", P),
    ("There is subsegmental atelectasis in the lingula.", "Atelectasis", P),
    ("No atelectasis.", "Atelectasis", N),
    ("Atelectasis has resolved.", "Atelectasis", N),
    ("Likely atelectasis.", "Atelectasis", U),
    ("Atelectasis versus pneumonia.", "Atelectasis", U),
    ("Opacity may represent atelectasis.", "Atelectasis", U),
    ("Streaky opacity, likely atelectasis.", "Atelectasis", U),
    # Pneumothorax
    ("Small left apical pneumothorax.", "Pneumothorax", P),
    ("There is a large right pneumothorax.", "Pneumothorax", P),
    ("No pneumothorax.", "Pneumothorax", N),
    ("No pneumothorax or pleural effusion is seen.", "Pneumothorax", N),
    ("Pneumothorax is not seen.", "Pneumothorax", N),
    ("There is no pleural effusion or pneumothorax.", "Pneumothorax", N),
    ("Possible small apical pneumothorax.", "Pneumothorax", U),
    ("A tiny pneumothorax cannot be excluded.", "Pneumothorax", U),
    ("Questionable small right pneumothorax.", "Pneumothorax", U),
    # Pleural Effusion
    ("Small bilateral pleural effusions.", "Pleural Effusion", P),
    ("Moderate left effusion.", "Pleural Effusion", P),
    ("Blunting of the costophrenic angle.", "Pleural Effusion", U),  # CheXpert: blunting is uncertain
    ("Trace right pleural fluid.", "Pleural Effusion", P),
    ("No pleural effusion.", "Pleural Effusion", N),
    ("The costophrenic angles are sharp.", "Pleural Effusion", N),
    ("No pneumothorax or pleural effusion is seen.", "Pleural Effusion", N),
    ("Pleural effusions have resolved.", "Pleural Effusion", N),
    ("Possible small left pleural effusion.", "Pleural Effusion", U),
    ("A small effusion cannot be excluded.", "Pleural Effusion", U),
    ("Trace pleural fluid is suspected.", "Pleural Effusion", U),
    ("There is a small pericardial effusion.", "Pleural Effusion", B),
    # Pleural Other
    ("Left apical pleural thickening.", "Pleural Other", P),
    ("Calcified pleural plaques.", "Pleural Other", P),
    ("No pleural thickening.", "Pleural Other", N),
    ("Pleural thickening is no longer seen.", "Pleural Other", N),
    ("Possible pleural thickening at the right base.", "Pleural Other", U),
    ("Pleural thickening versus small effusion.", "Pleural Other", U),
    # Fracture
    ("Healed right rib fracture.", "Fracture", P),
    ("Acute fracture of the left clavicle.", "Fracture", P),
    ("Compression deformity of a thoracic vertebral body.", "Fracture", P),
    ("No acute fracture.", "Fracture", N),
    ("No displaced rib fractures.", "Fracture", N),
    ("Possible nondisplaced rib fracture.", "Fracture", U),
    ("Cannot exclude a rib fracture.", "Fracture", U),
    ("A subtle fracture cannot be excluded.", "Fracture", U),
    # Support Devices
    ("Left-sided pacemaker with leads in standard position.", "Support Devices", P),
    ("Endotracheal tube terminates 4 cm above the carina.", "Support Devices", P),
    ("Right PICC line tip in the SVC.", "Support Devices", P),
    ("Median sternotomy wires are intact.", "Support Devices", P),
    ("The nasogastric tube has been removed.", "Support Devices", N),
    ("Interval removal of the chest tube.", "Support Devices", N),
    ("No endotracheal tube.", "Support Devices", N),
    ("Possible retained catheter fragment.", "Support Devices", U),
    ("Questionable pacer lead fracture.", "Support Devices", U),
    ("Linear density may represent a catheter.", "Support Devices", U),
    # No Finding: positive when no finding is positive or uncertain; never negative or uncertain itself.
    ("Heart size is normal. Lungs are clear. No pneumothorax or pleural effusion.", "No Finding", P),
    ("No acute cardiopulmonary abnormality.", "No Finding", P),
    ("No focal consolidation, pneumothorax or effusion. Pacemaker in place.", "No Finding", P),
    ("The lungs are clear. There is a small left pleural effusion.", "No Finding", B),
    ("Possible small left pleural effusion.", "No Finding", B),
    ("Healed right rib fracture. Otherwise normal.", "No Finding", B),
]


def _expected_matches(value, expected) -> bool:
    return math.isnan(value) if expected == B else value == expected


@pytest.mark.parametrize("sentence, observation, expected", GOLDEN)
def test_golden_sentence(sentence, observation, expected):
    value = label_report(sentence)[OBSERVATIONS.index(observation)]
    mentions = [(m.observation, m.text, m.status) for m in extract_mentions(sentence)]
    assert _expected_matches(value, expected), f"{sentence!r}: {observation} = {value}, mentions {mentions}"


def test_golden_set_covers_every_observation_in_every_form():
    assert len(GOLDEN) >= 100
    forms = {(observation, expected) for _, observation, expected in GOLDEN}
    for observation in OBSERVATIONS:
        wanted = (P, B) if observation == "No Finding" else (P, N, U)
        for form in wanted:
            assert (observation, form) in forms, (observation, form)


def test_multi_mention_aggregation_positive_beats_uncertain_beats_negative():
    report = (
        "No pleural effusion on the right. Possible small left pleural effusion. "
        "No pneumothorax. Left apical pneumothorax. Heart size is normal."
    )
    labels = label_report(report)
    assert labels[OBSERVATIONS.index("Pleural Effusion")] == U
    assert labels[OBSERVATIONS.index("Pneumothorax")] == P
    assert labels[OBSERVATIONS.index("Cardiomegaly")] == N
    assert math.isnan(labels[OBSERVATIONS.index("No Finding")])
    statuses = [m.status for m in extract_mentions(report) if m.observation == "Pleural Effusion"]
    assert statuses == ["negative", "uncertain"]


def test_one_phrase_can_mention_two_observations():
    labels = label_report("Small right hydropneumothorax.")
    assert labels[OBSERVATIONS.index("Pneumothorax")] == P
    assert labels[OBSERVATIONS.index("Pleural Effusion")] == P


def test_negation_scope_stops_at_terminator():
    labels = label_report("No pneumothorax but there is a small left effusion.")
    assert labels[OBSERVATIONS.index("Pneumothorax")] == N
    assert labels[OBSERVATIONS.index("Pleural Effusion")] == P


def test_r2gen_cleaned_text_is_labeled_like_raw_text():
    from modeling_rrg_mamba.report_text import clean_report

    raw = (
        "The heart is mildly enlarged. There is a small left pleural effusion. "
        "No pneumothorax. Possible right lower lobe pneumonia."
    )
    np.testing.assert_array_equal(label_report(raw), label_report(clean_report(raw)))


def test_label_reports_shape_codes_and_binarize_policy():
    labels = label_reports(["Cardiomegaly.", "Possible pneumonia.", "No pleural effusion.", ""])
    assert labels.shape == (4, 14)
    assert set(np.unique(labels[~np.isnan(labels)])) <= {1.0, 0.0, -1.0}
    pneumonia = OBSERVATIONS.index("Pneumonia")
    assert binarize_labels(labels, "negative")[1, pneumonia] == 0
    assert binarize_labels(labels, "positive")[1, pneumonia] == 1
    assert labels[3, OBSERVATIONS.index("No Finding")] == 1.0  # empty report: nothing found


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="reports\\[1\\]"):
        label_reports(["fine", None])
    with pytest.raises(ValueError, match="single string"):
        label_reports("a report")
    with pytest.raises(ValueError, match="uncertain"):
        binarize_labels(np.zeros((1, 14)), uncertain="ignore")


def _label(report, observation):
    return label_report(report)[OBSERVATIONS.index(observation)]


def _blank(value):
    return math.isnan(value)


# Issue 15: error classes of the previous labeler, one test each.


def test_hedge_on_one_item_of_a_negated_list_does_not_take_over_the_negation():
    report = "No focal consolidation, suspicious pulmonary opacity, pleural effusion, or pneumothorax."
    for observation in ("Consolidation", "Lung Opacity", "Pleural Effusion", "Pneumothorax"):
        assert _label(report, observation) == N, observation
    assert _label(report, "No Finding") == P
    assert (
        _label(
            "No focal airspace consolidation, questionable small nodule, pleural effusion, or pneumothorax.",
            "Lung Lesion",
        )
        == N
    )


def test_hedge_outside_a_negated_list_still_counts():
    assert _label("No pneumothorax. Possible small left pleural effusion.", "Pleural Effusion") == U
    assert _label("Possible small left effusion. No pneumothorax or consolidation.", "Pleural Effusion") == U
    assert _label("Cannot exclude a small left effusion, no pneumothorax.", "Pneumothorax") == N
    assert _label("Cannot exclude a small left effusion, no pneumothorax.", "Pleural Effusion") == U


@pytest.mark.parametrize(
    "report",
    [
        "Cholecystectomy clips.",
        "Left axillary surgical clips.",
        "There are left-sided axillary clips.",
        "Right upper quadrant surgical clips from prior cholecystectomy.",
        "Surgical staples in the abdomen.",
    ],
)
def test_surgical_clips_are_not_support_devices(report):
    assert _blank(_label(report, "Support Devices"))
    assert _label(report, "No Finding") == P


def test_devices_next_to_clips_still_count():
    assert _label("Surgical clips in the left axilla and a left chest port.", "Support Devices") == P
    assert _label("Median sternotomy wires are intact.", "Support Devices") == P


@pytest.mark.parametrize(
    "report",
    [
        "No significant change in pneumothorax.",
        "No significant change in the small right apical pneumothorax.",
        "No change in the small right pneumothorax.",
        "Unchanged small left pneumothorax.",
        "Stable tiny left apical pneumothorax.",
        "The right pneumothorax is unchanged in size.",
        "No increase in the size of the right pneumothorax.",
        "No interval change in the left pneumothorax.",
    ],
)
def test_no_change_in_a_finding_means_it_is_present(report):
    assert _label(report, "Pneumothorax") == P
    assert _blank(_label(report, "No Finding"))


@pytest.mark.parametrize(
    "report, observation",
    [
        ("Resolved left pneumothorax.", "Pneumothorax"),
        ("The right pneumothorax has resolved.", "Pneumothorax"),
        ("Interval resolution of the left pleural effusion.", "Pleural Effusion"),
        ("The nasogastric tube has been removed.", "Support Devices"),
        ("Interval removal of the chest tube.", "Support Devices"),
    ],
)
def test_resolved_and_removed_are_not_present(report, observation):
    assert _label(report, observation) == N


def test_resolved_does_not_leak_into_the_next_clause():
    report = "Pneumothorax has resolved, small effusion persists."
    assert _label(report, "Pneumothorax") == N
    assert _label(report, "Pleural Effusion") == P


@pytest.mark.parametrize(
    "report, observation",
    [
        ("A tiny pneumothorax cannot be excluded.", "Pneumothorax"),
        ("Small left apical pneumothorax is not excluded.", "Pneumothorax"),
        ("Pneumonia or atelectasis cannot be excluded.", "Atelectasis"),
        ("Cannot rule out a small left pneumothorax.", "Pneumothorax"),
        ("No definite pneumothorax, though a tiny apical pneumothorax cannot be excluded.", "Pneumothorax"),
    ],
)
def test_cannot_be_excluded_is_uncertain(report, observation):
    assert _label(report, observation) == U


@pytest.mark.parametrize(
    "report, expected",
    [
        ("1. Cardiomegaly 2. No pleural effusion.", {"Cardiomegaly": P, "Pleural Effusion": N}),
        ("1. No pneumothorax 2. Small left pleural effusion.", {"Pneumothorax": N, "Pleural Effusion": P}),
        ("IMPRESSION: 1. No acute cardiopulmonary process. 2. Mild cardiomegaly.", {"Cardiomegaly": P}),
        (
            "1. No acute cardiopulmonary abnormality 2. Bibasilar atelectasis 3. Stable cardiomegaly",
            {"Atelectasis": P, "Cardiomegaly": P},
        ),
        (
            "Impression: 1) No pneumothorax. 2) Small right pleural effusion.",
            {"Pneumothorax": N, "Pleural Effusion": P},
        ),
    ],
)
def test_numbered_impression_lists(report, expected):
    for observation, value in expected.items():
        assert _label(report, observation) == value, observation
    assert _blank(_label(report, "No Finding"))


def test_numbered_list_split_keeps_decimals():
    from modeling_rrg_mamba.labeler.rules import split_sentences

    parts = [part.strip() for part in split_sentences("A 1.9 x 2.1 cm nodule. 2. No effusion") if part.strip()]
    assert parts == ["A 1.9 x 2.1 cm nodule", "No effusion"]


@pytest.mark.parametrize(
    "report, expected",
    [
        ("Heart size normal. Lungs are clear. XXXX are normal.", {"Cardiomegaly": N, "No Finding": P}),
        ("There are no XXXX of pleural effusion.", {"Pleural Effusion": N, "No Finding": P}),
        ("No focal XXXX, pleural effusion, or pneumothorax.", {"Pleural Effusion": N, "Pneumothorax": N}),
        ("XXXX XXXX and lateral chest examination was obtained. XXXX. XXXX XXXX.", {"No Finding": P}),
        (
            "Comparison XXXX, XXXX. The heart is enlarged. XXXX. No pleural effusion.",
            {"Cardiomegaly": P, "Pleural Effusion": N},
        ),
    ],
)
def test_iu_xray_anonymisation_tokens(report, expected):
    labels = label_report(report)
    for observation, value in expected.items():
        assert labels[OBSERVATIONS.index(observation)] == value, observation
    findings = {o for o in OBSERVATIONS if o != "No Finding" and o not in expected}
    assert all(_blank(labels[OBSERVATIONS.index(o)]) for o in findings)


def test_other_abnormalities_block_no_finding_like_chexpert():
    assert _blank(_label("Calcified granuloma in the left upper lobe.", "No Finding"))
    assert _blank(_label("Degenerative changes of the thoracic spine.", "No Finding"))
    assert _label("No evidence of emphysema.", "No Finding") == P
    assert _label("Tortuous aorta.", "No Finding") == P


def test_heart_failure_adds_uncertain_cardiomegaly():
    assert _label("Findings consistent with congestive heart failure.", "Cardiomegaly") == U
    assert _label("Cardiomegaly with mild pulmonary edema, consistent with CHF.", "Cardiomegaly") == P


def test_no_new_is_uncertain_like_chexpert():
    assert _label("No new focal consolidation.", "Consolidation") == U


MESH_XML = """<?xml version="1.0" encoding="utf-8"?>
<eCitation><uId id="CXR{n}"/><MedlineCitation><Article><Abstract>
<AbstractText Label="FINDINGS">{findings}</AbstractText>
<AbstractText Label="IMPRESSION">{impression}</AbstractText>
</Abstract></Article></MedlineCitation>
<MeSH>{tags}</MeSH></eCitation>"""


def _mesh_script():
    path = Path(__file__).resolve().parents[1] / "processing" / "label_mesh_agreement.py"
    spec = importlib.util.spec_from_file_location("label_mesh_agreement", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mesh_agreement_script_counts_tags_against_labels(tmp_path, capsys):
    studies = [
        ("Heart size is enlarged. No effusion.", "Cardiomegaly.", ["Cardiomegaly/mild"]),
        ("No focal consolidation, pleural effusion, pneumothorax.", "Normal chest.", ["normal"]),
        ("Left chest pacemaker/defibrillator.", "No acute disease.", ["Implanted Medical Device/left"]),
        ("Small left pleural effusion.", "Effusion.", ["normal"]),  # a tag the labeler disagrees with
        ("", "", ["normal"]),  # no text: skipped
        ("Clear lungs.", "Normal.", ["No Indexing"]),  # not indexed: skipped
    ]
    for n, (findings, impression, tags) in enumerate(studies):
        majors = "".join(f"<major>{tag}</major>" for tag in tags)
        (tmp_path / f"{n}.xml").write_text(MESH_XML.format(n=n, findings=findings, impression=impression, tags=majors))
    script = _mesh_script()
    texts, headings = script.read_reports(tmp_path)
    assert len(texts) == 4
    rows = {row[0]: row[1:] for row in script.agreement_table(label_reports(texts), headings)}
    assert rows["Cardiomegaly"] == (1, 1, 1.0, 1.0, 1.0)
    assert rows["Support Devices"] == (1, 1, 1.0, 1.0, 1.0)
    assert rows["Pleural Effusion"][:2] == (0, 1)  # labeled, not tagged
    assert rows["No Finding"][:3] == (2, 2, 0.5)  # studies 1 and 2 normal by the rules; studies 1 and 3 tagged
    assert script.is_tagged({"Density/lung/base/left"}, ("Density/lung",))
    assert not script.is_tagged({"Density/thorax/left", "Density/lungs"}, ("Density/lung",))
    assert script.main(["--reports", str(tmp_path), "--show", "Pleural Effusion"]) == 0
    assert "Small left pleural effusion" in capsys.readouterr().out
