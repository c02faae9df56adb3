"""Lexicon of the rule-based CheXpert-style labeler: mention phrases per observation and context triggers.

Everything here is data. Phrases are written in plain words; :mod:`.rules` normalises them exactly like
report text (lower case, punctuation and hyphens to spaces, light plural folding), so ``"pleural effusions"``
and ``"pleural effusion"`` are the same entry. Where two phrases overlap in a sentence the longest wins, which
is how exclusions work: ``"pericardial effusion"`` maps to no observation and so hides ``"effusion"``.
"""

from __future__ import annotations

from typing import Dict, Tuple

#: The 14 CheXpert observations in the CheXpert labeler's column order (columns of every label array).
OBSERVATIONS: Tuple[str, ...] = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)

#: The five observations most CE tables also report separately (CheXpert competition tasks).
COMMON_OBSERVATIONS: Tuple[str, ...] = (
    "Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion",
)

#: Observations that do not block "No Finding" when positive or uncertain.
NO_FINDING_EXEMPT: Tuple[str, ...] = ("No Finding", "Support Devices")

#: Phrases whose presence is itself a finding: phrase -> observations it mentions (empty = excluded phrase).
MENTIONS: Dict[str, Tuple[str, ...]] = {}


def _add(observations: Tuple[str, ...], *phrases: str, table: Dict[str, Tuple[str, ...]] = MENTIONS) -> None:
    for phrase in phrases:
        table[phrase] = observations


_add(("Enlarged Cardiomediastinum",),
     "widened mediastinum", "mediastinal widening", "widening of the mediastinum", "enlarged mediastinum",
     "mediastinal enlargement", "enlarged cardiomediastinum", "cardiomediastinal enlargement",
     "enlarged cardiomediastinal silhouette", "widened cardiomediastinal silhouette", "mediastinal mass")
_add(("Cardiomegaly",),
     "cardiomegaly", "cardiac enlargement", "enlarged heart", "enlargement of the heart",
     "enlarged cardiac silhouette", "enlargement of the cardiac silhouette", "cardiac hypertrophy",
     "ventricular enlargement", "atrial enlargement", "ventricular hypertrophy")
_add(("Lung Opacity",),
     "opacity", "opacities", "opacification", "opacified", "density", "densities", "infiltrate",
     "infiltrates", "infiltration", "airspace disease", "air space disease", "airspace process",
     "haziness", "hazy", "reticular", "reticulonodular", "interstitial prominence", "ground glass",
     "interstitial markings", "increased markings", "interstitial opacity")
_add(("Lung Lesion",),
     "nodule", "nodular", "nodular opacity", "nodular density", "mass", "masses", "lesion", "lung lesion",
     "pulmonary lesion", "tumor", "neoplasm", "carcinoma", "malignancy", "metastasis", "metastases",
     "metastatic disease", "cavitary lesion", "cavitation", "lump", "cyst")
_add(("Edema",),
     "edema", "pulmonary edema", "interstitial edema", "alveolar edema", "vascular congestion",
     "pulmonary congestion", "pulmonary vascular congestion", "congestive heart failure", "chf",
     "fluid overload", "heart failure", "kerley b lines", "cephalization", "pulmonary venous hypertension")
_add(("Consolidation",),
     "consolidation", "consolidations", "consolidative", "consolidated", "airspace consolidation")
_add(("Pneumonia",),
     "pneumonia", "pneumonic", "infection", "infectious process", "infectious", "bronchopneumonia",
     "aspiration pneumonia", "pneumonitis")
_add(("Atelectasis",),
     "atelectasis", "atelectases", "atelectatic", "atelectatic change", "collapse", "lobar collapse",
     "volume loss", "subsegmental atelectasis", "plate like atelectasis", "platelike atelectasis",
     "discoid atelectasis", "linear atelectasis", "bibasilar atelectasis")
_add(("Pneumothorax",),
     "pneumothorax", "pneumothoraces", "ptx", "pneumothoraxes")
_add(("Pneumothorax", "Pleural Effusion"), "hydropneumothorax")
_add(("Pleural Effusion",),
     "pleural effusion", "effusion", "pleural fluid", "hydrothorax", "fluid in the pleural space",
     "blunting of the costophrenic angle", "blunted costophrenic angle", "costophrenic angle blunting",
     "costophrenic blunting", "loculated effusion", "subpulmonic effusion", "layering fluid")
