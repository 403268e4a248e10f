"""`manage.py bench`: the ml benchmarks plus the site's end-to-end time, written to bench/results.json."""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.storage import default_storage
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError
from django.test import override_settings

from compositions import runtime
from compositions.models import CompositionVersion
from compositions.services.composing import composition_request
from compositions.services.queueing import FOLLOW_UP_TASK, GENERATE_TASK

SITE_TARGET_SECONDS = 3.0
COLD_START_TARGET_RATIO = 2.0
TASK_FUNC = GENERATE_TASK


@dataclass
class ColdStart:
    """`manage.py compose` as a whole process, cold, against the seed project's flow writing as many notes."""

    piece_seconds: float
    style: str
    compose_seconds: list[float]
    seed_seconds: list[float]
    ratio: float  # median of the per-repetition ratios seed / compose
    compose_breakdown: dict[str, float]  # median seconds per step of our run
    seed_breakdown: dict[str, float]  # median seconds per step of the seed's
    notes: list[int]


@dataclass
class SiteSpeed:
    """Service call to MP3 on disk, with the task run inline (django-q2 sync) on the configured DB."""

    piece_seconds: float
    style: str
    model_path: str  # what the site composed with (the active MusicModel row wins over the setting)
    database: str
    warmup_seconds: float  # the first call: model load, XLA compilation, SoundFont load
    seconds: list[float]
    median_seconds: float
    notes: list[int]


class _FollowUps:
    """The follow-up tasks queued while the clock runs, run once it has stopped."""

    def __init__(self) -> None:
        self.pending: list[int] = []

    def run(self) -> None:
        from compositions.tasks import composition_version_follow_up

        while self.pending:
            composition_version_follow_up(self.pending.pop(0))


@contextlib.contextmanager
def _follow_ups_after() -> Iterator[_FollowUps]:
    """Hold back the follow-up tasks the timed calls queue (the rest run as they would)."""
    from unittest import mock

    from compositions.services import queueing

    follow_ups = _FollowUps()
    queue = queueing.async_task  # type: ignore[attr-defined]

    def deferred(func: str, *args: Any, **kwargs: Any) -> Any:
        if func == FOLLOW_UP_TASK:
            follow_ups.pending.append(int(args[0]))
            return None
        return queue(func, *args, **kwargs)

    with mock.patch.object(queueing, "async_task", deferred):
        yield follow_ups


