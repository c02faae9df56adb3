"""Lexicon of the rule-based CheXpert-style labeler: mention phrases per observation and context triggers.

Everything here is data, written for this package (the observation scheme and the trigger classes follow the
CheXpert labeler; the phrase lists are our own, see :mod:`.rules` for where they deliberately differ). Phrases
are written in plain words; :mod:`.rules` normalises them exactly like report text (lower case, punctuation and
hyphens to spaces, light plural folding), so ``"pleural effusions"`` and ``"pleural effusion"`` are the same
entry. Where two phrases overlap in a sentence the longest wins, which is how exclusions ("unmentions") work:
``"pericardial effusion"`` maps to no observation and so hides ``"effusion"``.
"""

from __future__ import annotations

from typing import Dict, FrozenSet, Tuple

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

#: Pseudo-observation of findings outside the 14 (emphysema, granuloma, scoliosis, ...). As in CheXpert, a
#: positive or uncertain mention of one blocks "No Finding"; it never gets a column of its own.
OTHER_FINDING = "Other Finding"

#: Phrases whose presence is itself a finding: phrase -> observations it mentions (empty = excluded phrase).
MENTIONS: Dict[str, Tuple[str, ...]] = {}

#: Mention phrases that are uncertain unless negated (CheXpert: congestion / prominence / indistinctness).
WEAK_MENTIONS: Dict[str, Tuple[str, ...]] = {}


def _add(observations: Tuple[str, ...], *phrases: str, table: Dict[str, Tuple[str, ...]] = MENTIONS) -> None:
    for phrase in phrases:
        table[phrase] = observations


_add(("Enlarged Cardiomediastinum",),
     "widened mediastinum", "mediastinal widening", "widening of the mediastinum", "enlarged mediastinum",
     "mediastinal enlargement", "enlarged cardiomediastinum", "cardiomediastinal enlargement",
     "enlarged cardiomediastinal silhouette", "widened cardiomediastinal silhouette",
     "widened superior mediastinum")
_add(("Enlarged Cardiomediastinum", "Lung Lesion"), "mediastinal mass", "anterior mediastinal mass")
_add(("Cardiomegaly",),
     "cardiomegaly", "cardiac enlargement", "enlarged heart", "enlargement of the heart",
     "enlarged cardiac silhouette", "enlargement of the cardiac silhouette", "cardiac hypertrophy",
     "ventricular enlargement", "atrial enlargement", "ventricular hypertrophy", "enlarged cardiac contour")
_add(("Lung Opacity",),
     "opacity", "opacification", "opacified", "density", "increased density", "decreased translucency",
     "infiltrate", "infiltration", "infiltrative", "airspace disease", "air space disease", "airspace process",
     "airspace opacity", "haziness", "reticular", "reticulation", "reticulonodular", "interstitial prominence",
     "ground glass", "interstitial marking", "increased marking", "interstitial opacity", "interstitial pattern",
     "interstitial lung disease", "interstitial disease", "scar", "scarring", "parenchymal scarring",
     "peribronchial thickening", "bronchial wall thickening", "wall thickening", "fibrosis", "fibrotic",
     "fibrotic change", "pulmonary fibrosis")
_add(("Lung Lesion", "Lung Opacity"), "nodular opacity", "nodular opacification")
_add(("Lung Lesion",),
     "nodule", "nodular density", "mass", "lung lesion", "pulmonary lesion", "lesion", "tumor", "neoplasm",
     "carcinoma", "malignancy", "cavitary lesion", "cavitation", "lump", "pulmonary metastasis",
     "lung metastasis", "cavitary mass", "spiculated mass")
_add(("Edema",),
     "edema", "pulmonary edema", "interstitial edema", "alveolar edema", "congestive heart failure", "chf",
     "fluid overload", "heart failure", "kerley b line", "kerley line", "volume overload")
_add(("Edema",),
     "vascular congestion", "pulmonary congestion", "pulmonary vascular congestion", "indistinctness",
     "vascular prominence", "vascular engorgement", "pulmonary venous congestion", "perihilar haziness",
     table=WEAK_MENTIONS)
_add(("Consolidation",),
     "consolidation", "consolidative", "consolidated", "airspace consolidation")
_add(("Pneumonia",),
     "pneumonia", "pneumonic", "infection", "infectious process", "infectious", "bronchopneumonia",
     "aspiration pneumonia", "pneumonitis", "infected")
