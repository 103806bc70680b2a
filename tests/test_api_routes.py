"""The HTTP API in process (FastAPI's TestClient on the app over a temporary data folder): what the routes
and the guard translate, where a real server process would add only start-up time. Behaviour that needs the
process (ports, signals, the HTTP parser, kill -9) stays in tests/test_service*.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from backend.service.api import create_app
from backend.service.config import ServiceSettings


@pytest.fixture(scope="module")
def api(tmp_path_factory) -> Iterator[TestClient]:
    """The app with its service opened (lifespan), addressed as a local program addresses it."""
    settings = ServiceSettings(data_dir=tmp_path_factory.mktemp("data"), torch_threads=1)
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
        client.headers["Authorization"] = f"Bearer {settings.token_path.read_text().strip()}"
        yield client


def test_health_versions_and_openapi(api):
    health = api.get("/health", headers={"Authorization": "", "Host": "localhost:8000"})
    assert health.status_code == 200 and health.json()["api_version"] == 1 and health.json()["version"]
    assert set(health.json()) == {"status", "service", "version", "api_version"}  # nothing private
    assert api.get("/openapi.json", headers={"Authorization": ""}).status_code == 401
    schema = api.get("/openapi.json")
    assert (
        schema.status_code == 200
        and "/v1/jobs/fit" in schema.json()["paths"]
        and "/v1/render" in schema.json()["paths"]
    )
    assert api.get("/docs").status_code == 404


def test_guard_refuses_wrong_tokens_foreign_hosts_and_browsers(api):
    assert api.get("/v1/shapes", headers={"Authorization": ""}).status_code == 401
    assert api.get("/v1/shapes", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert api.get("/no/such/path", headers={"Authorization": ""}).status_code == 401  # nothing learned without it
    for foreign in ("evil.example", "evil.example:8000", "127.0.0.1.evil.example", "localhost.:80"):
        answer = api.get("/health", headers={"Host": foreign})
        assert answer.status_code == 400 and "loopback" in answer.json()["detail"], foreign
    assert api.get("/v1/shapes", headers={"Host": "[::1]:8000"}).status_code == 200
    answer = api.get("/v1/shapes", headers={"Origin": "http://evil.example"})
    assert answer.status_code == 403 and "cross-origin" in answer.json()["detail"]


def test_unknown_ids_and_bad_queries_are_one_line_4xx(api):
    missing = api.get(f"/v1/shapes/{'0' * 32}")
    assert missing.status_code == 404 and "\n" not in missing.json()["detail"]
    assert api.get("/v1/shapes/not-an-id").status_code in (404, 422)
    bad = api.get("/v1/jobs?limit=-1")
    assert bad.status_code == 422 and "\n" not in str(bad.json()["detail"])


def test_fit_quality_is_checked_and_high_quality_costs_its_largest_net(api):
    body = {"uploads": ["0" * 32], "settings": {"batch_size": 524_288}}
    unknown = api.post("/v1/jobs/fit", json={**body, "quality": "best"})
    assert unknown.status_code == 422 and "quality" in str(unknown.json()["detail"])
    assert api.post("/v1/jobs/fit", json=body).status_code == 404  # the cost passes, the upload is unknown
    costly = api.post("/v1/jobs/fit", json={**body, "quality": "high"})  # an 8x128 net, four times as wide
    assert costly.status_code == 422 and "architecture.width" in costly.json()["detail"]
