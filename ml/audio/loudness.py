"""Loudness: bring a rendered piece to a target integrated loudness under a true-peak ceiling, and
measure the encoded file as a listener's player would.

    gain = gain_for(audio, rate, target=-14.0)
    encode_mp3_stream(limited_blocks(audio, rate, gain_db=gain, ceiling=-1.0), Path("piece.mp3"), sample_rate=rate)
    measure(Path("piece.mp3"))  # Loudness(integrated=-14.0, true_peak=-1.3, range=4.1)

(`normalise` does the same in one piece for a WAV file.)

The normaliser reads the loudness with pyloudnorm (ITU-R BS.1770-4 gating, K-weighting) and
estimates true peaks by 4x oversampling; where the gain would push a peak past the ceiling, a
look-ahead limiter lowers those moments alone. `measure` asks ffmpeg's `ebur128` filter about the
MP3 itself, so that the figure a piece stores is the encoded file's, not the normaliser's own
belief. One gain serves the whole piece: a crescendo keeps its shape.
"""

from __future__ import annotations

import math
import re
import subprocess
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# EBU R 128 / streaming practice: -14 LUFS for normal listening, a true peak of at most -1 dBTP.
MEDIUM_LUFS = -14.0
SOFT_LUFS = -20.0
LOUD_LUFS = -11.0
CEILING_DBTP = -1.0
# The MP3 encoder's filter moves peaks by a few tenths of a dB: the limiter aims this much lower.
ENCODER_MARGIN_DB = 0.7
OVERSAMPLE = 4
LIMITER_ATTACK_S = 0.005  # the gain starts falling this long before a peak
LIMITER_RELEASE_S = 0.08  # and recovers over about this long after it
CHUNK_FRAMES = 1 << 18  # oversampled a chunk at a time, to keep a 10-minute piece's memory small
PEAK_BLOCK = 4096  # frames; a block whose samples stay 4 dB under the ceiling is not oversampled
SCREEN_DB = 4.0


@dataclass(frozen=True)
class LoudnessTargets:
    """Integrated loudness per dynamics setting (LUFS) and the true-peak ceiling (dBTP)."""

    medium: float = MEDIUM_LUFS
    soft: float = SOFT_LUFS
    loud: float = LOUD_LUFS
    ceiling: float = CEILING_DBTP

    def __post_init__(self) -> None:
        for name in ("medium", "soft", "loud", "ceiling"):
            value = getattr(self, name)
            if not (math.isfinite(value) and -70.0 <= value <= 0.0):
                raise ValueError(f"Loudness {name} must be between -70 and 0 (LUFS or dBTP), not {value!r}.")
        if not self.soft <= self.medium <= self.loud:
            raise ValueError("Loudness targets must run soft <= medium <= loud.")

    def for_dynamics(self, dynamics: str) -> float:
        """The target of a piece played `dynamics`: crescendo and diminuendo are measured over the
        whole piece, at the medium target."""
        return {"soft": self.soft, "loud": self.loud}.get(dynamics, self.medium)


@dataclass(frozen=True)
class Loudness:
    integrated: float  # LUFS
    true_peak: float  # dBTP
    range: float  # LU (EBU loudness range)

    def to_dict(self) -> dict[str, float]:
        return {"integrated_lufs": round(self.integrated, 2), "true_peak_dbtp": round(self.true_peak, 2),
                "range_lu": round(self.range, 2)}