_add(("Atelectasis",),
     "atelectasis", "atelectase", "atelectatic", "atelectatic change", "collapse", "lobar collapse",
     "subsegmental atelectasis", "plate like atelectasis", "platelike atelectasis", "discoid atelectasis",
     "linear atelectasis", "bibasilar atelectasis", "collapsed")
_add(("Pneumothorax",),
     "pneumothorax", "pneumothorace", "ptx", "pneumothoraxe")
_add(("Pneumothorax", "Pleural Effusion"), "hydropneumothorax")
_add(("Pleural Effusion",),
     "pleural effusion", "effusion", "pleural fluid", "hydrothorax", "fluid in the pleural space",
     "loculated effusion", "subpulmonic effusion", "layering fluid", "fluid in the fissure")
_add(("Pleural Effusion",),
     "blunting of the costophrenic angle", "blunted costophrenic angle", "costophrenic angle blunting",
     "costophrenic blunting", "blunting of the left costophrenic angle", "blunting of the right costophrenic angle",
     "blunting of both costophrenic angle", "blunting of the costophrenic sulcus", "blunting",
     table=WEAK_MENTIONS)
_add(("Pleural Other",),
     "pleural thickening", "pleural plaque", "pleural scar", "pleural scarring", "pleural calcification",
     "calcified pleural plaque", "fibrothorax", "pleural reaction", "pleural based opacity",
     "pleural parenchymal scarring", "pleuroparenchymal scarring", "pleural parenchymal scar",
     "pleuroparenchymal scar", "pleuro parenchymal scar", "pleuro parenchymal scarring",
     "pleuropericardial scarring", "pleuro pericardial scar", "apical pleural cap", "pleural cap",
     "apical cap", "mesothelioma", "pleural fibrosis", "pleural based density", "pleural thickening or scarring")
_add(("Fracture",),
     "fracture", "fractured", "fx", "compression deformity", "healed fracture", "healing fracture",
     "callus formation", "vertebral compression", "compression fracture")
_add(("Support Devices",),
     "pacemaker", "pacer", "aicd", "icd", "defibrillator", "cardiac device", "endotracheal tube",
     "et tube", "ett", "tracheostomy", "tracheostomy tube", "nasogastric tube", "ng tube", "og tube",
     "orogastric tube", "enteric tube", "feeding tube", "dobhoff", "central line", "central venous line",
     "central venous catheter", "picc", "picc line", "catheter", "port a cath", "portacath", "port",
     "mediport", "swan ganz", "pulmonary artery catheter", "chest tube", "pigtail", "drain", "tube",
     "sternotomy wire", "sternal wire", "sternal suture", "sternotomy suture", "cerclage wire", "stent",
     "prosthetic valve", "valve replacement", "valve prosthesis", "pacing wire", "pacer lead",
     "pacemaker lead", "pacing lead", "icd lead", "lead tip", "atrial lead", "ventricular lead",
     "transvenous lead", "line and tube", "tube and line", "support device", "monitoring device",
     "device", "hardware", "surgical hardware", "fixation hardware", "spinal hardware", "coil", "lvad",
     "balloon pump", "iabp", "ecmo", "vp shunt", "shunt catheter", "cannula", "apparatus", "arthroplasty",
     "screw", "fixation plate", "orthopedic plate", "side port", "arterial line", "venous line",
     "dialysis catheter", "jugular line", "subclavian line", "ij line", "lines and tube", "line")
# Findings outside the 14 that still make a report abnormal (they block No Finding when positive or uncertain).
_add((OTHER_FINDING,),
     "emphysema", "emphysematous", "copd", "chronic obstructive pulmonary disease", "hyperinflation",
     "hyperinflated", "hyperexpansion", "hyperexpanded", "hyperaeration", "hyperaerated", "overinflation",
     "bulla", "bullae", "bullous", "scoliosis", "kyphosis", "kyphotic", "degenerative", "degeneration",
     "spondylosis", "osteophyte", "osteophytosis", "arthropathy", "osteopenia", "osteodystrophy", "granuloma",
     "granulomata", "granulomatous", "calcified", "calcification", "calcific", "atherosclerosis",
     "atherosclerotic", "aortic disease", "elevation", "elevated", "eventration", "hernia", "thickening",
     "cephalization", "aspiration", "contusion", "pneumomediastinum", "pneumoperitoneum", "cuffing",
     "peribronchial cuffing", "irregular lucency", "inflammation", "inflammatory", "hypertension",
     "prominent", "prominence", "bronchitis", "bronchiolitis", "bronchospasm", "asthma", "airway disease",
     "reactive airway disease", "thoracentesis", "volume loss", "deformity", "rib deformity", "hemorrhage",
     "hematoma", "radiopaque", "bullet", "aerophagia", "metastasis", "metastatic disease", "metastatic",
     "bronchiectasis", "plaque", "calcified nodule", "calcified granuloma", "calcified lymph node",
     "subcutaneous emphysema", "calcified nodular density", "calcified nodular opacity", "calcified density",
     "calcified mass", "calcified pleural")
