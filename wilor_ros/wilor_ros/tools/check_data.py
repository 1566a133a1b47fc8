"""``wilor-ros check-data``: read every sample of training/evaluation datasets once, before training.

Each sample goes through the same reader and checks as in ``wilor-ros train`` and ``eval``
(tools/train/validation.py): labels when the dataset is indexed, then the image is decoded and cropped
without augmentation. The result is a :class:`DataReport` with, per dataset, the number of samples, the
bad ones by reason, the offending files and the value ranges of the good samples.
"""

from __future__ import annotations

import sys

from tqdm import tqdm

from wilor_ros.tools.train.config import DatasetEntry
from wilor_ros.tools.train.datasets import HandRecord, distinguish_labels, read_dataset_items, try_example
from wilor_ros.tools.train.validation import BadSample, DataReport


def check_data(entries: list[DatasetEntry], rescale: float, progress: bool = True) -> DataReport:
    """Validate every sample of ``entries``. Raises ValueError/FileNotFoundError only for a dataset that
    cannot be read at all (missing index file, wrong FreiHAND layout ...).

    FreiHAND poses are checked as stored (the mean hand is not added: no MANO file is needed here)."""
    report = DataReport()
    for entry in entries:
        entry.validate()
    distinguish_labels(entries)
    for entry in entries:
        items = read_dataset_items(entry, rescale)
        report.set_samples(entry.label, len(items))
        ranges = report.tally(entry.label).ranges
        for item in tqdm(items, desc=entry.label, unit="sample", disable=not progress, file=sys.stderr):
            if isinstance(item, HandRecord):
                loaded = try_example(item, None, 0)
                if not isinstance(loaded, BadSample):
                    ranges.add_record(item)
                    continue
                item = loaded
            report.add(item)
    return report
