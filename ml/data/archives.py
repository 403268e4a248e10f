"""Untrusted zip files of MIDI files (data sets uploaded in the admin): extracted only within caps.

A zip can lie: its directory claims sizes, names can climb out of the target folder (`../`,
absolute paths, symlinks), and a few kilobytes can inflate to gigabytes. Members are streamed
with a byte budget (the declared size is not trusted), only `.mid`/`.midi` files are written,
under fresh names inside the target, and each is scanned by `ml.data.midi_check` before it is kept.
"""

from __future__ import annotations

import stat
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ml.data.midi_check import MidiLimits, scan_midi
from ml.data.notes import MidiError

MIDI_SUFFIXES = (".mid", ".midi")
# A training file may be longer than a primer a user continues.
DATASET_MIDI_LIMITS = MidiLimits(max_bytes=4 * 1024 * 1024)


@dataclass(frozen=True)
class ZipLimits:
    max_members: int = 5000
    max_member_bytes: int = 4 * 1024 * 1024
    max_total_bytes: int = 500 * 1024 * 1024
    max_ratio: float = 200.0  # uncompressed / compressed, per member: beyond this it is a bomb


class ArchiveError(ValueError):
    """The zip as a whole is refused (not a zip, too many members, too large in all)."""


@dataclass
class ExtractReport:
    extracted: list[str] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, object]:
        return {"extracted": len(self.extracted), "skipped": dict(self.skipped)}


def _unsafe_name(name: str) -> str | None:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and path.parts[0].endswith(":")):
        return "path outside the archive"
    return None


def extract_midi_zip(archive: Path, target: Path, limits: ZipLimits = ZipLimits(),
                     midi_limits: MidiLimits = DATASET_MIDI_LIMITS) -> ExtractReport:
    """Write the acceptable MIDI files of `archive` into `target` (created); say why others were skipped.

    Raises:
        ArchiveError: the file is not a zip, or breaks a limit for the archive as a whole.
    """
    try:
        bundle = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArchiveError("This is not a zip file.") from exc
    report = ExtractReport()
    target.mkdir(parents=True, exist_ok=True)
    total = 0
    with bundle:
        members = bundle.infolist()
        if len(members) > limits.max_members:
            raise ArchiveError(f"The zip holds {len(members)} files; at most {limits.max_members} are accepted.")
        for index, member in enumerate(members):
            if member.is_dir():
                continue
            reason = _unsafe_name(member.filename)
            if reason is None and stat.S_ISLNK(member.external_attr >> 16):
                reason = "symbolic link"
            if reason is None and not member.filename.lower().endswith(MIDI_SUFFIXES):
                reason = "not a MIDI file"
            if reason is None and member.flag_bits & 0x1:
                reason = "encrypted"
            if reason is None and member.file_size > limits.max_member_bytes:
                reason = "too large"
            if reason is None and member.compress_size and member.file_size / member.compress_size > limits.max_ratio:
                reason = "compressed too well (a zip bomb?)"
            if reason is not None:
                report.skipped[reason] += 1
                continue
            # The declared size may lie: read at most one byte past the cap.
            with bundle.open(member) as stream:
                data = stream.read(limits.max_member_bytes + 1)
            if len(data) > limits.max_member_bytes:
                report.skipped["too large"] += 1
                continue
            total += len(data)
            if total > limits.max_total_bytes:
                raise ArchiveError(f"The zip unpacks to more than {limits.max_total_bytes // (1024 * 1024)} MB.")
            try:
                scan_midi(data, midi_limits)
            except MidiError as exc:
                report.skipped[f"refused: {exc}"] += 1
                continue
            # A fresh name inside the target: nothing in the archive chooses where it lands.
            name = f"{index:05d}-{PurePosixPath(member.filename).stem[:60]}.mid"
            (target / name).write_bytes(data)
            report.extracted.append(name)
    return report