# Exclusions: look like a mention of one observation but are not one of the 14 (or not that one).
_add((),
     "pericardial effusion", "joint effusion", "suprapatellar effusion", "soft tissue edema",
     "subcutaneous edema", "mass effect", "osseous lesion", "bony lesion", "lytic lesion", "sclerotic lesion",
     "skin lesion", "skin fold", "soft tissue mass", "soft tissue density", "breast density", "nipple shadow",
     "bone density", "collapse of the vertebral body", "vertebral body collapse", "thyroid nodule",
     "breast mass", "massive", "mass like", "pleural line", "skin line", "kerley", "midline", "fissure line",
     "septal line", "paraspinal line", "azygoesophageal line", "linear", "line of", "tube feeding",
     "surgical clip", "clip", "cholecystectomy clip", "axillary clip", "vascular clip", "surgical staple",
     "staple", "bronchovascular marking", "lung marking", "lung volume", "low lung volume",
     "splenic granuloma", "lead apron", "bowel gas", "with or without", "line of sight")

#: Mentions that need an attribute: subject phrase -> observations; the nearest attribute word decides.
SUBJECTS: Dict[str, Tuple[str, ...]] = {}

_add(("Cardiomegaly",),
     "heart", "heart size", "cardiac size", "cardiac silhouette", "cardiac shadow", "size of the heart",
     "heart shadow", "cardiac diameter", "heart contour", "cardiac size and contour", "heart sizes",
     table=SUBJECTS)
_add(("Enlarged Cardiomediastinum",),
     "mediastinum", "mediastinal contour", "mediastinal silhouette", "mediastinal width",
     "cardiomediastinal silhouette", "cardiomediastinal contour", "cardiomediastinal shadow",
     "mediastinal shadow", "superior mediastinum", "cardio mediastinal silhouette", "cardiomediastinum",
     "mediastinal configuration", "pericardial silhouette", "hilar contour", "mediastinal and hilar contour",
     "cardiomediastinal size", "cardiomediastinal", "mediastinal size", "hila and mediastinum",
     "mediastinal and hilar", "hilar and mediastinal contour", "mediastinal structure", table=SUBJECTS)
_add(("Cardiomegaly", "Enlarged Cardiomediastinum"),
     "heart and mediastinum", "cardiac and mediastinal contour", "cardiac and mediastinal silhouette",
     "heart and mediastinal contour", "cardiac and mediastinal shadow", "cardiac contour",
     "heart size and mediastinal contour", "heart and mediastinal silhouette", "heart and mediastinal",
     "cardiac and mediastinal", "heart size and mediastinum", "cardiac silhouette and mediastinum",
     "heart and mediastinum size", "cardiac silhouette and mediastinal contour", "mediastinum and heart",
     "cardiac and mediastinal size", "heart size and mediastinal", "cardiomediastinal silhouette and heart size",
     table=SUBJECTS)
_add(("Edema",),
     "pulmonary vascularity", "pulmonary vasculature", "vascular marking", "pulmonary vessel",
     "pulmonary vascular marking", "vascularity", "vasculature", "pulmonary vascular", table=SUBJECTS)
_add(("Pleural Effusion",),
     "costophrenic angle", "costophrenic sulcus", "costophrenic sulci", "costophrenic recess",
     "costophrenic", table=SUBJECTS)

#: Subjects whose "stable" / "unchanged" / "similar to prior" is uncertain (CheXpert's post-negation rules).
STABLE_UNCERTAIN: FrozenSet[str] = frozenset({"Cardiomegaly", "Enlarged Cardiomediastinum"})

#: Attribute words for subject mentions: phrase -> "positive" | "normal" | "uncertain" | "stable".
ATTRIBUTES: Dict[str, str] = {}
for _phrase in ("enlarged", "enlargement", "large", "increased", "prominent", "prominence", "widened",
                "widening", "engorged", "engorgement", "congested", "congestion", "blunted", "blunting",
                "mildly enlarged", "moderately enlarged", "markedly enlarged", "globular", "cephalized",
                "redistribution", "indistinct", "indistinctness", "hazy", "big", "mildly prominent",
                "increased in size"):
    ATTRIBUTES[_phrase] = "positive"
