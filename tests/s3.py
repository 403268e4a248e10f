"""A real S3 protocol server for the tests: moto's standalone server in a child process, on loopback.

The site talks to it through django-storages and boto3 exactly as it would to AWS or MinIO; the
tests read the bucket back with their own boto3 client.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

ACCESS_KEY = "test-access-key"
SECRET_KEY = "test-secret-key"
REGION = "us-east-1"


@dataclass(frozen=True)
class S3Server:
    """A running server: its endpoint, and the environment a site needs to use a bucket on it."""

    endpoint: str

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name=REGION)

    def new_bucket(self) -> str:
        name = f"musicgen-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str) -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def env(self, bucket: str, prefix: str = "media") -> dict[str, str]:
        """The settings (as environment variables) that put a site's files in `bucket`."""
        return {"STORAGE_URL": f"s3://{bucket}/{prefix}", "S3_ENDPOINT_URL": self.endpoint, "S3_REGION": REGION,
                "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}

    def storages(self, bucket: str, prefix: str = "media", presigned_seconds: int = 60) -> dict[str, Any]:
        """The STORAGES setting for `bucket`, as musicgen.settings builds it from env()."""
        return {
            "default": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {
                "bucket_name": bucket, "location": prefix, "default_acl": None, "querystring_auth": True,
                "querystring_expire": presigned_seconds, "file_overwrite": False, "signature_version": "s3v4",
                "endpoint_url": self.endpoint, "addressing_style": "path", "region_name": REGION,
                "access_key": ACCESS_KEY, "secret_key": SECRET_KEY,
            }},
            "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        }


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def moto_server_command() -> list[str]:
    """How to start moto's server with this interpreter's packages."""
    found = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "moto.server"]


@contextmanager
def s3_server(host: str = "127.0.0.1", log: Path | None = None) -> Iterator[S3Server]:
    """Start moto's S3 server on `host` (loopback, or a test host's address) and stop it after."""
    port = _free_port(host)
    out = log.open("ab") if log else subprocess.DEVNULL
    process = subprocess.Popen([*moto_server_command(), "-H", host, "-p", str(port)], stdout=out,
                               stderr=subprocess.STDOUT, start_new_session=True)
    server = S3Server(endpoint=f"http://{host}:{port}")
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(server.endpoint + "/moto-api/", timeout=2)
                break
            except requests.RequestException:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"moto's S3 server did not start on {server.endpoint}") from None
                time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
