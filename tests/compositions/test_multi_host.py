"""The site as several machines: a web host and two worker hosts that share only the network.

Each host is a network namespace with its own host name and working folder (media, model cache,
temporary files). PostgreSQL and Redis are reached over the namespace network (the machine
forwards its bridge address to them), and every file lives in moto's S3 server on that address:
what a worker writes, the web host can only serve through the object store. The model is an
active MusicModel whose file is in the bucket; each worker copies it once.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.hosts import GATEWAY, Forwarder, Host, namespace_network, namespaces_unavailable
from tests.live import POSTGRES_URL, REDIS_URL, ROOT, LiveSite, _kill_group, postgres_and_redis_answer
from tests.s3 import S3Server, s3_server

_why_not = namespaces_unavailable() or ("" if postgres_and_redis_answer() else "PostgreSQL or Redis is not running")
pytestmark = [pytest.mark.live, pytest.mark.multi_host, pytest.mark.skipif(bool(_why_not), reason=_why_not)]

USERS = [f"listener{n}" for n in range(10)]
PIECES_PER_USER = 5


def _start(host: Host, argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(host.command(argv), cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory, tiny_model_path: Path) -> Iterator[dict[str, Any]]:
    import psycopg2
    import redis

    tmp = tmp_path_factory.mktemp("hosts")
    pg_port = int(POSTGRES_URL.rsplit(":", 1)[1].split("/")[0])
    redis_port = int(REDIS_URL.rsplit(":", 1)[1].split("/")[0])
    database = f"hosts_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(POSTGRES_URL)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{database}"')
    redis.from_url(REDIS_URL).flushdb()
    processes: list[subprocess.Popen[bytes]] = []
    with contextlib.ExitStack() as stack:
        network = stack.enter_context(namespace_network(["web", "worker1", "worker2"]))
        stack.enter_context(Forwarder({pg_port: ("127.0.0.1", pg_port), redis_port: ("127.0.0.1", redis_port)}))
        s3: S3Server = stack.enter_context(s3_server(host=GATEWAY, log=tmp / "s3.log"))
        bucket = s3.new_bucket()
        web = network.hosts["web"]
        base = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL", "Q_"))},
            **s3.env(bucket),
            "DJANGO_SETTINGS_MODULE": "musicgen.settings", "PYTHONUNBUFFERED": "1", "LOG_LEVEL": "INFO",
            "DATABASE_URL": f"postgres://postgres@{GATEWAY}:{pg_port}/{database}",
            "REDIS_URL": f"redis://{GATEWAY}:{redis_port}/{REDIS_URL.rsplit('/', 1)[1]}",
            "MUSIC_MODEL_PATH": str(tmp / "no-model-on-this-host.keras"),  # only the bucket has it
            "SOUNDFONT_PATH": "", "SCORE_TIMEOUT_SECONDS": "0", "Q_WORKERS": "1",
            "QUOTA_ACTIVE_PIECES": "10", "ALLOWED_HOSTS": web.address,
        }
        envs: dict[str, dict[str, str]] = {}
        for name in network.hosts:
            home = tmp / name
            for folder in ("media", "models", "tmp"):
                (home / folder).mkdir(parents=True)
            envs[name] = {**base, "MEDIA_ROOT": str(home / "media"), "MODEL_CACHE_DIR": str(home / "models"),
                          "TMPDIR": str(home / "tmp")}
        site = LiveSite(url=f"http://{web.address}:8000", env=envs["web"], media=tmp / "web" / "media", logs=tmp)
        site.manage("migrate", "--noinput")
        site.python(
            "import json\n"
            "from django.core.files import File\n"
            "from compositions.models import MusicModel\n"
            "from compositions.services.training import music_model_activate\n"
            "from ml.model.config import read_model_info\n"
            f"styles = list(read_model_info({str(tiny_model_path)!r})['config'].styles)\n"
            "row = MusicModel(name='tiny', styles=styles)\n"
            f"row.file.save('tiny.keras', File(open({str(tiny_model_path)!r}, 'rb')), save=True)\n"
            "music_model_activate(music_model=row)\n"
            "print(json.dumps(styles))"
        )
        try:
            for name in ("worker1", "worker2"):
                processes.append(_start(network.hosts[name], [sys.executable, "manage.py", "worker"], envs[name],
                                        tmp / f"{name}.log"))
            site.web = _start(web, [sys.executable, "-m", "gunicorn", "musicgen.wsgi", "--bind",
                                    f"{web.address}:8000", "--workers", "2", "--threads", "4"],
                              envs["web"], tmp / "web.log")
            processes.append(site.web)
            deadline = time.monotonic() + 90
            while True:
                try:
                    requests.get(site.url + "/health/", timeout=5)
                    break
                except requests.RequestException:
                    if time.monotonic() > deadline:
                        raise AssertionError("the web host did not come up:\n" + site.log("web")) from None
                    time.sleep(0.3)
            yield {"site": site, "s3": s3, "bucket": bucket, "network": network, "tmp": tmp}
        finally:
            for process in processes:
                _kill_group(process)
            admin.cursor().execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            admin.close()
            redis.from_url(REDIS_URL).flushdb()


def test_fifty_requests_from_ten_users_end_done_once_on_two_worker_hosts_and_play_from_the_web_host(
    hosts: dict[str, Any],
) -> None:
    site: LiveSite = hosts["site"]
    s3: S3Server = hosts["s3"]
    started = time.monotonic()
    site.add_users(USERS)
    style = requests.get(site.url + "/api/v1/styles/", headers={"Authorization": f"Token {site.users[USERS[0]]}"},
                         timeout=30).json()["styles"][0]["name"]

    def compose(job: tuple[str, int]) -> int:
        user, n = job
        response = site.api(user).post(site.url + "/api/v1/compositions/",
                                       json={"style": style, "notes": 40, "seed": n}, timeout=60)
        return response.status_code

    jobs = [(user, n) for user in USERS for n in range(PIECES_PER_USER)]
    with ThreadPoolExecutor(max_workers=len(USERS)) as pool:
        codes = list(pool.map(compose, jobs))
    assert codes == [202] * len(jobs)

    rows = site.wait_until_finished(len(jobs), timeout=240, usernames=USERS)
    problems = [(r["id"], r["status"], r["error_detail"]) for r in rows if r["status"] != "done"]
    assert not problems, f"{problems}\n{site.log('worker1')}\n{site.log('worker2')}"
    assert len(rows) == len(jobs) and all(row["attempts"] == 1 for row in rows)  # each written exactly once
    writers = {row["claimed_by"].split(":")[0] for row in rows}
    assert writers == {"worker1", "worker2"}, writers

    # Every piece plays from the web host, which has none of the files on its own disk.
    for row in rows:
        owner = site.api(row["username"])
        audio = owner.get(f"{site.url}/api/v1/compositions/{row['public_id']}/audio.mp3", timeout=30)
        assert audio.status_code == 200 and audio.headers["Content-Type"] == "audio/mpeg"
        assert len(audio.content) > 2000 and audio.content[:3] in (b"ID3", b"\xff\xfb", b"\xff\xf3")
    keys = s3.keys(hosts["bucket"])
    assert sum(key.startswith("media/mp3/") for key in keys) == len(jobs)
    assert sum(key.startswith("media/midi/") for key in keys) == len(jobs)
    for name in ("web", "worker1", "worker2"):
        assert not list((hosts["tmp"] / name / "media").rglob("*.mp3")), name
    for name in ("worker1", "worker2"):  # each worker copied the model from the bucket, once
        assert [p.name for p in (hosts["tmp"] / name / "models").rglob("*.keras")] == ["tiny.keras"]

    health = requests.get(site.url + "/health/workers/", timeout=30)
    assert health.status_code == 200, health.text
    assert sorted(cluster["host"] for cluster in health.json()["clusters"]) == ["worker1", "worker2"]
    print(f"multi-host: {len(jobs)} pieces from {len(USERS)} users on 2 worker hosts in "
          f"{time.monotonic() - started:.0f} s")
