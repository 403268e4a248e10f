"""Training a model from the admin: the one place that calls ml.train for the site."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from compositions.models import TrainingDataset


@dataclass
class TrainingResult:
    """What the site keeps of a finished training run."""

    styles: list[str]
    metrics: dict[str, object] = field(default_factory=dict)


def run_training(dataset_ids: list[int], out_path: Path) -> TrainingResult:
    """Train one model on the data sets `dataset_ids` and save it at `out_path`."""
    from ml import train

    datasets = list(TrainingDataset.objects.filter(id__in=dataset_ids))
    if not datasets:
        raise ValueError("None of the selected data sets exists any more.")
    # TODO(lead): adapt this call once ml.train.train_model's signature is final.
    sources = [{"source": d.source, "path": d.path, "style": d.style} for d in datasets]
    result = train.train_model(sources=sources, out_path=out_path)
    return TrainingResult(styles=list(result.styles), metrics=dict(result.metrics))
