"""Real use of a whole site: concurrent users, uploads in a row, and workers that die.

Each backend gets one site for the module: gunicorn in front, `qcluster` with two workers
behind, on SQLite with the ORM broker (what `make run` starts) and on PostgreSQL with Redis.
"""

from __future__ import annotations

import io
import os
import signal
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import mido
import pytest
import requests

from tests.live import LiveSite, form_post, live_site, postgres_and_redis_answer

pytestmark = [pytest.mark.live]

BACKENDS = [
    pytest.param("sqlite", id="sqlite-orm"),
    pytest.param(
        "postgres", id="postgres-redis",
        marks=pytest.mark.skipif(not postgres_and_redis_answer(), reason="PostgreSQL or Redis is not running"),
    ),
]


@pytest.fixture(scope="module", params=BACKENDS)
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_model_path: Path,
         ) -> Iterator[LiveSite]:
    with live_site(
        tmp_path_factory.mktemp(f"live-{request.param}"), backend=request.param, model_path=tiny_model_path,
        # Users here send more at once than the default quota allows; the quota has its own tests.
        QUOTA_ACTIVE_PIECES="40", Q_HEARTBEAT_SECONDS="2", Q_STALL_SECONDS="8", Q_ORPHAN_SECONDS="20",
    ) as live:
        yield live


@pytest.fixture(scope="module")
def style(tiny_model_path: Path) -> str:
    from ml.model.config import read_model_info

    return str(read_model_info(tiny_model_path)["config"].styles[0])


def _assert_done_once_with_files(site: LiveSite, rows: list[dict[str, Any]]) -> None:
    problems = [(r["id"], r["status"], r["error"], r["error_detail"]) for r in rows if r["status"] != "done"]
    assert not problems, f"{problems}\n{site.log('cluster')}"
    assert all(row["attempts"] == 1 for row in rows), [row["attempts"] for row in rows]
    for row in rows:
        for name in (row["midi_file"], row["mp3_file"]):
            assert (site.media / name).stat().st_size > 0


def _mp3_files(site: LiveSite) -> set[str]:
    folder = site.media / "mp3"
    return {f"mp3/{path.name}" for path in folder.iterdir()} if folder.exists() else set()


def test_twenty_requests_from_five_users_at_once_through_api_and_form_all_end_done_exactly_once(
        site: LiveSite, style: str) -> None:
    users = [f"crowd{i}" for i in range(5)]
    site.add_users(users)
    apis = {name: site.api(name) for name in users}
    browsers = {name: site.browser(name) for name in users}

    def send(index: int) -> int:
        name = users[index % 5]
        params: dict[str, Any] = {"style": style, "seconds": 5, "seed": index}
        if index % 2:
            return apis[name].post(site.url + "/api/compositions/", json=params, timeout=60).status_code
        return form_post(browsers[name], site.url + "/compositions/new/", params).status_code

    before = _mp3_files(site)
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(send, range(20)))
    assert sorted(answers) == [202] * 10 + [302] * 10

    rows = site.wait_until_finished(20, timeout=300, usernames=users)
    assert len(rows) == 20
    _assert_done_once_with_files(site, rows)
    # Exactly once: one MP3 per piece, none written twice under another name.
    assert _mp3_files(site) - before == {row["mp3_file"] for row in rows}


