"""Schema-based and property-based fuzzing of the REST API with schemathesis, against a real
gateway process and its own OpenAPI document (fetched with a bearer token, as a client
would): valid and schema-violating requests, with and without a session. Every answer is
below 500, and every error is JSON with an ``error`` message."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import schemathesis
from gateway_fixtures import GatewayFactory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.core.result import Ok

# Per operation and generation mode; ten operations, two modes: a few hundred requests.
EXAMPLES = 40


def check_answer(response: httpx.Response, what: str) -> None:
    assert response.status_code < 500, f"{what}: {response.status_code} {response.text[:300]}"
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body, dict), what
        assert isinstance(body.get("error"), str), f"{what}: {body}"
        assert body["error"], what


def run_examples(
    strategy: st.SearchStrategy[Case[Any]], one: Callable[[Case[Any], bool], None]
) -> None:
    """``one(case, signed_in)`` for EXAMPLES cases of ``strategy``, half with a session."""

    @given(case=strategy, signed_in=st.booleans())
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: Case[Any], signed_in: bool) -> None:
        one(case, signed_in)

    fuzz()


@pytest.mark.timeout(120)
def test_rest_api_fuzzed_from_its_openapi_never_5xx_and_errors_are_json(
    gateway_factory: GatewayFactory,
) -> None:
    # Wrong secrets must reach the validator and the comparison, not only the rate limit.
    gateway = gateway_factory(sign_in_attempts_per_minute="100000")
    auth = gateway.auth()
    document = httpx.get(f"{gateway.url}/openapi.json", headers=auth).json()
    schema = schemathesis.openapi.from_dict(document)
    statuses: Counter[int] = Counter()
    operations = 0
    sent = 0

    with httpx.Client(base_url=gateway.url, timeout=10) as http:

        def send(case: Case[Any], headers: dict[str, str]) -> httpx.Response:
            nonlocal sent
            kwargs: dict[str, Any] = case.as_transport_kwargs(base_url=gateway.url)
            merged = {**(kwargs.get("headers") or {}), **headers}
            cookies = kwargs.get("cookies") or {}
            if cookies:
                merged["cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
            body: dict[str, Any] = {}
            if "json" in kwargs:
                body["content"] = json.dumps(kwargs["json"]).encode()
                merged.setdefault("content-type", "application/json")
            elif kwargs.get("data") is not None:
                data = kwargs["data"]
                body["content"] = data if isinstance(data, bytes) else str(data).encode()
            response = http.request(
                kwargs["method"],
                kwargs["url"],
                params=kwargs.get("params"),
                headers={k: str(v) for k, v in merged.items()},
                **body,
            )
            sent += 1
            statuses[response.status_code] += 1
            return response

        for result in schema.get_all_operations():
            assert isinstance(result, Ok), result
            operation = result.ok()
            operations += 1
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

                def one(case: Case[Any], signed_in: bool, mode: GenerationMode = mode) -> None:
                    what = f"{case.method} {case.formatted_path} ({mode}, session={signed_in})"
                    check_answer(send(case, auth if signed_in else {}), what)

                try:
                    run_examples(operation.as_strategy(generation_mode=mode), one)
                except Unsatisfiable:
                    # No way to break the schema of an operation that takes nothing.
                    assert mode == GenerationMode.NEGATIVE

    print(f"\nschemathesis: {operations} operations, {sent} requests, statuses {dict(statuses)}")
    assert operations >= 10
    assert sent >= 200
    assert statuses[401] > 0  # the unsigned half was refused
    assert sum(n for s, n in statuses.items() if s < 300) > 0
