"""Untrusted MIDI: hostile files are refused with a reason before parsing; ordinary ones are read."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml.data.midi_check import MidiLimits, parse_midi_isolated, scan_midi
from ml.data.notes import MidiError
from tests.ml.hostile_midi import END, NOTES, header, hostile_files, long_but_allowed, ordinary, real_files, track

HOSTILE = hostile_files()
REAL = real_files()


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_file_is_refused_by_the_scan_with_a_reason(name: str) -> None:
    data, words = HOSTILE[name]
    with pytest.raises(MidiError, match=words):
        scan_midi(data, MidiLimits(max_bytes=2 * 1024 * 1024))


def test_a_file_over_the_size_cap_is_refused_before_anything_else() -> None:
    with pytest.raises(MidiError, match="larger than 1 MB"):
        scan_midi(ordinary() + b"\0" * (1024 * 1024))


@pytest.mark.parametrize("name", list(REAL))
def test_real_files_are_parsed_in_the_sandbox_without_their_drums(name: str) -> None:
    notes, summary = parse_midi_isolated(REAL[name])
    assert len(notes) == 8 if "hand" not in name else len(notes) == 2
    assert summary.notes >= len(notes)  # the scan counts drum hits too
    assert 0 < summary.seconds < 10


def test_the_sandbox_reports_the_parsers_own_refusal() -> None:
    drums_only = header() + track(b"\x00\x99\x24\x40\x83\x60\x89\x24\x00" + END)
    with pytest.raises(MidiError, match="only drums"):
        parse_midi_isolated(drums_only)


def test_the_sandbox_refuses_a_parse_that_needs_more_memory_than_it_may_have() -> None:
    assert len(parse_midi_isolated(long_but_allowed())[0]) == 1
    with pytest.raises(MidiError, match="memory"):
        parse_midi_isolated(long_but_allowed(), MidiLimits(parse_memory_mb=2))


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_notes"):
        MidiLimits(max_notes=0)


# `FUZZ_EXAMPLES=20000 make test PYTEST_ARGS=tests/ml/test_midi_check.py` for a longer search.
FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "400"))


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=512))
def test_fuzz_random_bytes_after_a_midi_header_raise_only_midi_error(tail: bytes) -> None:
    try:
        scan_midi(header() + tail)
    except MidiError:
        pass


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(st.data())
def test_fuzz_mutated_real_files_raise_only_midi_error(data: st.DataObject) -> None:
    original = bytearray(data.draw(st.sampled_from([*REAL.values(), ordinary()])))
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(original) - 1))
        original[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(original)))
    try:
        scan_midi(bytes(original[:cut]))
    except MidiError:
        pass


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_fuzz_whatever_the_scan_accepts_the_sandbox_reads_or_refuses_cleanly(data: st.DataObject) -> None:
    original = bytearray(data.draw(st.sampled_from(list(REAL.values()))))
    for _ in range(data.draw(st.integers(1, 4))):
        original[data.draw(st.integers(14, len(original) - 1))] = data.draw(st.integers(0, 255))
    try:
        scan_midi(bytes(original))
    except MidiError:
        return
    try:
        parse_midi_isolated(bytes(original))
    except MidiError:
        pass


def test_note_count_is_capped_before_parsing() -> None:
    with pytest.raises(MidiError, match="more than 3 notes"):
        scan_midi(header() + track(NOTES + END), MidiLimits(max_notes=3))