for _phrase in ("normal", "within normal limits", "within normal limit", "unremarkable", "not enlarged",
                "normal in size", "not significantly enlarged", "not widened", "sharp", "clear", "preserved",
                "normal size", "not prominent", "no enlargement", "not increased", "grossly normal",
                "stable and normal", "normal and stable", "stable normal", "unchanged normal", "midline",
                "within the normal range", "at the upper limits of normal", "upper limits of normal",
                "upper limit of normal", "at the upper limit of normal", "top normal", "top of normal",
                "high normal", "upper normal", "within normal", "normal limits", "not engorged",
                "not congested", "unremarkable and stable", "is normal"):
    ATTRIBUTES[_phrase] = "normal"
for _phrase in ("borderline", "borderline enlarged", "possibly enlarged", "difficult to assess",
                "not well assessed", "borderline size", "borderline in size", "borderline enlargement",
                "obscured", "obscuring", "not well visualized", "poorly visualized", "not well evaluated",
                "poorly evaluated", "obscure", "not clearly seen"):
    ATTRIBUTES[_phrase] = "uncertain"
for _phrase in ("stable", "unchanged", "similar", "similar to prior", "no change", "not changed",
                "without change", "no significant change", "no interval change", "grossly stable",
                "stable in size", "unchanged in size", "remains stable", "no significant interval change",
                "similar in appearance", "stable appearance"):
    ATTRIBUTES[_phrase] = "stable"

