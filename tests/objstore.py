"""Where a test's history lives: a local directory, or a bucket on a real S3-protocol server on loopback.

``moto`` in server mode (:class:`moto.server.ThreadedMotoServer`) listens on 127.0.0.1 and a free port for
the whole session; it speaks S3 over HTTP, including conditional PUTs (``If-None-Match``/``If-Match``), which
the cache's writer leases rely on. Tests that must hold on any storage take the ``location`` fixture, which
runs them once per kind; subprocesses find the server through the AWS variables it sets.

A test module uses them with ``pytest_plugins = ("objstore",)``.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """The URL of an S3-protocol server on loopback, for the whole session."""
    server_mod = pytest.importorskip("moto.server", reason="moto[server] (the test extra) is not installed")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@dataclass(frozen=True)
class Location:
    """Cache locations of one kind for one test: ``url(name)`` gives a fresh one, ``files(url)`` its objects."""

    kind: str
    base: str
    client: Any = None  # a boto3 S3 client for kind "s3"

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"

    def files(self, url: str) -> list[str]:
        """Every file or object under ``url``, relative to it (hidden local files left out)."""
        if self.kind == "local":
            root = Path(url)
            return sorted(
                p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")
            )
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        keys: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
            keys += [o["Key"][len(prefix) + 1 :] for o in page.get("Contents", [])]
        return sorted(keys)


@pytest.fixture
def s3_location(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Location:
    """A bucket of the test's own on the loopback S3 server."""
    import boto3

    # The variables boto3 reads, so that a subprocess (a crash test's writer) finds the same server.
    for name, value in {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("s3")
    bucket = f"history-{secrets.token_hex(6)}"
    client.create_bucket(Bucket=bucket)
    return Location("s3", f"s3://{bucket}/team", client)


@pytest.fixture(params=["local", "s3"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Location:
    """Run a test on a local directory and on S3."""
    if request.param == "local":
        return Location("local", str(tmp_path))
    found: Location = request.getfixturevalue("s3_location")
    return found