class Command(BaseCommand):
    help = "Benchmark generation, rendering and the site's compose path; write bench/results.json."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--quick", action="store_true", help="fewer notes and repetitions (smoke run)")
        parser.add_argument("--out", type=Path, default=Path(settings.BASE_DIR) / "bench" / "results.json")
        parser.add_argument("--model", type=Path,
                            help="a .keras note model (default MUSIC_MODEL_PATH, else untrained weights)")
        parser.add_argument("--style", help="style to compose in (default the model's first)")
        parser.add_argument("--site-reps", type=int, help="timed service calls (default 5; --quick 2)")
        parser.add_argument("--notes", type=int, help="notes per engine and naive run (default 200; --quick 48)")
        parser.add_argument("--reps", type=int, help="repetitions of each ml measurement (default 5; --quick 2)")
        parser.add_argument("--seconds", type=float, help="length of the rendered and composed piece (default 60)")
        parser.add_argument("--cold-reps", type=int, help="cold starts of compose and of the seed flow (default 3; "
                                                          "--quick 1)")

    def handle(self, *args: Any, **options: Any) -> None:
        from ml import bench

        ml_options = bench.BenchOptions.quick() if options["quick"] else bench.BenchOptions()
        chosen = {"notes": options["notes"], "reps": options["reps"], "render_seconds": options["seconds"]}
        try:
            ml_options = replace(ml_options, **{k: v for k, v in chosen.items() if v is not None})
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        site_reps = options["site_reps"] or (2 if options["quick"] else 5)
        explicit = options["model"]
        if explicit is None and Path(settings.MUSIC_MODEL_PATH).is_file():
            explicit = Path(settings.MUSIC_MODEL_PATH)
        with tempfile.TemporaryDirectory(prefix="musicgen-bench-") as scratch:
            try:
                path, untrained = bench.resolve_model(explicit, Path(scratch))
                model, generator = bench.load_model_under_test(path, untrained)
                if options["style"]:
                    generator.config.style_index(options["style"])
                    model.style = options["style"]
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(f"Model {path}{' (untrained weights)' if untrained else ''}: window {model.window}, "
                              f"{model.lstm_layers}x{model.lstm_units} BiLSTM, style {model.style}")
            ml_results = bench.run_ml_benchmarks(generator, model, ml_options, progress=self.stdout.write)
            del generator  # the site loads its own, as a worker would
            self.stdout.write(f"Site: service call to MP3 ({ml_options.render_seconds:g}-s piece, {site_reps} reps)")
            site = self._site_speed(path, model.style, ml_options.render_seconds, site_reps)
            cold_reps = options["cold_reps"] or (1 if options["quick"] else 3)
            self.stdout.write(f"Cold start: manage.py compose against the seed flow ({cold_reps} reps)")
            cold = self._cold_start(path, model.style, ml_options.render_seconds, cold_reps)

        rows = bench.ml_rows(ml_results) + [
            bench.Row("site warm-up call (load + compile)", f"{site.warmup_seconds:.2f} s"),
            bench.Row(f"site: service call -> MP3 ({site.piece_seconds:g} s piece)", f"{site.median_seconds:.2f} s",
                      f"<= {SITE_TARGET_SECONDS:g} s", site.median_seconds <= SITE_TARGET_SECONDS),
            bench.Row(f"cold `manage.py compose` ({cold.piece_seconds:g} s piece, whole process)",
                      f"{statistics.median(cold.compose_seconds):.2f} s"),
            bench.Row("seed flow, as many notes (predict per note, music21, fluidsynth, ffmpeg)",
                      f"{statistics.median(cold.seed_seconds):.2f} s"),
            bench.Row("cold compose speed-up over the seed flow", f"{cold.ratio:.1f}x",
                      f">= {COLD_START_TARGET_RATIO:g}x", cold.ratio >= COLD_START_TARGET_RATIO),
        ]
        report = {
            "machine": self._machine(model),
            "options": {**asdict(ml_options), "site_reps": site_reps, "quick": options["quick"]},
            "targets": {"engine_speedup_min": 25.0, "site_seconds_max": SITE_TARGET_SECONDS,
                        "cold_start_ratio_min": COLD_START_TARGET_RATIO},
            "passed": {"engine_speedup": ml_results.engine.speedup >= 25.0,
                       "site_seconds": site.median_seconds <= SITE_TARGET_SECONDS,
                       "cold_start_ratio": cold.ratio >= COLD_START_TARGET_RATIO},
            **ml_results.to_dict(),
            "site": asdict(site),
            "cold_start": asdict(cold),
        }
        out: Path = options["out"]
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        self.stdout.write("")
        self.stdout.write(bench.format_table(rows))
        self.stdout.write(f"\nWrote {out}")

    def _site_speed(self, model_path: Path, style: str, seconds: float, reps: int) -> SiteSpeed:
        media = Path(tempfile.mkdtemp(prefix="musicgen-bench-media-"))
        username = f"bench-{uuid.uuid4().hex[:12]}"
        started = datetime.datetime.now(datetime.UTC)
        user = None
        # django-q2 logs every inline task at INFO; the bench prints its own progress.
        q_logger = logging.getLogger("django-q")
        q_level = q_logger.level
        q_logger.setLevel(logging.WARNING)
        try:
            user = get_user_model().objects.create_user(username=username, password=None)
            # The follow-up (the MP3's loudness measured, the score engraved) is a task of its own that
            # comes after the piece plays: it is run after the clock stops (the ml part times both).
            with override_settings(MEDIA_ROOT=media, Q_SYNC=True, MUSIC_MODEL_PATH=model_path,
                                   SCORE_TIMEOUT_SECONDS=0), _follow_ups_after() as follow_ups:
                used_model = str(runtime.active_model_path())
                times: list[float] = []
                notes: list[int] = []
                for rep in range(reps + 1):  # the first call is the warm-up
                    start = time.perf_counter()
                    rows = composition_request(user=user, params={"style": style, "seconds": seconds, "seed": rep})
                    rows[0].refresh_from_db()
                    elapsed = time.perf_counter() - start
                    follow_ups.run()
                    row = rows[0].current_version
                    assert row is not None
                    if row.status != CompositionVersion.Status.DONE or not default_storage.exists(row.mp3_file.name):
                        raise CommandError(f"The site did not finish a piece: {row.error} {row.error_detail}")
                    times.append(elapsed)
                    notes.append(len(row.notes_json))
                    label = "warm-up" if rep == 0 else f"{rep}/{reps}"
                    self.stdout.write(f"  service call {label}: {elapsed:.2f} s, {notes[-1]} notes")
        except DatabaseError as exc:
            raise CommandError(f"The database is not ready ({exc}); run `make migrate` first.") from exc
        finally:
            q_logger.setLevel(q_level)
            self._clean_up(user, started)
            shutil.rmtree(media, ignore_errors=True)
        return SiteSpeed(piece_seconds=seconds, style=style, model_path=used_model,
                         database=settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1],
                         warmup_seconds=times[0], seconds=times[1:], median_seconds=statistics.median(times[1:]),
                         notes=notes[1:])

    def _cold_start(self, model_path: Path, style: str, seconds: float, reps: int) -> ColdStart:
        """Both flows as fresh processes, one after the other; the seed writes as many notes as ours did."""
        from ml.audio.render import find_soundfont

        soundfont = find_soundfont(settings.SOUNDFONT_PATH or None)
        env = {**os.environ, "MUSIC_MODEL_PATH": str(model_path), "PYTHONDONTWRITEBYTECODE": "1"}
        ours: list[float] = []
        theirs: list[float] = []
        our_steps: list[dict[str, float]] = []
        seed_steps: list[dict[str, float]] = []
        notes: list[int] = []

        def run(command: list[str]) -> tuple[float, str]:
            start = time.perf_counter()
            result = subprocess.run(command, cwd=settings.BASE_DIR, env=env, capture_output=True, text=True,
                                    timeout=900)
            elapsed = time.perf_counter() - start
            if result.returncode != 0:
                raise CommandError(f"{' '.join(command[:4])} failed: {result.stderr[-2000:]}")
            return elapsed, result.stdout

        with tempfile.TemporaryDirectory(prefix="musicgen-cold-") as tmp:
            for rep in range(reps):
                compose = [sys.executable, "manage.py", "compose", "--style", style, "--seconds", f"{seconds:g}",
                           "--seed", str(rep), "--out", f"{tmp}/ours-{rep}.mp3", "--timings"]

                elapsed, out = run(compose)  # ours first: the seed then finds the files in the page cache too
                count = json.loads(out.split("TIMINGS ", 1)[1].splitlines()[0])["notes"]
                elapsed_seed, seed_out = run([
                    sys.executable, "-m", "ml.seed_flow", "--model", str(model_path), "--style", style,
                    "--notes", str(count), "--soundfont", str(soundfont), "--seed", str(rep),
                    "--out", f"{tmp}/seed-{rep}.mp3"])
                timings = json.loads(out.split("TIMINGS ", 1)[1].splitlines()[0])
                seed_report = json.loads(seed_out.strip().splitlines()[-1])
                ours.append(elapsed)
                theirs.append(elapsed_seed)
                notes.append(int(timings.pop("notes")))
                our_steps.append(timings)
                seed_steps.append(seed_report["steps"])
                self.stdout.write(f"  cold start {rep + 1}/{reps}: compose {elapsed:.2f} s ({notes[-1]} notes), "
                                  f"seed flow {elapsed_seed:.2f} s ({seed_report['notes']} notes)")

        def medians(rows: list[dict[str, float]]) -> dict[str, float]:
            return {key: round(statistics.median(row[key] for row in rows), 3) for key in rows[0]}

        return ColdStart(piece_seconds=seconds, style=style, compose_seconds=ours, seed_seconds=theirs,
                         ratio=statistics.median(t / o for t, o in zip(theirs, ours)),
                         compose_breakdown=medians(our_steps), seed_breakdown=medians(seed_steps), notes=notes)

    def _clean_up(self, user: Any, started: datetime.datetime) -> None:
        """Delete the user (its compositions cascade) and the task results django-q2 saved for them."""
        if user is None:
            return
        from django_q.models import Task

        ids = set(CompositionVersion.objects.filter(composition__user=user).values_list("id", flat=True))
        ours = [task.id for task in Task.objects.filter(func__in=(TASK_FUNC, FOLLOW_UP_TASK), started__gte=started)
                if task.args and task.args[0] in ids]
        Task.objects.filter(id__in=ours).delete()
        user.delete()

    def _machine(self, model: Any) -> dict[str, Any]:
        import keras
        import tensorflow as tf

        return {
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "cpu_count": os.cpu_count(),
            "load_average": list(os.getloadavg()),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "model_path": str(model.path),
            "untrained_weights": model.untrained,
            "window": model.window,
            "lstm_units": model.lstm_units,
            "lstm_layers": model.lstm_layers,
        }
