"""Issue 10, item 6: answers at the edges stay small, precise and documented."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from tests.conftest import READ_KEY


def test_a_body_full_of_bad_values_gets_a_short_answer(api: TestClient):
    body = json.dumps({"events": list(range(9000))})  # 9000 bad events: one error each
    resp = api.post("/v1/events", content=body, headers={"Content-Type": "application/json"})
    assert resp.status_code == 422
    problem = resp.json()
    assert len(problem["errors"]) == 50 and problem["errors_total"] >= 9000
    assert len(resp.content) < 20_000


def test_last_event_id_past_64_bits_is_a_400(api: TestClient):
    for bad in (f"{2**64}-0", f"1-{2**64}", "1-2-3", "abc"):
        resp = api.get(
            "/v1/stream", headers={"Authorization": f"Bearer {READ_KEY}", "Last-Event-ID": bad}
        )
        assert resp.status_code == 400, bad
        assert resp.headers["content-type"] == "application/problem+json"


def test_a_chunked_body_over_the_limit_is_a_413(api: TestClient, settings):
    def chunks():
        for _ in range(settings.max_body_bytes // 1000 + 2):
            yield b" " * 1000

    resp = api.post("/v1/orders", content=chunks(), headers={"Content-Type": "application/json"})
    assert resp.status_code == 413
    assert resp.headers["content-type"] == "application/problem+json"


def test_openapi_documents_every_answer_as_problem_json(api: TestClient):
    doc = api.get("/openapi.json").json()
    post = doc["paths"]["/v1/orders"]["post"]["responses"]
    assert {"200", "202", "401", "404", "409", "413", "422", "503"} <= set(post)
    get = doc["paths"]["/v1/stream"]["get"]["responses"]
    assert {"400", "401", "404", "422", "503"} <= set(get)
    for operations in doc["paths"].values():
        for operation in operations.values():
            for code, answer in operation["responses"].items():
                if int(code) >= 400:
                    assert list(answer["content"]) == ["application/problem+json"]
    problem = doc["components"]["schemas"]["ProblemDetail"]
    assert {"title", "status", "detail"} <= set(problem["properties"])
    bounds = doc["components"]["schemas"]["OrderLine"]["properties"]
    assert bounds["quantity"]["maximum"] == 1_000_000
    assert bounds["unit_price_minor"]["maximum"] == 10**14
