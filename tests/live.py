"""A whole site in child processes: a database of its own, gunicorn, and a real django-q2 cluster (`manage.py worker`).

Tests that run tasks inline cannot see races between workers, lost tasks or dead processes;
these run the site as `make run` does (SQLite with the ORM broker) or as production does
(PostgreSQL with Redis), and talk to it over HTTP like its users.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from urllib3.util.retry import Retry

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "a-Long-enough-pa55word"
POSTGRES_URL = os.environ.get("LIVE_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("LIVE_REDIS_URL", "redis://127.0.0.1:6379/14")


def postgres_and_redis_answer() -> bool:
    import psycopg2
    import redis

    try:
        psycopg2.connect(POSTGRES_URL, connect_timeout=2).close()
        return bool(redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except Exception:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveSite:
    """A running site: its URL, its environment, and the processes behind it."""

    url: str
    env: dict[str, str]
    media: Path
    logs: Path
    cluster: subprocess.Popen[bytes] | None = None
    web: subprocess.Popen[bytes] | None = None
    users: dict[str, str] = field(default_factory=dict)  # username -> API token

    # -- processes ------------------------------------------------------------------------------

    def manage(self, *args: str, stdin: str | None = None, timeout: float = 180) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, input=stdin, capture_output=True,
            text=True, timeout=timeout,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout

    def python(self, code: str) -> Any:
        """Run `code` in a configured Django process; it prints one JSON value, returned here."""
        out = self.manage("shell", "-c", code)
        return json.loads(out.strip().splitlines()[-1])

    def start_cluster(self) -> None:
        self.cluster = subprocess.Popen(
            [sys.executable, "manage.py", "worker"], cwd=ROOT, env=self.env,
            stdout=(self.logs / "cluster.log").open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
        )

    def stop_cluster(self, sig: int = signal.SIGTERM, timeout: float = 120) -> int:
        assert self.cluster is not None
        self.cluster.send_signal(sig)
        try:
            return self.cluster.wait(timeout)
        finally:
            _kill_group(self.cluster)
            self.cluster = None

    def start_web(self) -> None:
        self.web = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "musicgen.wsgi", "--bind", self.url.removeprefix("http://"),
             "--workers", self.env.get("WEB_WORKERS", "2"), "--threads", "8", "--timeout", "120"],
            cwd=ROOT, env=self.env, stdout=(self.logs / "web.log").open("ab"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                requests.get(self.url + "/", timeout=10)
                return
            except (requests.ConnectionError, requests.Timeout):  # not up yet, or its first answer is slow
                time.sleep(0.2)
        raise AssertionError("the web server did not come up:\n" + self.log("web"))

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-6000:] if path.exists() else ""

    # -- users and requests ---------------------------------------------------------------------

    def add_users(self, names: list[str]) -> None:
        code = (
            "import json\n"
            "from django.contrib.auth.models import User\n"
            f"for name in {names!r}: User.objects.create_user(name, password={PASSWORD!r})\n"
            "print(json.dumps(True))"
        )
        self.python(code)
        for name in names:
            response = requests.post(self.url + "/api/auth/token/", data={"username": name, "password": PASSWORD},
                                     timeout=30)
            assert response.status_code == 200, response.text
            self.users[name] = response.json()["token"]

    def api(self, username: str) -> requests.Session:
        session = _session()
        session.headers["Authorization"] = f"Token {self.users[username]}"
        return session

    def browser(self, username: str) -> requests.Session:
        """A session logged in through the login form, as a browser would be."""
        session = _session()
        page = session.get(self.url + "/accounts/login/", timeout=30)
        token = _csrf(page.text)
        response = session.post(
            self.url + "/accounts/login/", data={"username": username, "password": PASSWORD,
                                                 "csrfmiddlewaretoken": token},
            headers={"Referer": self.url + "/accounts/login/"}, timeout=30, allow_redirects=False,
        )
        assert response.status_code == 302, response.text[-2000:]
        return session

    def compositions(self, usernames: list[str] | None = None) -> list[dict[str, Any]]:
        """Pieces (of `usernames`, else all) with their current versions, read straight from the site's database."""
        sql = (
            "SELECT c.id, c.public_id, v.status, v.attempts, v.error, v.error_detail, v.midi_file, v.mp3_file, "
            "u.username, v.primer_file, v.claimed_by, v.progress, v.score_svg, v.score_error "
            "FROM compositions_composition c "
            "JOIN compositions_compositionversion v ON v.id = c.current_version_id "
            "JOIN auth_user u ON u.id = c.user_id ORDER BY c.id"
        )
        names = ("id", "public_id", "status", "attempts", "error", "error_detail", "midi_file", "mp3_file",
                 "username", "primer_file", "claimed_by", "progress", "score_svg", "score_error")
        url = self.env["DATABASE_URL"]
        if url.startswith("sqlite"):
            import sqlite3

            with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30)) as db:
                rows = db.execute(sql).fetchall()
        else:
            import psycopg2

            with contextlib.closing(psycopg2.connect(url)) as db, db.cursor() as cursor:
                cursor.execute(sql)
                rows = cursor.fetchall()
        result = [dict(zip(names, row)) for row in rows]
        return [row for row in result if usernames is None or row["username"] in usernames]

    def wait_until_finished(self, count: int, timeout: float, usernames: list[str] | None = None,
                            ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        rows: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            rows = self.compositions(usernames)
            if len(rows) >= count and all(row["status"] in ("done", "failed", "cancelled") for row in rows):
                return rows
            time.sleep(1)
        stuck = [(r["id"], r["status"]) for r in rows if r["status"] not in ("done", "failed")]
        raise AssertionError(f"unfinished after {timeout} s: {stuck}\n{self.log('cluster')}")


def _csrf(html: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def _session() -> requests.Session:
    """A client session that, like a browser, sends an idempotent request (GET, HEAD) again on a new
    connection when the server has closed the kept-alive one under it (gunicorn closes an idle
    connection after 2 s; under load the close and the next request can cross: "connection reset by
    peer"). A POST is never sent twice."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(max_retries=Retry(total=2, connect=2, read=2, status=0, redirect=0,
                                                              backoff_factor=0.2, raise_on_status=False))
    session.mount("http://", adapter)
    return session


def form_post(session: requests.Session, url: str, data: dict[str, Any], files: dict[str, Any] | None = None,
              ) -> requests.Response:
    """GET the form for its CSRF token, then POST it, as a browser does."""
    page = session.get(url, timeout=60)
    return session.post(url, data={**data, "csrfmiddlewaretoken": _csrf(page.text)}, files=files,
                        headers={"Referer": url}, timeout=60, allow_redirects=False)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait(10)


@contextmanager
def live_site(tmp: Path, *, backend: str, model_path: Path, cluster: bool = True, **settings: str,
              ) -> Iterator[LiveSite]:
    """Start a site on `backend` ("sqlite" with the ORM broker, or "postgres" with Redis), with its
    workers unless `cluster` is False."""
    media, logs = tmp / "media", tmp / "logs"
    media.mkdir()
    logs.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL", "Q_"))},
        "DJANGO_SETTINGS_MODULE": "musicgen.settings",
        "MEDIA_ROOT": str(media),
        "MUSIC_MODEL_PATH": str(model_path),
        "SOUNDFONT_PATH": "",
        "Q_WORKERS": "2",
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
        **settings,
    }
    cleanup: list[Callable[[], None]] = []  # a SQLite file goes with the temporary folder
    if backend == "sqlite":
        env["DATABASE_URL"] = f"sqlite:///{tmp / 'site.sqlite3'}"
    else:
        import psycopg2
        import redis

        name = f"live_{uuid.uuid4().hex[:10]}"
        admin = psycopg2.connect(POSTGRES_URL)
        admin.autocommit = True
        admin.cursor().execute(f'CREATE DATABASE "{name}"')
        env["DATABASE_URL"] = POSTGRES_URL.rsplit("/", 1)[0] + "/" + name
        env["REDIS_URL"] = REDIS_URL
        redis.from_url(REDIS_URL).flushdb()

        def drop() -> None:
            admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.close()
            redis.from_url(REDIS_URL).flushdb()

        cleanup.append(drop)

    site = LiveSite(url=f"http://127.0.0.1:{_free_port()}", env=env, media=media, logs=logs)
    try:
        site.manage("migrate", "--noinput")
        if cluster:
            site.start_cluster()
        site.start_web()
        yield site
    finally:
        for process in (site.web, site.cluster):
            if process is not None:
                _kill_group(process)
        for step in cleanup:
            step()