#: Uncertainty matched *before* negation (CheXpert "pre-negation uncertainty"): cannot exclude, no new, ...
UNCERTAINTY_FIRST_PRE: Tuple[str, ...] = (
    "cannot exclude", "can not exclude", "cannot rule out", "can not rule out", "could not exclude",
    "cannot entirely exclude", "not excluded", "not ruled out", "no new", "difficult to exclude",
    "difficult to rule out", "not entirely excluded", "cannot be excluded", "can not be excluded",
    "cannot be ruled out", "no evidence to rule out", "cannot completely exclude", "not completely excluded",
    "may not be excluded", "unable to exclude", "can t exclude", "can t rule out",
)
UNCERTAINTY_FIRST_POST: Tuple[str, ...] = (
    "cannot be excluded", "can not be excluded", "cannot be ruled out", "can not be ruled out",
    "not excluded", "is not excluded", "are not excluded", "not ruled out", "is not ruled out",
    "cannot be entirely excluded", "cannot be completely excluded", "not entirely excluded",
    "is not entirely excluded", "is difficult to exclude", "difficult to exclude", "could not be excluded",
    "not completely excluded", "is not well excluded", "cannot be excluded on this study", "can t be excluded",
)
#: Negation before a mention; its scope runs across a coordinated list until a terminator.
NEGATION_PRE: Tuple[str, ...] = (
    "no", "without", "absence of", "absent", "negative for", "free of", "clear of", "not", "never",
    "rather than", "resolution of", "resolved", "interval resolution of", "interval removal of", "removal of",
    "no longer", "nor", "neither", "denies", "rule out", "r o", "ruled out", "to rule out", "evaluate for",
    "evaluation for", "assess for", "disappearance of", "clearing of", "cleared", "removed",
    "no evidence of", "there is no", "there are no", "negative", "without evidence of", "exclude", "excluding",
)
#: Negation after a mention (within a few words, same clause).
NEGATION_POST: Tuple[str, ...] = (
    "is not seen", "are not seen", "not seen", "not identified", "not visualized", "not present",
    "not evident", "not demonstrated", "not appreciated", "not detected", "not noted", "not apparent",
    "is absent", "are absent", "absent", "has resolved", "have resolved", "resolved", "has cleared",
    "have cleared", "cleared", "is no longer seen", "no longer seen", "no longer present",
    "no longer visualized", "no longer evident", "no longer identified", "no longer apparent",
    "has been removed", "have been removed", "removed", "is gone", "not present anymore", "none",
    "is not identified", "are not identified", "not observed", "is not present", "are not present",
    "is not evident", "not shown", "not clearly identified", "not definitely seen", "not definitely identified",
    "not visible", "are not visualized", "has been withdrawn", "has been discontinued",
    "ruled out", "is excluded",
)
#: Uncertainty after negation: hedge words that modify only the list item they stand in (item scope).
UNCERTAINTY_ITEM: Tuple[str, ...] = (
    "possible", "possibly", "probable", "probably", "likely", "most likely", "more likely", "less likely",
    "questionable", "question of", "suspicious", "suspicious for", "suspected", "suspect", "equivocal",
    "borderline", "presumably", "presumed", "perhaps", "indeterminate", "uncertain", "maybe", "potential",
    "questionably", "favor", "favored", "suggestion of", "concern for", "worrisome for", "concerning for",
)
#: Uncertainty after negation: hedges over the rest of the clause (clause scope).
UNCERTAINTY_PRE: Tuple[str, ...] = (
    "may", "might", "could", "would", "suggest", "suggests", "suggesting", "suggestive of", "consider",
    "considered", "differential", "differential diagnosis", "differential diagnosis includes",
    "would be consistent with", "may represent", "could represent", "may reflect", "could reflect",
    "possibly representing", "likely representing", "which may represent", "which could represent",
    "may be due to", "may be related to", "secondary to", "correlate clinically for",
    "clinical correlation for",
    "cannot be characterized", "not well characterized", "may indicate", "could indicate", "raise the possibility",
    "raises the possibility", "raising the possibility", "suspicion for",
    "suspicion of", "question", "not well visualized", "not well evaluated", "poorly evaluated",
    "obscuring", "obscured",
)
#: Uncertainty after a mention.
UNCERTAINTY_POST: Tuple[str, ...] = (
    "is possible", "are possible", "is suspected", "are suspected", "is questioned", "is likely",
    "are likely", "is questionable", "is a consideration", "could be present",
    "may be present", "might be present", "is probable", "is not well visualized", "not well visualized",
    "is poorly evaluated", "not well evaluated", "incompletely evaluated", "is obscured", "obscured",
    "not clearly seen", "is not clearly seen", "are not clearly seen", "is suggested",
    "is favored", "is considered", "are considered", "not well seen", "poorly visualized", "is uncertain",
    "is equivocal", "is indeterminate", "is suspicious", "suspected", "questioned",
    "not clearly visualized", "is not clearly visualized", "may also be present", "could also be present",
)
#: Phrases that contain a trigger word but are not triggers (matched first, then ignored). The "no change in X"
#: family keeps X as it was (present), the partial-resolution family too.
NEUTRAL: Tuple[str, ...] = (
    "to suggest", "to indicate", "to represent", "to explain", "no change", "not changed", "no interval change",
    "without change", "unchanged", "likely related to", "not significantly changed", "no significant change",
    "no significant interval change", "without significant change", "without interval change",
    "no appreciable change", "no substantial change", "no definite change", "no appreciable interval change",
    "no significant interval", "no worsening", "no interval worsening", "no increase", "no interval increase",
    "no significant increase", "no significant worsening", "no change in", "without significant interval change",
    "not significantly different", "no significant difference", "no interval development", "no definite interval change",
    "partially resolved", "partial resolution", "partial resolution of", "incompletely resolved",
    "nearly resolved", "near complete resolution", "not completely resolved", "not fully resolved",
    "not resolved", "has not resolved", "have not resolved", "not removed", "has not been removed",
    "not changed significantly", "little change", "minimal change", "slight change",
    "no significant interval change in", "not significantly", "not only", "no longer than", "no more than",
)
#: Words that close the scope of a negation or an uncertainty.
TERMINATORS: Tuple[str, ...] = (
    "but", "however", "although", "though", "except", "aside from", "apart from", "which", "whereas",
    "while", "otherwise", "there is", "there are", "there has been", "there have been", "there may",
    "yet", "with the exception of", "other than", "nevertheless", "still", "persistent", "persists",
    "remains", "remain", "again", "now", "new", "and the", "and there", "and a", "and an", "is seen",
    "are seen", "is noted", "are noted", "is present", "are present", "is again", "are again",
    "is identified", "are identified", "is visualized", "is demonstrated", "are demonstrated",
    "unchanged", "stable", "has developed", "has increased", "has decreased",
    "worsened", "worsening", "improving", "resolving", "has improved", "has worsened",
)
#: Weak uncertainty: "X or Y" lists a differential unless negation decided first.
DISJUNCTIONS: Tuple[str, ...] = ("or", "and or", "versus", "vs")
#: Negations of adjective position ("resolved effusion", "removed tube"): they reach only the next words.
NEGATION_ITEM: Tuple[str, ...] = ("resolved", "removed", "cleared", "absent")
#: Coordinators: a negation crosses commas of a list only when the list is coordinated ("A, B, or C").
COORDINATORS: Tuple[str, ...] = ("or", "nor", "and", "and or")
