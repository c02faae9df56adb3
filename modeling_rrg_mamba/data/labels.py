"""CheXpert pseudo-labels as a dataset column (the targets of RRG-Mamba's cross-modal adapter).

The column is produced by the same labeler as the CE metrics (:func:`modeling_rrg_mamba.labeler.label_reports`),
so training targets and evaluation agree on what each report says.
"""

from __future__ import annotations

import datasets

from ..labeler import binarize_labels, label_reports

#: Name of the dataset column :func:`add_observation_labels` writes (14 CheXpert labels per report).
OBSERVATION_LABELS_COLUMN = "observation_labels"


def add_observation_labels(
    dataset: datasets.Dataset | datasets.DatasetDict,
    report_column: str = "report",
    column: str = OBSERVATION_LABELS_COLUMN,
    uncertain: str = "positive",
    raw: bool = False,
    num_proc: int | None = None,
):
    """Add a column of 14 CheXpert observation labels per report (order ``labeler.OBSERVATIONS``).

    By default the labels are 0/1 floats for a multi-label BCE loss: positive -> 1, negative and blank -> 0,
    uncertain -> 1 (``uncertain="positive"``, U-Ones) or 0 (``"negative"``). ``raw=True`` stores the CheXpert
    codes instead (1 / 0 / -1 / NaN).
    """
    splits = dataset.values() if isinstance(dataset, datasets.DatasetDict) else [dataset]
    for split in splits:
        if report_column not in split.column_names:
            raise ValueError(f"report_column: column {report_column!r} not in dataset columns {split.column_names}")
    binarize_labels([], uncertain=uncertain)  # validates the policy before labeling anything

    def label_batch(batch):
        labels = label_reports(batch[report_column])
        values = labels if raw else binarize_labels(labels, uncertain=uncertain)
        return {column: values.astype("float32").tolist()}

    features = datasets.List(datasets.Value("float32"), length=14)
    return dataset.map(
        label_batch,
        batched=True,
        num_proc=num_proc,
        features=None
        if isinstance(dataset, datasets.DatasetDict)
        else datasets.Features({**dataset.features, column: features}),
        desc="CheXpert labels",
    )
