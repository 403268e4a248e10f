"""Speed benchmarks of generation and rendering, measured side by side on the same weights.

The machine a benchmark runs on is noisy (two cores, other jobs), so every comparison here
interleaves its contenders repetition by repetition and reports medians and ratios: a ratio
measured in one run survives noise that absolute numbers do not.

- `engine_speed`: the engine (`Generator.generate`, warm) against a naive loop that calls
  `model.predict` once per note, on the same window and the same number of notes.
- `variation_speed`: notes per second with one variation and with four in one batch.
- `render_speed`: FluidSynth rendering of a generated piece as a multiple of real time, and
  the MP3 encoding time.

`python -m ml.bench` prints all three; `manage.py bench` adds the site's end-to-end time and
writes bench/results.json.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_MODEL = Path(__file__).parent / "pretrained" / "default.keras"


@dataclass(frozen=True)
class BenchOptions:
    """How much work each measurement does.

    Attributes:
        notes: Notes per variation in each engine and naive run.
        reps: Repetitions of each measurement; medians are reported.
        render_seconds: Length of the generated piece that is rendered.
    """

    notes: int = 200
    reps: int = 5
    render_seconds: float = 60.0

    @classmethod
    def quick(cls) -> BenchOptions:
        return cls(notes=48, reps=2, render_seconds=20.0)

    def __post_init__(self) -> None:
        if not 8 <= self.notes <= 4000:
            raise ValueError("notes must be between 8 and 4000.")
        if self.reps < 1:
            raise ValueError("reps must be at least 1.")
        if not 5 <= self.render_seconds <= 600:
            raise ValueError("render_seconds must be between 5 and 600.")


@dataclass
class ModelUnderTest:
    path: Path
    untrained: bool  # weights built at random because no trained model exists; speed is the same
    style: str
    window: int
    lstm_units: int
    lstm_layers: int
    load_seconds: float  # reading the .keras file and building the model, once per process


@dataclass
class EngineSpeed:
    notes: int  # per run, for both contenders
    window: int
    compile_seconds: float  # the engine's first call for batch size 1: tracing and XLA compilation
    engine_seconds: list[float]
    naive_seconds: list[float]
    engine_notes_per_second: float  # from the median run
    naive_notes_per_second: float
    speedup: float  # median of the per-repetition ratios naive / engine


@dataclass
class VariationSpeed:
    notes_per_variation: int
    compile_seconds_4: float  # first call for batch size 4
    seconds_1: list[float]
    seconds_4: list[float]
    notes_per_second_1: float
    notes_per_second_4_total: float  # all four variations together
    notes_per_second_4_each: float
    batch_gain: float  # total notes/s with 4 over notes/s with 1


@dataclass
class RenderSpeed:
    piece_seconds: float  # requested length of the generated piece
    notes: int
    audio_seconds: float  # the rendered audio's length, with its tail
    soundfont: str
    soundfont_load_seconds: float  # first render minus a warm one: loading the SoundFont
    render_seconds: list[float]
    encode_seconds: list[float]
    realtime_multiple: float  # audio seconds per wall second, median render
    encode_median_seconds: float
    normalise_median_seconds: float = 0.0  # loudness to its target under the true-peak ceiling
    normalise_and_encode_median_seconds: float = 0.0  # both, overlapped as the pipeline runs them
    measure_median_seconds: float = 0.0  # ffmpeg ebur128 on the MP3
    engrave_seconds: float = 0.0  # the score (MusicXML and SVG) in a child process, as the worker does
    score_bars: int = 0


def median(values: list[float]) -> float:
    return float(statistics.median(values))


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    """`with stopwatch() as t: ...` leaves the elapsed seconds in t[0]."""
    out: list[float] = []
    start = time.perf_counter()
    try:
        yield out
    finally:
        out.append(time.perf_counter() - start)


def resolve_model(explicit: Path | None, scratch: Path) -> tuple[Path, bool]:
    """The model to measure: `explicit`, else ml/pretrained/default.keras, else an untrained one.

    Args:
        explicit: A .keras file chosen by the caller; it must exist.
        scratch: Folder where an untrained model is saved when no trained one exists.

    Returns:
        The model path and whether its weights are untrained.
    """
    if explicit is not None:
        if not Path(explicit).is_file():
            raise ValueError(f"The model file {explicit} does not exist.")
        return Path(explicit), False
    if DEFAULT_MODEL.is_file():
        return DEFAULT_MODEL, False
    from ml.data.datasets import CORPUS_STYLES
    from ml.model.network import build_model, save_model
    from ml.model.train import default_config

    path = Path(scratch) / "untrained.keras"
    save_model(build_model(default_config(list(CORPUS_STYLES))), path)
    return path, True


def load_model_under_test(path: Path, untrained: bool) -> tuple[ModelUnderTest, Any]:
    """Load the generator once; every benchmark shares it (and so its compiled steps)."""
    from ml.generation.generator import Generator

    generator = Generator(path)
    with stopwatch() as t:
        generator.load()
    c = generator.config
    info = ModelUnderTest(path=path, untrained=untrained, style=c.styles[0], window=c.window,
                          lstm_units=c.lstm_units, lstm_layers=c.lstm_layers, load_seconds=t[0])
    return info, generator


def _request(style: str, *, notes: int | None = None, seconds: float | None = None, variations: int = 1,
             seed: int = 0) -> Any:
    from ml.generation.request import GenerationRequest

    return GenerationRequest(style=style, notes=notes, seconds=seconds, variations=variations, seed=seed)


def _time_generate(generator: Any, request: Any) -> float:
    with stopwatch() as t:
        generator.generate(request)
    return t[0]


class NaiveLoop:
    """The textbook loop: one `model.predict` on the full model per note, sampling on the host.

    It feeds the whole window and `next_step` (the step it sampled for the previous note) to
    the model's `call`, so it reads pitch, duration and velocity from the same call that
    predicts the next step, as a single-call generator must.
    """

    def __init__(self, model_path: Path, style: str) -> None:
        from ml.model.network import dummy_inputs, load_model

        self.model = load_model(model_path)  # its own copy of the same weights
        self.config = self.model.config
        self.inputs = dummy_inputs(self.config, batch=1)
        self.inputs["style"][:] = self.config.style_index(style)
        self.model.predict(self.inputs, verbose=0)  # builds Keras' predict function: not timed

    def run(self, notes: int, seed: int) -> float:
        from ml.generation.sampler import sample as _sample  # the engine's own sampler, so the host work matches

        rng = np.random.default_rng(seed)
        inputs = {k: v.copy() for k, v in self.inputs.items()}
        time_mask = np.ones(self.config.time_classes, dtype=bool)
        pitch_mask = np.ones(128, dtype=bool)
        with stopwatch() as t:
            for _ in range(notes):
                out = self.model.predict(inputs, verbose=0)
                step = _sample(out["step"][0], time_mask, 1.0, 0, 1.0, rng)
                pitch = _sample(out["pitch"][0], pitch_mask, 1.0, 0, 1.0, rng)
                duration = _sample(out["duration"][0], time_mask, 1.0, 0, 1.0, rng)
                note = {"pitch": pitch, "step": inputs["next_step"][0], "duration": duration,
                        "velocity": float(out["velocity"][0, 0])}
                for key, value in note.items():
                    inputs[key] = np.concatenate([inputs[key][:, 1:], np.array([[value]], inputs[key].dtype)], 1)
                inputs["next_step"][0] = step
        return t[0]


def engine_speed(generator: Any, model: ModelUnderTest, options: BenchOptions,
                 progress: Callable[[str], None] = print) -> EngineSpeed:
    """Warm engine vs the naive predict loop, interleaved, on the same weights and window."""
    compile_seconds = _time_generate(generator, _request(model.style, notes=8))
    naive = NaiveLoop(model.path, model.style)
    engine_runs: list[float] = []
    naive_runs: list[float] = []
    for rep in range(options.reps):
        engine_runs.append(_time_generate(generator, _request(model.style, notes=options.notes, seed=rep)))
        naive_runs.append(naive.run(options.notes, seed=rep))
        progress(f"  engine vs naive {rep + 1}/{options.reps}: {engine_runs[-1]:.2f} s vs {naive_runs[-1]:.2f} s")
    return EngineSpeed(
        notes=options.notes, window=model.window, compile_seconds=compile_seconds,
        engine_seconds=engine_runs, naive_seconds=naive_runs,
        engine_notes_per_second=options.notes / median(engine_runs),
        naive_notes_per_second=options.notes / median(naive_runs),
        speedup=median([n / e for n, e in zip(naive_runs, engine_runs)]))


def variation_speed(generator: Any, model: ModelUnderTest, options: BenchOptions,
                    progress: Callable[[str], None] = print) -> VariationSpeed:
    """Notes per second with one variation and with four, interleaved."""
    compile_4 = _time_generate(generator, _request(model.style, notes=8, variations=4))
    _time_generate(generator, _request(model.style, notes=8))  # batch size 1 is compiled, make sure
    runs_1: list[float] = []
    runs_4: list[float] = []
    for rep in range(options.reps):
        runs_1.append(_time_generate(generator, _request(model.style, notes=options.notes, seed=rep)))
        runs_4.append(_time_generate(generator, _request(model.style, notes=options.notes, variations=4, seed=rep)))
        progress(f"  1 vs 4 variations {rep + 1}/{options.reps}: {runs_1[-1]:.2f} s vs {runs_4[-1]:.2f} s")
    n = options.notes
    per_1, total_4 = n / median(runs_1), 4 * n / median(runs_4)
    return VariationSpeed(
        notes_per_variation=n, compile_seconds_4=compile_4, seconds_1=runs_1, seconds_4=runs_4,
        notes_per_second_1=per_1, notes_per_second_4_total=total_4, notes_per_second_4_each=total_4 / 4,
        batch_gain=total_4 / per_1)


def render_speed(generator: Any, model: ModelUnderTest, options: BenchOptions, soundfont: Path | None = None,
                 progress: Callable[[str], None] = print) -> RenderSpeed:
    """Render a generated piece (times real time), bring it to -14 LUFS and encode it to MP3 as the
    pipeline does, repeatedly: the limiter and the encoder alone, and overlapped as the pipeline runs them."""
    import numpy as np

    from ml.audio.arrangement import arrange
    from ml.audio.loudness import gain_for, limited_blocks, measure
    from ml.audio.render import Renderer, encode_mp3_stream, find_soundfont
    from ml.audio.score import ScoreError, engrave_apart

    piece = generator.generate(_request(model.style, seconds=options.render_seconds, seed=7))[0]
    arrangement = arrange(piece.notes, style=model.style, key=piece.key, accompaniment=piece.accompaniment)
    midi = arrangement.to_midi()
    font = find_soundfont(soundfont)
    renderer = Renderer(font)
    rate = renderer.sample_rate
    renders: list[float] = []
    encodes: list[float] = []
    normalises: list[float] = []
    both: list[float] = []
    measures: list[float] = []
    try:
        with tempfile.TemporaryDirectory(prefix="musicgen-bench-") as tmp:
            mp3 = Path(tmp) / "piece.mp3"
            with stopwatch() as first:
                audio_seconds = len(renderer.render(midi)) / rate
            for rep in range(options.reps):
                with stopwatch() as t:
                    audio = renderer.render(midi).astype(np.float32) / 32768.0
                renders.append(t[0])
                with stopwatch() as t:
                    blocks = list(limited_blocks(audio, rate, gain_db=gain_for(audio, rate, -14.0)))
                normalises.append(t[0])
                with stopwatch() as t:
                    encode_mp3_stream(blocks, mp3, sample_rate=rate)
                encodes.append(t[0])
                with stopwatch() as t:
                    encode_mp3_stream(limited_blocks(audio, rate, gain_db=gain_for(audio, rate, -14.0)), mp3,
                                      sample_rate=rate)
                both.append(t[0])
                with stopwatch() as t:
                    measure(mp3)
                measures.append(t[0])
                progress(f"  render {rep + 1}/{options.reps}: {renders[-1]:.2f} s, loudness {normalises[-1]:.2f} s, "
                         f"mp3 {encodes[-1]:.2f} s, both overlapped {both[-1]:.2f} s, measured in {measures[-1]:.2f} s")
    finally:
        renderer.close()
    try:
        with stopwatch() as t:
            score = engrave_apart(arrangement, timeout=120)
        engrave_seconds, bars = t[0], score.bars
        progress(f"  score: {bars} bars engraved in {engrave_seconds:.2f} s")
    except ScoreError as exc:
        engrave_seconds, bars = float("nan"), 0
        progress(f"  score: none ({exc})")
    return RenderSpeed(
        piece_seconds=options.render_seconds, notes=len(piece.notes), audio_seconds=audio_seconds,
        soundfont=str(font), soundfont_load_seconds=max(0.0, first[0] - median(renders)),
        render_seconds=renders, encode_seconds=encodes, realtime_multiple=audio_seconds / median(renders),
        encode_median_seconds=median(encodes), normalise_median_seconds=median(normalises),
        normalise_and_encode_median_seconds=median(both), measure_median_seconds=median(measures),
        engrave_seconds=engrave_seconds, score_bars=bars)


@dataclass
class MlResults:
    model: ModelUnderTest
    engine: EngineSpeed
    variations: VariationSpeed
    render: RenderSpeed

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["model"]["path"] = str(self.model.path)
        return data


def run_ml_benchmarks(generator: Any, model: ModelUnderTest, options: BenchOptions,
                      soundfont: Path | None = None, progress: Callable[[str], None] = print) -> MlResults:
    progress(f"Engine vs naive predict loop ({options.notes} notes, {options.reps} reps)")
    engine = engine_speed(generator, model, options, progress)
    progress("One variation vs four")
    variations = variation_speed(generator, model, options, progress)
    progress(f"Rendering a {options.render_seconds:g}-s piece")
    render = render_speed(generator, model, options, soundfont, progress)
    return MlResults(model=model, engine=engine, variations=variations, render=render)


# -- report ---------------------------------------------------------------------------------------
@dataclass
class Row:
    measure: str
    value: str
    target: str = ""
    passed: bool | None = None  # None: no target


def ml_rows(results: MlResults) -> list[Row]:
    e, v, r = results.engine, results.variations, results.render
    return [
        Row("model load (once per process)", f"{results.model.load_seconds:.2f} s"),
        Row("engine first call: trace + XLA compile", f"{e.compile_seconds:.2f} s"),
        Row("engine, warm", f"{e.engine_notes_per_second:,.0f} notes/s"),
        Row("naive model.predict loop", f"{e.naive_notes_per_second:,.1f} notes/s"),
        Row("engine speed-up over naive", f"{e.speedup:.1f}x", ">= 25x", e.speedup >= 25),
        Row("1 variation", f"{v.notes_per_second_1:,.0f} notes/s"),
        Row("4 variations, total", f"{v.notes_per_second_4_total:,.0f} notes/s"),
        Row("4 variations, each", f"{v.notes_per_second_4_each:,.0f} notes/s"),
        Row("batch gain (4 total / 1)", f"{v.batch_gain:.2f}x"),
        Row(f"render WAV ({r.audio_seconds:.0f} s audio, {r.notes} notes)", f"{r.realtime_multiple:.0f}x real time"),
        Row("SoundFont load (first render)", f"{r.soundfont_load_seconds:.2f} s"),
        Row("loudness: normalise to -14 LUFS, true peak -1 dBTP", f"{r.normalise_median_seconds:.2f} s"),
        Row("MP3 encode", f"{r.encode_median_seconds:.2f} s"),
        Row("loudness and MP3 encode, overlapped (the pipeline)", f"{r.normalise_and_encode_median_seconds:.2f} s"),
        Row("loudness: ffmpeg ebur128 on the MP3", f"{r.measure_median_seconds:.2f} s"),
        Row(f"score: engrave {r.score_bars} bars (a task after the MP3)", f"{r.engrave_seconds:.2f} s"),
    ]


def format_table(rows: list[Row]) -> str:
    marks = {True: "PASS", False: "FAIL", None: ""}
    header = ("measure", "value", "target", "")
    table = [header] + [(r.measure, r.value, r.target, marks[r.passed]) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Benchmark generation and rendering speed.")
    parser.add_argument("--model", type=Path, help=f"a .keras note model (default {DEFAULT_MODEL})")
    parser.add_argument("--quick", action="store_true", help="fewer notes and repetitions (smoke run)")
    parser.add_argument("--soundfont", type=Path)
    args = parser.parse_args(argv)
    options = BenchOptions.quick() if args.quick else BenchOptions()
    with tempfile.TemporaryDirectory(prefix="musicgen-bench-") as scratch:
        path, untrained = resolve_model(args.model, Path(scratch))
        model, generator = load_model_under_test(path, untrained)
        print(f"Model {path}{' (untrained weights)' if untrained else ''}: window {model.window}, "
              f"{model.lstm_layers}x{model.lstm_units} BiLSTM")
        results = run_ml_benchmarks(generator, model, options, args.soundfont)
    print()
    print(format_table(ml_rows(results)))


if __name__ == "__main__":
    main()
