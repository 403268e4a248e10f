from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django_q.models import Task

from compositions.models import Composition


def _positive_numbers(report: dict, keys: dict[str, list[str]]) -> list[str]:
    """The `section.key` names whose value is not a positive number."""
    return [f"{section}.{key}" for section, names in keys.items() for key in names
            if not (isinstance(report[section][key], (int, float)) and report[section][key] > 0)]


# The site part commits for real: services queue the task with transaction.on_commit.
@pytest.mark.django_db(transaction=True)
def test_bench_writes_every_figure_and_cleans_up_after_itself(tiny_model_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    call_command("bench", "--model", str(tiny_model_path), "--notes", "8", "--reps", "1", "--site-reps", "1",
                 "--seconds", "5", "--cold-reps", "1", "--out", str(out))
    report = json.loads(out.read_text())
    assert report["machine"]["model_path"] == str(tiny_model_path)
    assert report["machine"]["untrained_weights"] is False
    assert set(report["passed"]) == {"engine_speedup", "site_seconds", "cold_start_ratio"}
    cold = report["cold_start"]
    assert set(cold["compose_breakdown"]) == {"start", "model_load", "generate", "render_encode_report"}
    assert set(cold["seed_breakdown"]) == {"import", "model_load", "generate", "write_midi", "render", "encode"}
    assert cold["notes"][0] > 0 and cold["compose_seconds"][0] > 0 and cold["seed_seconds"][0] > 0
    assert _positive_numbers(report, {
        "machine": ["cpu_count", "window", "lstm_units"],
        "engine": ["compile_seconds", "engine_notes_per_second", "naive_notes_per_second", "speedup"],
        "variations": ["notes_per_second_1", "notes_per_second_4_total", "notes_per_second_4_each"],
        "render": ["audio_seconds", "realtime_multiple", "encode_median_seconds"],
        "site": ["warmup_seconds", "median_seconds"],
        "cold_start": ["ratio"],
    }) == []
    assert not User.objects.exists()
    assert not Composition.objects.exists()
    assert not Task.objects.exists()


def test_bench_explains_a_missing_model(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="does not exist"):
        call_command("bench", "--model", str(tmp_path / "none.keras"), "--out", str(tmp_path / "r.json"))