def _midi(kind: int) -> bytes:
    """Ordinary MIDI files of the kinds people have: type 0 and 1, tempo changes, drums alongside."""
    mid = mido.MidiFile(type=0 if kind % 4 == 0 else 1, ticks_per_beat=(96, 240, 480, 960)[kind % 4])
    tempo = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(90 + kind * 3), time=0)])
    tune = mido.MidiTrack([mido.Message("program_change", program=kind % 8, time=0)])
    drums = mido.MidiTrack()
    beat = mid.ticks_per_beat
    for i in range(12):
        pitch = 60 + (i * 5 + kind) % 12
        tune.append(mido.Message("note_on", note=pitch, velocity=70 + i, time=0 if i == 0 else 0))
        tune.append(mido.Message("note_off", note=pitch, velocity=0, time=beat // 2))
        drums.append(mido.Message("note_on", channel=9, note=36, velocity=90, time=0))
        drums.append(mido.Message("note_on", channel=9, note=36, velocity=0, time=beat // 2))
        if kind % 3 == 0 and i == 6:
            tempo.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(70), time=beat * 6))
    if mid.type == 0:
        merged = mido.merge_tracks([tempo, tune] + ([drums] if kind % 2 else []))
        mid.tracks.append(merged)
    else:
        mid.tracks.extend([tempo, tune] + ([drums] if kind % 2 else []))
    buffer = io.BytesIO()
    mid.save(file=buffer)  # mido writes running status where it can
    return buffer.getvalue()


def test_twenty_uploads_one_after_another_all_end_done_with_their_primer(site: LiveSite, style: str) -> None:
    site.add_users(["uploader"])
    api = site.api("uploader")
    for kind in range(20):
        response = api.post(
            site.url + "/api/compositions/", data={"style": style, "seconds": 6, "seed": kind},
            files={"primer": (f"tune{kind}.mid", _midi(kind), "audio/midi")}, timeout=60,
        )
        assert response.status_code == 202, (kind, response.text)
    rows = site.wait_until_finished(20, timeout=300, usernames=["uploader"])
    assert len(rows) == 20
    _assert_done_once_with_files(site, rows)
    assert all(row["primer_file"] for row in rows)


def _wait_for(site: LiveSite, username: str, predicate: Any, timeout: float = 120) -> list[dict[str, Any]]:
    """The user's rows once `predicate(rows)` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = site.compositions([username])
        if rows and predicate(rows):
            return rows
        time.sleep(0.2)
    raise AssertionError(f"timed out; rows: {site.compositions([username])}\n{site.log('cluster')}")


def _last_is_generating(rows: list[dict[str, Any]]) -> bool:
    return bool(rows[-1]["status"] == "generating" and rows[-1]["progress"] >= 5)


def test_a_worker_killed_in_the_middle_of_a_piece_is_replaced_and_the_piece_ends_done_once(
        site: LiveSite, style: str) -> None:
    site.add_users(["victim"])
    response = site.api("victim").post(
        site.url + "/api/compositions/", json={"style": style, "notes": 600, "seed": 7}, timeout=60
    )
    assert response.status_code == 202
    row = _wait_for(site, "victim", _last_is_generating)[-1]
    pid = int(row["claimed_by"].rsplit(":", 1)[1])
    before = _mp3_files(site)
    os.kill(pid, signal.SIGKILL)

    [row] = site.wait_until_finished(1, timeout=300, usernames=["victim"])
    assert row["status"] == "done", (row, site.log("cluster"))
    assert row["attempts"] == 2  # the killed run, and the one that finished it
    assert int(row["claimed_by"].rsplit(":", 1)[1]) != pid
    assert _mp3_files(site) - before == {row["mp3_file"]}


def test_the_health_endpoints_see_the_live_cluster_and_its_workers(site: LiveSite) -> None:
    deadline = time.monotonic() + 60
    while True:  # the cluster reports itself every few seconds once it is up
        workers = requests.get(site.url + "/health/workers/", timeout=30)
        if workers.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert workers.status_code == 200, workers.text
    [cluster] = workers.json()["clusters"]
    assert (cluster["status"], cluster["workers"]) == ("Idle", 2) or cluster["status"] == "Working", cluster
    assert cluster["seconds_since_heartbeat"] < 10
    web = requests.get(site.url + "/health/", timeout=30)
    assert web.status_code == 200 and web.json()["database"]["ok"]


def test_sigterm_lets_the_piece_in_flight_finish_before_the_cluster_stops(site: LiveSite, style: str) -> None:
    site.add_users(["patient"])
    response = site.api("patient").post(
        site.url + "/api/compositions/", json={"style": style, "notes": 300, "seed": 8}, timeout=60
    )
    assert response.status_code == 202
    _wait_for(site, "patient", _last_is_generating)
    assert site.stop_cluster(signal.SIGTERM) == 0
    [row] = site.compositions(["patient"])
    assert (row["status"], row["attempts"]) == ("done", 1), site.log("cluster")
    site.start_cluster()  # for the tests after this one
    # Its score is engraved after the restart. Waiting for it here spares the next test's stop a
    # grace period spent on it (a stop waits up to Q_STOP_GRACE_SECONDS for a task in flight).
    _wait_for(site, "patient", lambda rows: all(row["score_svg"] or row["score_error"] for row in rows), 300)


def test_sigterm_stops_a_piece_past_the_grace_period_and_it_is_written_again_after_the_restart(
    site: LiveSite, style: str,
) -> None:
    site.add_users(["impatient"])
    site.stop_cluster()
    site.env["Q_STOP_GRACE_SECONDS"] = "1"
    site.start_cluster()
    try:
        api = site.api("impatient")
        long_piece = api.post(site.url + "/api/compositions/", json={"style": style, "notes": 300, "seed": 9},
                              timeout=60)
        queued = api.post(site.url + "/api/compositions/", json={"style": style, "notes": 64, "seed": 10},
                          timeout=60)
        assert (long_piece.status_code, queued.status_code) == (202, 202)
        _wait_for(site, "impatient", lambda rows: any(r["status"] == "generating" for r in rows))
        started = time.monotonic()
        assert site.stop_cluster(signal.SIGTERM, timeout=60) == 0
        assert time.monotonic() - started < 30, site.log("cluster")
        rows = site.compositions(["impatient"])
        assert all(row["status"] != "done" or row["mp3_file"] for row in rows)  # nothing half-written
        assert "did not finish within the grace period" in site.log("cluster")
    finally:
        site.env.pop("Q_STOP_GRACE_SECONDS")
        site.start_cluster()
    rows = site.wait_until_finished(2, timeout=300, usernames=["impatient"])
    assert [row["status"] for row in rows] == ["done", "done"], site.log("cluster")
    assert max(row["attempts"] for row in rows) == 2  # the piece cut short was written again, once
    # The workers are left free for the tests after this one: the long piece's score takes a while.
    _wait_for(site, "impatient", lambda rows: all(row["score_svg"] or row["score_error"] for row in rows), 300)


def _dropped(site: LiveSite) -> int:
    """How many runs the cluster has stopped because their pieces were cancelled or deleted."""
    return (site.logs / "cluster.log").read_text(errors="replace").count("stopped: cancelled or deleted")


def test_the_site_keeps_answering_while_the_workers_are_busy(site: LiveSite, style: str) -> None:
    site.add_users(["reader", "busy"])
    busy = site.api("busy")
    # One long piece per worker (the cluster has two), and both being written before we measure.
    for seed in (1, 2):
        response = busy.post(site.url + "/api/compositions/", json={"style": style, "notes": 4000, "seed": seed},
                             timeout=60)
        assert response.status_code == 202
    _wait_for(site, "busy", lambda rows: [row["status"] for row in rows] == ["generating"] * 2)

    api = site.api("reader")
    started = time.monotonic()
    for _ in range(20):
        assert api.get(site.url + "/api/schema/", timeout=30).status_code == 200
    assert requests.get(site.url + "/", timeout=30).status_code == 200
    queued = api.post(site.url + "/api/compositions/", json={"style": style, "seconds": 5, "seed": 3}, timeout=30)
    assert queued.status_code == 202
    elapsed = time.monotonic() - started
    # Still busy after the last answer: every answer above was given while both workers wrote.
    rows = site.compositions(["busy"])
    assert all(row["status"] in ("generating", "rendering") for row in rows), rows
    assert elapsed < 60

    # The workers are freed for the tests after this one by cancelling the long pieces through the API,
    # as an app would, once they are being rendered (the longest stage, which writes no progress): each
    # worker learns of it at its next heartbeat, drops its piece and takes the queued one.
    rows = _wait_for(site, "busy", lambda rows: [row["status"] for row in rows] == ["rendering"] * 2)
    dropped = _dropped(site)
    cancelled_at = time.monotonic()
    for row in rows:
        public_id = uuid.UUID(str(row["public_id"]))  # SQLite keeps it as 32 hex digits
        cancelled = busy.post(f"{site.url}/api/v1/compositions/{public_id}/cancel/", timeout=30)
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled", cancelled.text
    [done] = site.wait_until_finished(1, timeout=300, usernames=["reader"])
    assert done["status"] == "done", site.log("cluster")
    assert [row["status"] for row in site.wait_until_finished(2, timeout=60, usernames=["busy"])] == ["cancelled"] * 2
    assert not any(row["mp3_file"] for row in site.compositions(["busy"]))
    deadline = time.monotonic() + 120
    while _dropped(site) < dropped + 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _dropped(site) == dropped + 2, site.log("cluster")
    assert time.monotonic() - cancelled_at < 20  # a heartbeat is 2 s here; the rendering alone takes longer


# The recipe in README.md ("Backups"), run as written there.
BACKUP = {
    "postgres": """
        pg_dump --format=custom --file="$OUT/site.dump" "$DATABASE_URL"
        tar -C "$MEDIA_ROOT" -czf "$OUT/media.tar.gz" .
    """,
    "sqlite": """
        sqlite3 "${DATABASE_URL#sqlite:///}" ".backup '$OUT/site.sqlite3'"
        tar -C "$MEDIA_ROOT" -czf "$OUT/media.tar.gz" .
    """,
}
RESTORE = {
    "postgres": """
        psql "$ADMIN_URL" -c "CREATE DATABASE $NEW_DB"
        pg_restore --no-owner --dbname="$NEW_DATABASE_URL" "$OUT/site.dump"
        mkdir -p "$NEW_MEDIA_ROOT" && tar -C "$NEW_MEDIA_ROOT" -xzf "$OUT/media.tar.gz"
    """,
    "sqlite": """
        cp "$OUT/site.sqlite3" "${NEW_DATABASE_URL#sqlite:///}"
        mkdir -p "$NEW_MEDIA_ROOT" && tar -C "$NEW_MEDIA_ROOT" -xzf "$OUT/media.tar.gz"
    """,
}


def test_a_backup_restores_into_a_fresh_database_and_the_pieces_play(
        site: LiveSite, style: str, tmp_path: Path) -> None:
    import dataclasses
    import subprocess
    import sys
    import uuid

    from pydub import AudioSegment

    # Its own pieces: what earlier tests left is in the backup too, but is not counted on.
    site.add_users(["archivist"])
    api = site.api("archivist")
    for seed in range(3):
        response = api.post(site.url + "/api/compositions/", json={"style": style, "seconds": 5, "seed": seed},
                            timeout=60)
        assert response.status_code == 202
    done = site.wait_until_finished(3, timeout=300, usernames=["archivist"])
    assert [row["status"] for row in done] == ["done"] * 3, site.log("cluster")
    # Each score follows its MP3 as a task of its own; the backup is taken once every piece on the site
    # (earlier tests' too) has its score, so that the copy of the files and the database agree.
    done = _wait_for(site, "archivist", lambda rows: all(row["score_svg"] or row["score_error"] for row in rows))
    assert all(row["score_svg"] for row in done), [row["score_error"] for row in done]
    # And nothing is being written: a piece an earlier test left queued or rendering would write its
    # files between the database dump and the copy of the media (files the restored database lacks).
    deadline = time.monotonic() + 180
    while any(row["status"] in ("pending", "generating", "rendering")
              or (row["status"] == "done" and not (row["score_svg"] or row["score_error"]))
              for row in site.compositions()):
        assert time.monotonic() < deadline, site.log("cluster")
        time.sleep(0.2)
    backend = "sqlite" if site.env["DATABASE_URL"].startswith("sqlite") else "postgres"
    new_db = f"restored_{uuid.uuid4().hex[:8]}"
    env = {
        **site.env, "OUT": str(tmp_path), "NEW_DB": new_db, "NEW_MEDIA_ROOT": str(tmp_path / "media"),
        "ADMIN_URL": site.env["DATABASE_URL"],
        "NEW_DATABASE_URL": f"sqlite:///{tmp_path / 'restored.sqlite3'}" if backend == "sqlite"
        else site.env["DATABASE_URL"].rsplit("/", 1)[0] + "/" + new_db,
    }
    for script in (BACKUP[backend], RESTORE[backend]):
        result = subprocess.run(["bash", "-euc", script], env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
    restored = {**env, "DATABASE_URL": env["NEW_DATABASE_URL"], "MEDIA_ROOT": env["NEW_MEDIA_ROOT"]}
    try:
        check = subprocess.run([sys.executable, "manage.py", "verify_media"], cwd=Path(__file__).parents[2],
                               env=restored, capture_output=True, text=True, timeout=120)
        assert check.returncode == 0 and "0 missing, 0 orphaned" in check.stdout, check.stdout + check.stderr
        copy = dataclasses.replace(site, env=restored, media=tmp_path / "media")
        assert copy.compositions(["archivist"]) == done
        for row in done:
            audio = AudioSegment.from_file(copy.media / row["mp3_file"], format="mp3")
            assert audio.duration_seconds > 4
    finally:
        if backend == "postgres":
            subprocess.run(["psql", env["ADMIN_URL"], "-c", f'DROP DATABASE IF EXISTS "{new_db}" WITH (FORCE)'],
                           capture_output=True, timeout=60)
