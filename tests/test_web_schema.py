"""Property test of the REST API against its own OpenAPI schema (schemathesis, over the
ASGI app in this process): no generated request, valid or not, with auth off and on,
gets a server error."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")
pytest.importorskip("fastapi")

from hypothesis import HealthCheck, settings  # noqa: E402

from facetalk.web import ServerConfig, create_app  # noqa: E402

TOKEN = "schema-test-token"
EXAMPLES = 25  # per operation and mode: the whole file stays well under a minute on 2 cores

_home = Path(tempfile.mkdtemp(prefix="facetalk-schema-"))
atexit.register(shutil.rmtree, _home, True)
_limits = {"max_upload_bytes": 2 * 1024 * 1024, "allowed_hosts": ("testserver", "127.0.0.1")}  # the ASGI client's host
open_app = create_app(ServerConfig(home=_home / "open", **_limits), studio=False)
token_app = create_app(ServerConfig(home=_home / "token", token=TOKEN, **_limits), studio=False)
open_schema = schemathesis.openapi.from_asgi("/openapi.json", open_app)
token_schema = schemathesis.openapi.from_asgi("/openapi.json", token_app, headers={"Authorization": f"Bearer {TOKEN}"})

SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))
HEADERS: dict = {}


def _check(response, case) -> None:
    assert response.status_code < 500, f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}"


@open_schema.parametrize()
@SETTINGS
def test_no_server_error_without_auth(case):
    _check(case.call(headers=HEADERS), case)


@token_schema.parametrize()
@SETTINGS
def test_no_server_error_with_a_token(case):
    response = case.call(headers={**HEADERS, "Authorization": f"Bearer {TOKEN}"})
    _check(response, case)
    unauthorised = case.call(headers={**HEADERS, "Authorization": "Bearer not-the-token"})
    _check(unauthorised, case)
    if case.formatted_path != "/v1/health":
        assert unauthorised.status_code == 401


PATHOLOGICAL = [
    ("post", "/v1/jobs", {"json": {"face": "/" + "a" * 300 + ".png", "audio": "/" + "b" * 3000 + ".wav"}}),
    ("post", "/v1/jobs", {"json": {"face": "/x\x00.png", "audio": "/dev/null"}}),
    ("post", "/v1/jobs", {"json": {"face": "/proc/self/environ", "audio": "/etc"}}),
    ("post", "/v1/jobs", {"content": b"\xff\xfe", "headers": {"content-type": "application/json"}}),
    ("post", "/v1/jobs", {"content": b"garbage", "headers": {"content-type": "multipart/form-data; boundary=b"}}),
    ("post", "/v1/jobs", {"content": b'--b\r\nContent-Disposition: form-data; name="face"; filename="a.png"\r\n\r\nabc',
                          "headers": {"content-type": "multipart/form-data; boundary=b"}}),
    ("post", "/v1/jobs", {"content": b'--b\r\nContent-Disposition: form-data; filename="a.png"\r\n\r\nabc\r\n--b--\r\n',
                          "headers": {"content-type": "multipart/form-data; boundary=b"}}),
    ("post", "/v1/jobs", {"files": {"face": ("\x00../..\\evil.png", b"\x89PNG\r\n\x1a\n" + bytes(100))}}),
    ("post", "/v1/jobs", {"files": {"face": ("a.mp4", b"not a video"), "audio": ("a.mp3", b"not audio")}}),
    ("post", "/v1/identities", {"data": {"name": "ok", "consent": "x", "footage": "/" + "a" * 300 + ".mp4"}}),
    ("post", "/v1/identities", {"files": [("footage", ("a.mp4", b"xx"))], "data": {"name": "a" * 300, "consent": "x"}}),
    ("get", "/v1/identities/" + "a" * 300 + "/thumbnail", {}),
    ("get", "/v1/identity-tasks/..%2f..%2fetc", {}),
    ("get", "/v1/outputs/zip?job=" + "&job=".join(["x"] * 50), {}),
]


@pytest.mark.parametrize("method, path, kwargs", PATHOLOGICAL)
def test_pathological_requests_are_client_errors(method, path, kwargs):
    from fastapi.testclient import TestClient

    with TestClient(open_app, raise_server_exceptions=False) as client:
        r = getattr(client, method)(path, **kwargs)
    assert 400 <= r.status_code < 500, (path, r.status_code, r.text[:300])
    assert list((_home / "open" / "uploads").glob("*")) == [] if (_home / "open" / "uploads").exists() else True
