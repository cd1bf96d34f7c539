"""A real S3-compatible server on loopback for the remote tests: moto's server mode.

One server per test session (on 127.0.0.1, a free port), one new bucket per test. The AWS
variables are set to dummy values for the session, instance-metadata lookups are disabled and
the user's AWS config files are hidden, so that nothing ever leaves the machine.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kitaru_store import Repository
from kitaru_store.backend import close_backend

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing-secret",
    "AWS_SESSION_TOKEN": "testing-token",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",  # never ask 169.254.169.254 for credentials
    "AWS_CONFIG_FILE": "/nonexistent/kitaru-tests/aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/kitaru-tests/aws-credentials",
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
}
AWS_UNSET = (
    "AWS_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "KITARU_REMOTE",
)


def _atomic_server() -> Any:
    """moto's ThreadedMotoServer, with writes serialized.

    moto checks If-None-Match / If-Match and then writes, without a lock, while its server
    handles requests on several threads; AWS S3, MinIO and Ceph do both atomically. Running
    writes one at a time gives the racing-pusher tests the server semantics they are about.
    """
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    class AtomicMotoServer(ThreadedMotoServer):
        def _server_entry(self) -> None:
            app = DomainDispatcherApplication(create_backend_app)
            lock = threading.Lock()

            def atomic(environ: dict[str, Any], start_response: Any) -> Any:
                if environ.get("REQUEST_METHOD") in ("PUT", "POST", "DELETE"):
                    with lock:
                        return list(app(environ, start_response))
                return app(environ, start_response)

            self._server = make_server(
                self._ip_address, self._port, atomic, True, request_handler=MotoRequestHandler
            )
            self._server_ready_event.set()
            self._server.serve_forever()

    return AtomicMotoServer(ip_address="127.0.0.1", port=0, verbose=False)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    saved = {k: os.environ.get(k) for k in (*AWS_ENV, *AWS_UNSET)}
    os.environ.update(AWS_ENV)
    for key in AWS_UNSET:
        os.environ.pop(key, None)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = _atomic_server()
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def s3(s3_endpoint: str) -> Any:
    """A plain boto3 client on the test server, for setting up and inspecting buckets."""
    import boto3

    return boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"kitaru-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def url(bucket: str) -> str:
    return f"s3://{bucket}/team"


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Callable[[str], Repository]]:
    """``stores("a")``: a store under tmp_path, closed at the end of the test."""
    opened: list[Path] = []

    def make(name: str) -> Repository:
        path = tmp_path / name
        opened.append(path)
        return Repository.open(path)

    yield make
    for path in opened:
        close_backend(str(path / "db"))
