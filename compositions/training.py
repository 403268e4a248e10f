"""Training a model from the admin: the one place the site calls ml.data.datasets and ml.model.train.

The task that runs it (`compositions.tasks.model_train`) writes the data sets' status through
`compositions.services.training`.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from compositions.models import TrainingDataset
from compositions.services.training import training_progress

if TYPE_CHECKING:
    from ml.data.datasets import ImportReport, NoteDataset


@dataclass
class TrainingResult:
    """What the site keeps of a finished training run."""

    styles: list[str]
    metrics: dict[str, object] = field(default_factory=dict)
    reports: dict[int, dict[str, object]] = field(default_factory=dict)  # import report per data set id


def load_dataset(dataset: TrainingDataset) -> tuple[NoteDataset, ImportReport]:
    """Import the notes of one TrainingDataset row from its source: the corpus, a folder on this
    worker, or its stored zip (copied and unpacked into a temporary folder, gone afterwards)."""
    from ml.data import datasets
    from ml.data.archives import extract_midi_zip

    if dataset.source == TrainingDataset.Source.CORPUS:
        return datasets.load_corpus(styles=[dataset.style])
    if dataset.archive:
        with tempfile.TemporaryDirectory(prefix="musicgen-dataset-") as folder:
            archive = Path(folder) / "set.zip"
            with dataset.archive.open("rb") as source, archive.open("wb") as copy:
                shutil.copyfileobj(source, copy, 1 << 20)
            extract_midi_zip(archive, Path(folder) / "files")
            return datasets.import_midi_folder(Path(folder) / "files", dataset.style)
    if dataset.source == TrainingDataset.Source.MAESTRO:
        return datasets.import_maestro(Path(dataset.path))
    return datasets.import_midi_folder(Path(dataset.path), dataset.style)


def run_training(dataset_ids: list[int], out_path: Path) -> TrainingResult:
    """Train one model on the data sets `dataset_ids` and save it at `out_path`."""
    from ml.data.datasets import NoteDataset
    from ml.model.config import read_model_info
    from ml.model.train import default_config, train

    rows = list(TrainingDataset.objects.filter(id__in=dataset_ids))
    if not rows:
        raise ValueError("None of the selected data sets exists any more.")
    parts, reports = [], {}
    for row in rows:
        notes, report = load_dataset(row)
        parts.append(notes)
        reports[row.id] = report.to_dict()
    merged = parts[0] if len(parts) == 1 else NoteDataset.merge(parts)
    config = default_config(merged.styles)

    def progress(epoch: int, epochs: int, logs: dict[str, float]) -> None:
        training_progress(dataset_ids=dataset_ids, epoch=epoch, epochs=epochs, val_loss=logs.get("val_loss"))

    train(merged, config, out_path, verbose=0, on_epoch=progress)
    metrics = read_model_info(out_path)["extra"].get("training", {})
    return TrainingResult(styles=list(config.styles), metrics=dict(metrics), reports=reports)
