"""The web tier never loads TensorFlow: a fresh process renders the form and takes a request without it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

WEB_REQUEST = """
import json, os, re, sys
import django
django.setup()
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

call_command("migrate", verbosity=0)
user = get_user_model().objects.create_user("web-check", password="x-Web-check-1")
client = Client(HTTP_HOST="127.0.0.1")
# `migrate` alone made everything signing in needs (the cache table of its counters among it).
signed_in = client.post("/accounts/login/", {"username": "web-check", "password": "x-Web-check-1"})
form = client.get("/compositions/new/")
style = re.search(r'<option value="([^"]+)"', form.content.decode().split('name="style"')[1]).group(1)
posted = client.post("/compositions/new/", {"style": style, "seconds": "30"})
api = client.post("/api/compositions/", {"style": style, "notes": 64}, content_type="application/json",
                  HTTP_X_CSRFTOKEN=client.cookies["csrftoken"].value if "csrftoken" in client.cookies else "")
rss_kb = int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0])
print(json.dumps({
    "signed_in": signed_in.status_code, "form": form.status_code, "posted": posted.status_code, "api": api.status_code,
    "loaded": [m for m in ("tensorflow", "keras", "jax", "torch") if m in sys.modules],
    "rss_mb": round(rss_kb / 1024),
}))
"""


def test_rendering_the_form_and_taking_requests_never_imports_tensorflow(
    tiny_model_path: Path, tmp_path: Path
) -> None:
    env = {
        **os.environ, "DJANGO_SETTINGS_MODULE": "musicgen.settings", "MUSIC_MODEL_PATH": str(tiny_model_path),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'web.sqlite3'}", "MEDIA_ROOT": str(tmp_path / "media"),
        "Q_SYNC": "false",
    }
    env.pop("REDIS_URL", None)
    result = subprocess.run([sys.executable, "-c", WEB_REQUEST], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert (report["signed_in"], report["form"], report["posted"], report["api"]) == (302, 200, 302, 202)
    assert report["loaded"] == []
    # The README quotes this figure (`make test PYTEST_ARGS='-s -k never_imports_tensorflow'`).
    print(f"web process after the form, a form POST and an API POST: {report['rss_mb']} MB resident")