class LoudnessError(RuntimeError):
    """The audio could not be measured; the message is meant for the user."""


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """16-bit PCM as float32 frames x channels in -1..1, and the sample rate."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path} is not 16-bit PCM.")
        rate, channels = wav.getframerate(), wav.getnchannels()
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    return (data.reshape(-1, channels).astype(np.float32) / 32768.0), rate


def write_wav(path: Path, audio: np.ndarray, rate: int) -> None:
    pcm = np.clip(np.round(audio * 32768.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(audio.shape[1])
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm.tobytes())


def integrated_loudness(audio: np.ndarray, rate: int) -> float:
    """BS.1770 integrated loudness in LUFS (-inf for silence or under 0.4 s of audio)."""
    import pyloudnorm

    if len(audio) < 0.4 * rate or not np.any(audio):
        return -math.inf
    return float(pyloudnorm.Meter(rate).integrated_loudness(audio))


def peak_envelope(audio: np.ndarray, floor: float = 0.0) -> np.ndarray:
    """Per frame, the largest magnitude of any channel between it and the next frame, oversampled
    4x (the inter-sample peaks a player's converter makes). Stretches whose samples stay under
    `floor` keep their sample peaks: an inter-sample peak rises at most about 3 dB above them, so
    a floor 4 dB under a ceiling leaves nothing near it unexamined, and quiet music costs nothing."""
    from scipy.signal import resample_poly

    margin = 64
    out = _largest(np.abs(audio))
    if not len(out):
        return out
    loud = np.flatnonzero(np.maximum.reduceat(out, np.arange(0, len(out), PEAK_BLOCK)) >= floor)
    # Runs of consecutive loud blocks, each oversampled in one call (at most CHUNK_FRAMES at a time).
    runs: list[tuple[int, int]] = []
    for block in loud.tolist():
        first, last = block * PEAK_BLOCK, min(len(out), (block + 1) * PEAK_BLOCK)
        if runs and runs[-1][1] == first and last - runs[-1][0] <= CHUNK_FRAMES:
            runs[-1] = (runs[-1][0], last)
        else:
            runs.append((first, last))
    for first, last in runs:
        lo, hi = max(0, first - margin), min(len(out), last + margin)
        upsampled = _largest(np.abs(resample_poly(audio[lo:hi], OVERSAMPLE, 1, axis=0)))
        chunk = upsampled[(first - lo) * OVERSAMPLE:(last - lo) * OVERSAMPLE]
        out[first:last] = np.maximum(out[first:last], _largest(chunk.reshape(-1, OVERSAMPLE)))
    return out


def _largest(table: np.ndarray) -> np.ndarray:
    """The largest value of each row (a column at a time: numpy's max over a short last axis is slow)."""
    out = table[:, 0].copy()
    for column in range(1, table.shape[1]):
        np.maximum(out, table[:, column], out=out)
    return out


def _limiter_frames(rate: int) -> tuple[int, int]:
    """The limiter's attack and release, in frames."""
    attack = max(1, round(LIMITER_ATTACK_S * rate))
    return attack, max(attack, round(LIMITER_RELEASE_S * rate))


def limit(audio: np.ndarray, rate: int, ceiling_db: float) -> np.ndarray:
    """`audio` with its true peaks held under `ceiling_db`: a smooth gain that starts falling
    LIMITER_ATTACK_S before each peak and recovers over LIMITER_RELEASE_S (untouched where no
    peak comes near the ceiling)."""
    from scipy.ndimage import minimum_filter1d, uniform_filter1d

    ceiling = 10 ** (ceiling_db / 20)
    envelope = peak_envelope(audio, floor=ceiling * 10 ** (-SCREEN_DB / 20))
    if envelope.max() <= ceiling:
        return audio
    need = np.minimum(1.0, ceiling / np.maximum(envelope, 1e-9))
    attack, release = _limiter_frames(rate)
    # Each frame's gain is at most the least gain needed within reach of the two smoothing passes,
    # so that after smoothing every peak is still under the ceiling.
    reach = attack + release
    gain = minimum_filter1d(need, size=2 * reach + 1, mode="nearest")
    gain = uniform_filter1d(uniform_filter1d(gain, size=2 * attack + 1, mode="nearest"),
                            size=2 * release + 1, mode="nearest")
    gain = np.minimum(gain, need)  # the last safety: never above what a frame itself needs
    return (audio * gain[:, None]).astype(np.float32)


def normalise(audio: np.ndarray, rate: int, *, target: float, ceiling: float) -> np.ndarray:
    """`audio` at `target` LUFS with its true peaks under `ceiling` dBTP (less ENCODER_MARGIN_DB).

    One gain for the whole piece, then the limiter; where limiting took more than 0.3 dB of the
    piece's energy (it seldom does: it touches moments), the loudness is measured again and the
    gain raised, and the piece limited again (at most three times). Silence is left as it is.
    """
    measured = integrated_loudness(audio, rate)
    if not math.isfinite(measured):
        return audio
    gain_db = target - measured
    result = audio
    for _ in range(3):
        gained = (audio * 10 ** (gain_db / 20)).astype(np.float32)
        result = limit(gained, rate, ceiling - ENCODER_MARGIN_DB)
        if result is gained:  # nothing came near the ceiling: the gain alone hit the target
            break
        lost = 10 * math.log10(float(np.mean(np.square(result, dtype=np.float64))) /
                               max(float(np.mean(np.square(gained, dtype=np.float64))), 1e-20))
        if lost > -0.3:
            break
        now = integrated_loudness(result, rate)  # a real loss: measure it, as gating weighs it
        if not math.isfinite(now) or abs(now - target) < 0.3:
            break
        gain_db += target - now
    return result


def gain_for(audio: np.ndarray, rate: int, target: float) -> float:
    """The gain (dB) that brings `audio` to `target` LUFS; 0 for silence."""
    measured = integrated_loudness(audio, rate)
    return target - measured if math.isfinite(measured) else 0.0


def limited_blocks(audio: np.ndarray, rate: int, *, gain_db: float, ceiling: float = CEILING_DBTP,
                   block_frames: int = 1 << 18) -> Iterator[np.ndarray]:
    """`audio` with `gain_db` applied and limited as `limit` does, as 16-bit blocks in order, each
    limited with enough of its neighbours around it that the result is the whole piece's (the
    limiter looks LIMITER_ATTACK_S + LIMITER_RELEASE_S either way, twice). For encoding while the next
    block is made."""
    margin = 2 * sum(_limiter_frames(rate)) + 2 * PEAK_BLOCK
    scale = np.float32(10 ** (gain_db / 20))
    for first in range(0, len(audio), block_frames):
        last = min(len(audio), first + block_frames)
        lo, hi = max(0, first - margin), min(len(audio), last + margin)
        done = limit(audio[lo:hi] * scale, rate, ceiling - ENCODER_MARGIN_DB)[first - lo:last - lo]
        yield np.clip(np.round(done * 32768.0), -32768, 32767).astype("<i2")


_SUMMARY = {
    "integrated": re.compile(r"I:\s+(-?[\d.]+|-inf)\s+LUFS"),
    "range": re.compile(r"LRA:\s+(-?[\d.]+|-inf)\s+LU\b"),
    "true_peak": re.compile(r"Peak:\s+(-?[\d.]+|-inf)\s+dBFS"),
}


def measure(path: Path, *, timeout: float = 60.0) -> Loudness:
    """The integrated loudness, true peak and loudness range of an audio file, by ffmpeg's ebur128
    (the ffmpeg that encodes: pydub's configured converter)."""
    from ml.audio.render import RenderError, ffmpeg_path

    try:
        ffmpeg = ffmpeg_path()
    except RenderError as exc:
        raise LoudnessError(str(exc)) from exc
    command = [ffmpeg, "-nostdin", "-hide_banner", "-nostats", "-i", str(path),
               "-af", "ebur128=peak=true", "-f", "null", "-"]
    try:
        result = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LoudnessError(f"The loudness could not be measured: {exc}") from exc
    text = result.stderr.decode(errors="replace")
    summary = text[text.rfind("Summary:"):] if "Summary:" in text else ""
    values = {}
    for name, pattern in _SUMMARY.items():
        found = pattern.search(summary)
        if result.returncode != 0 or found is None:
            raise LoudnessError(f"The loudness could not be measured ({path.name}).")
        values[name] = float(found.group(1))
    return Loudness(**values)