_add(("Pleural Other",),
     "pleural thickening", "pleural plaque", "pleural scarring", "pleural calcification",
     "calcified pleural plaque", "fibrothorax", "pleural reaction", "pleural based opacity",
     "pleural parenchymal scarring", "pleuroparenchymal scarring", "apical pleural cap", "pleural cap",
     "apical cap", "mesothelioma")
_add(("Fracture",),
     "fracture", "fractures", "fractured", "fx", "compression deformity", "rib deformity",
     "healed fracture", "healing fracture", "callus formation", "vertebral compression")
_add(("Support Devices",),
     "pacemaker", "pacer", "aicd", "icd", "defibrillator", "cardiac device", "endotracheal tube",
     "et tube", "ett", "tracheostomy", "tracheostomy tube", "nasogastric tube", "ng tube", "og tube",
     "orogastric tube", "enteric tube", "feeding tube", "dobhoff", "central line", "central venous line",
     "central venous catheter", "picc", "picc line", "catheter", "port a cath", "portacath", "port",
     "swan ganz", "pulmonary artery catheter", "chest tube", "pigtail", "drain", "sternotomy",
     "sternotomy wires", "sternal wires", "sternal sutures", "surgical clips", "clips", "stent", "stents",
     "prosthetic valve", "valve replacement", "pacing wires", "pacer leads", "pacemaker leads",
     "lines and tubes", "tubes and lines", "support device", "monitoring device", "hardware",
     "surgical hardware", "fixation hardware", "spinal hardware", "coil", "cabg", "lvad", "balloon pump",
     "iabp", "ecmo", "vp shunt", "surgical staples", "staples")
# Exclusions: look like a mention of one observation but are not one of the 14 (or not that one).
_add((),
     "pericardial effusion", "joint effusion", "soft tissue edema", "subcutaneous edema", "mass effect",
     "osseous lesion", "bony lesion", "lytic lesion", "sclerotic lesion", "skin lesion", "skin fold",
     "soft tissue mass", "soft tissue density", "breast density", "nipple shadow", "bone density",
     "collapse of the vertebral body", "thyroid nodule", "breast mass")

#: Mentions that need an attribute: subject phrase -> observations; the nearest attribute word decides.
SUBJECTS: Dict[str, Tuple[str, ...]] = {}


_add(("Cardiomegaly",),
     "heart", "heart size", "cardiac size", "cardiac silhouette", "cardiac contour", "cardiac shadow",
     "size of the heart", "heart shadow", "cardiac diameter", table=SUBJECTS)
_add(("Enlarged Cardiomediastinum",),
     "mediastinum", "mediastinal contour", "mediastinal silhouette", "mediastinal width",
     "cardiomediastinal silhouette", "cardiomediastinal contour", "cardiomediastinal shadow",
     "mediastinal shadow", "superior mediastinum", "cardio mediastinal silhouette", table=SUBJECTS)
_add(("Cardiomegaly", "Enlarged Cardiomediastinum"),
     "heart and mediastinum", "cardiac and mediastinal contour", "cardiac and mediastinal silhouette",
     "heart and mediastinal contour", "cardiac and mediastinal shadow",
     "heart size and mediastinal contour", "heart and mediastinal silhouette", table=SUBJECTS)
_add(("Edema",),
     "pulmonary vascularity", "pulmonary vasculature", "vascular markings", "pulmonary vessels",
     "pulmonary vascular markings", "vascularity", table=SUBJECTS)
_add(("Pleural Effusion",),
     "costophrenic angle", "costophrenic sulcus", "costophrenic sulci", "costophrenic recess", table=SUBJECTS)

#: Attribute words for subject mentions: phrase -> "positive" | "normal" | "uncertain".
ATTRIBUTES: Dict[str, str] = {}
for _phrase in ("enlarged", "enlargement", "large", "increased", "prominent", "prominence", "widened",
                "widening", "engorged", "engorgement", "congested", "congestion", "blunted", "blunting",
                "mildly enlarged", "moderately enlarged", "markedly enlarged", "globular", "cephalized",
                "redistribution", "indistinct", "indistinctness", "obscured", "hazy", "big"):
    ATTRIBUTES[_phrase] = "positive"
for _phrase in ("normal", "within normal limits", "within normal limit", "unremarkable", "not enlarged",
                "normal in size", "not significantly enlarged", "not widened", "sharp", "clear", "preserved",
                "normal size", "not prominent", "no enlargement", "not increased",
                "grossly normal", "stable and normal", "midline"):
    ATTRIBUTES[_phrase] = "normal"
