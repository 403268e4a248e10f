"""The deploy recipe in the README, checked as written: its settings pass `check --deploy`, its
systemd units pass `systemd-analyze verify`, and its nginx file passes `nginx -t` where nginx is."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def recipe_files() -> dict[str, str]:
    """Each `<!-- deploy-file: PATH -->` of the README with the fenced block after it."""
    text = (ROOT / "README.md").read_text()
    found = re.findall(r"<!-- deploy-file: (\S+) -->\n```\w*\n(.*?)\n```", text, flags=re.S)
    return {path: body + "\n" for path, body in found}


def test_the_readme_has_the_whole_recipe() -> None:
    assert set(recipe_files()) == {
        "/etc/musicgen.env", "/etc/systemd/system/musicgen-web.service",
        "/etc/systemd/system/musicgen-worker@.service", "/etc/nginx/conf.d/musicgen.conf",
    }


def _environment(body: str) -> dict[str, str]:
    pairs = [line.split("=", 1) for line in body.splitlines() if line and not line.startswith("#")]
    return {key: value for key, value in pairs}


def test_the_recipes_settings_pass_the_deploy_check() -> None:
    settings = _environment(recipe_files()["/etc/musicgen.env"])
    assert settings["STORAGE_URL"].startswith("s3://") and settings["DEBUG"] == "false"
    inherited = {k: v for k, v in os.environ.items()
                 if k != "DJANGO_ALLOW_ASYNC_UNSAFE" and not k.startswith(("DATABASE_URL", "REDIS_URL", "Q_"))}
    env = {**inherited, **settings, "DJANGO_SETTINGS_MODULE": "musicgen.settings",
           # The check must not need the recipe's hosts; everything else is the recipe's.
           "DATABASE_URL": "sqlite:///:memory:", "STATIC_ROOT": str(ROOT / "staticfiles")}
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_recipes_systemd_units_verify(tmp_path: Path) -> None:
    files = recipe_files()
    env_file = tmp_path / "musicgen.env"
    env_file.write_text(files["/etc/musicgen.env"])
    for path in ("/etc/systemd/system/musicgen-web.service", "/etc/systemd/system/musicgen-worker@.service"):
        unit = files[path]
        for directive in ("ExecStart=", "KillMode=mixed", "EnvironmentFile=/etc/musicgen.env", "User=musicgen"):
            assert directive in unit, (path, directive)
        # Verified here with this checkout for /srv/musicgen and root for the service user.
        local = (unit.replace("/srv/musicgen", str(ROOT)).replace("/etc/musicgen.env", str(env_file))
                 .replace("=musicgen\n", "=root\n"))
        name = Path(path).name.replace("@.service", "@1.service")
        (tmp_path / Path(path).name).write_text(local)
        result = subprocess.run(["systemd-analyze", "verify", Path(path).name if "@" not in name else name],
                                cwd=tmp_path, capture_output=True, text=True, timeout=60,
                                env={**os.environ, "SYSTEMD_UNIT_PATH": f"{tmp_path}:"})
        problems = [line for line in (result.stdout + result.stderr).splitlines()
                    if str(tmp_path) in line or "Unknown" in line or "not executable" in line]
        assert result.returncode == 0 and not problems, result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
def test_the_recipes_nginx_file_parses(tmp_path: Path) -> None:
    site = recipe_files()["/etc/nginx/conf.d/musicgen.conf"]
    site = re.sub(r"server (web\d)\.internal:", r"server 127.0.0.1:", site)
    site = site.replace("listen 443 ssl;", "listen 127.0.0.1:18443;").replace("ssl_certificate", "# ssl_certificate")
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"pid {tmp_path}/nginx.pid;\nerror_log stderr;\nevents {{}}\nhttp {{\n{site}\n}}\n")
    result = subprocess.run(["nginx", "-t", "-c", str(conf), "-p", str(tmp_path)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