for _phrase in ("borderline", "borderline enlarged", "upper limits of normal", "upper limit of normal",
                "upper normal", "top normal", "top of normal", "mildly prominent", "possibly enlarged",
                "at the upper limits of normal", "difficult to assess", "not well assessed", "borderline size",
                "top normal in size"):
    ATTRIBUTES[_phrase] = "uncertain"

#: Negation before a mention; its scope runs to the mention unless a terminator intervenes.
NEGATION_PRE: Tuple[str, ...] = (
    "no", "without", "absence of", "absent", "negative for", "free of", "clear of", "no evidence of",
    "no signs of", "no sign of", "no definite", "no definitive", "no new", "not", "never", "rather than",
    "resolution of", "resolved", "interval resolution of", "interval removal of", "removal of", "no longer",
    "no radiographic evidence of", "no convincing", "there is no", "there are no", "nor", "neither",
    "no focal", "no visible", "no obvious", "no acute", "no significant", "no large", "denies",
    "no suspicious", "no suspected", "no likely",
)
#: Negation after a mention (within a few words, same clause).
NEGATION_POST: Tuple[str, ...] = (
    "is not seen", "are not seen", "not seen", "not identified", "not visualized", "not present",
    "not evident", "not demonstrated", "not appreciated", "not detected", "not noted", "not apparent",
    "is absent", "are absent", "absent", "has resolved", "have resolved", "resolved", "has cleared",
    "have cleared", "cleared", "is no longer seen", "no longer seen", "no longer present",
    "no longer visualized", "no longer evident", "has been removed", "have been removed", "removed",
    "is gone", "not present anymore", "none", "is not identified", "are not identified", "not observed",
    "not well seen", "is not present", "are not present", "is not evident",
)
#: Uncertainty before a mention.
UNCERTAINTY_PRE: Tuple[str, ...] = (
    "may", "might", "could", "possible", "possibly", "probable", "probably", "likely", "most likely",
    "suspicious for", "suspicious", "suspect", "suspected", "suggest", "suggests", "suggesting",
    "suggestive of", "question of", "questionable", "cannot exclude", "can not exclude",
    "cannot rule out", "can not rule out", "not excluded", "not ruled out", "concerning for",
    "concern for", "consider", "considered", "differential", "differential diagnosis includes",
    "borderline", "equivocal", "indeterminate", "presumably", "presumed", "perhaps", "uncertain",
    "rule out", "evaluate for", "assess for", "evaluation for", "r o", "versus", "vs", "vs.",
    "would be consistent with", "may represent", "could represent", "may reflect", "could reflect",
    "cannot be excluded", "difficult to exclude", "not entirely excluded", "maybe", "potential",
    "developing", "underlying", "superimposed",
)
#: Uncertainty after a mention.
UNCERTAINTY_POST: Tuple[str, ...] = (
    "cannot be excluded", "can not be excluded", "cannot be ruled out", "can not be ruled out",
    "not excluded", "is not excluded", "not ruled out", "is possible", "are possible", "is suspected",
    "are suspected", "is questioned", "is likely", "are likely", "is not entirely excluded",
    "is difficult to exclude", "cannot be entirely excluded", "is questionable", "versus", "vs",
    "is not well excluded", "is a consideration", "are not excluded", "not entirely excluded",
    "could be present", "may be present", "might be present", "is probable", "which may represent",
    "which may reflect", "which could represent", "which is likely", "which is possibly", "likely representing",
    "possibly representing", "which may be", "which could be",
)
#: Phrases that contain a trigger word but are not triggers (matched first, then ignored).
NEUTRAL: Tuple[str, ...] = (
    "to suggest", "to indicate", "to represent", "no change", "not changed", "no interval change",
    "without change", "unchanged", "likely related to", "not significantly changed",
)
#: Words that close the scope of a negation or an uncertainty.
TERMINATORS: Tuple[str, ...] = (
    "but", "however", "although", "though", "except", "aside from", "apart from", "which", "whereas",
    "while", "otherwise", "there is", "there are", "there has been", "there have been", "there may",
    "yet", "with the exception of", "other than", "nevertheless", "still", "persistent", "persists",
    "remains", "again", "now", "new",
)
#: Weak uncertainty: "X or Y" lists a differential unless a stronger trigger already decided.
DISJUNCTIONS: Tuple[str, ...] = ("or", "and or", "versus", "vs")
