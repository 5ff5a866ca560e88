"""The Railway backend against a local HTTP server that checks the documented GraphQL requests.

Documented at https://docs.railway.com/integrations/api (endpoint, ``Authorization: Bearer``,
``Project-Access-Token``) and https://docs.railway.com/integrations/api/manage-services
(``serviceInstanceUpdate`` with ``input: {numReplicas}``, ``serviceInstance { numReplicas }``).
"""

from __future__ import annotations

from typing import Any

import pytest

from stolentee.errors import ConfigurationError
from stolentee.scaling import railway
from stolentee.scaling.errors import RailwayApiError
from stolentee.scaling.railway import RailwayBackend, RailwayClient
from tests.scaling.conftest import LocalServer, Recorded, Reply

PATH = "/graphql/v2"
TOKEN = "rw-account-token-1234"
ENV_ID = "env-0b1c"
IDS = {"api": "svc-api-7f", "worker": "svc-worker-9a"}


class FakeRailway:
    """Answers like Railway's API and checks each request is the documented one."""

    def __init__(self, replicas: dict[str, int] | None = None) -> None:
        self.replicas = dict(replicas or {})
        self.problems: list[str] = []

    def __call__(self, request: Recorded) -> Reply:
        if request.method != "POST" or request.path != PATH:
            return Reply(404, "not found")
        if not request.headers.get("content-type", "").startswith("application/json"):
            return Reply(400, {"errors": [{"message": "expected JSON"}]})
        body = request.json()
        query, variables = body["query"], body["variables"]
        service_id = variables.get("serviceId")
        if variables.get("environmentId") != ENV_ID or service_id not in IDS.values():
            return Reply(200, {"errors": [{"message": "Service instance not found"}]})
        if "serviceInstanceUpdate(" in query:
            count = variables["input"]["numReplicas"]
            self.replicas[service_id] = count
            return Reply(200, {"data": {"serviceInstanceUpdate": True}})
        if "serviceInstance(" in query:
            found = self.replicas.get(service_id)
            return Reply(200, {"data": {"serviceInstance": {"numReplicas": found}}})
        if "serviceInstanceRedeploy(" in query:
            return Reply(200, {"data": {"serviceInstanceRedeploy": True}})
        return Reply(200, {"errors": [{"message": "Cannot query field"}]})


def backend(server: LocalServer, *, token: str = TOKEN, **kwargs: Any) -> RailwayBackend:
    client = RailwayClient(
        url=server.url(PATH),
        token=token,
        project_scoped=kwargs.pop("project_scoped", False),
        timeout_s=kwargs.pop("timeout_s", 5),
    )
    return RailwayBackend(client=client, environment_id=ENV_ID, service_ids=IDS, **kwargs)


def test_set_replicas_sends_the_documented_mutation(server: LocalServer) -> None:
    fake = FakeRailway()
    server.responder = fake
    scaler = backend(server)
    try:
        scaler.set_replicas("worker", 3, reason="queue depth 45")
    finally:
        scaler.close()
    (request,) = server.requests
    assert (request.method, request.path) == ("POST", "/graphql/v2")
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert "project-access-token" not in request.headers
    assert request.headers["content-type"] == "application/json"
    body = request.json()
    assert body["variables"] == {
        "serviceId": "svc-worker-9a",
        "environmentId": ENV_ID,
        "input": {"numReplicas": 3},
    }
    assert body["operationName"] == "serviceInstanceUpdate"
    assert " ".join(body["query"].split()) == (
        "mutation serviceInstanceUpdate($serviceId: String!, $environmentId: String!, "
        "$input: ServiceInstanceUpdateInput!) { serviceInstanceUpdate(serviceId: $serviceId, "
        "environmentId: $environmentId, input: $input) }"
    )
    assert fake.replicas == {"svc-worker-9a": 3}


def test_the_queries_are_valid_graphql() -> None:
    graphql = pytest.importorskip("graphql")
    expected = {
        railway.UPDATE_REPLICAS: ("mutation", "serviceInstanceUpdate"),
        railway.READ_REPLICAS: ("query", "serviceInstance"),
        railway.REDEPLOY: ("mutation", "serviceInstanceRedeploy"),
    }
    for text, (kind, name) in expected.items():
        (operation,) = graphql.parse(text).definitions
        assert (operation.operation.value, operation.name.value) == (kind, name)
        variables = {v.variable.name.value for v in operation.variable_definitions}
        assert {"serviceId", "environmentId"} <= variables


def test_current_replicas_reads_num_replicas(server: LocalServer) -> None:
    server.responder = FakeRailway({"svc-api-7f": 2})
    scaler = backend(server)
    try:
        assert scaler.current_replicas("api") == 2
        assert scaler.current_replicas("worker") is None
    finally:
        scaler.close()
    body = server.requests[0].json()
    assert body["operationName"] == "serviceInstance"
    assert "numReplicas" in body["query"]
    assert body["variables"] == {"serviceId": "svc-api-7f", "environmentId": ENV_ID}


def test_a_project_token_goes_in_its_own_header(server: LocalServer) -> None:
    server.responder = FakeRailway()
    scaler = backend(server, token="project-token-5678", project_scoped=True)
    try:
        scaler.set_replicas("api", 2, reason="cpu")
    finally:
        scaler.close()
    headers = server.requests[0].headers
    assert headers["project-access-token"] == "project-token-5678"
    assert "authorization" not in headers


def test_redeploy_after_the_change_when_asked(server: LocalServer) -> None:
    server.responder = FakeRailway()
    scaler = backend(server, redeploy=True)
    try:
        scaler.set_replicas("api", 2, reason="cpu")
    finally:
        scaler.close()
    assert [r.json()["operationName"] for r in server.requests] == [
        "serviceInstanceUpdate",
        "serviceInstanceRedeploy",
    ]


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        pytest.param(
            Reply(200, {"errors": [{"message": "Not Authorized"}], "data": None}),
            "serviceInstanceUpdate: Railway's API answered errors: Not Authorized",
            id="graphql-errors",
        ),
        pytest.param(
            Reply(401, {"errors": [{"message": "Not Authorized"}]}),
            "answered HTTP 401 (check RAILWAY_API_TOKEN / RAILWAY_TOKEN and its scope): "
            "Not Authorized",
            id="http-401",
        ),
        pytest.param(
            Reply(429, "slow down", {"Retry-After": "60"}),
            "answered HTTP 429 (rate limited; retry after 60 s): slow down",
            id="http-429",
        ),
        pytest.param(
            Reply(502, "<html>Bad gateway</html>"),
            "answered HTTP 502: <html>Bad gateway</html>",
            id="http-502-html",
        ),
        pytest.param(
            Reply(200, "not json"),
            "answered without data: not json",
            id="not-json",
        ),
        pytest.param(
            Reply(200, {"data": {"serviceInstanceUpdate": False}}),
            "Railway did not confirm the change of 'worker' (answered False)",
            id="not-confirmed",
        ),
    ],
)
def test_failures_are_clear_errors_without_the_token(
    server: LocalServer, reply: Reply, message: str
) -> None:
    server.responder = lambda request: reply
    scaler = backend(server)
    try:
        with pytest.raises(RailwayApiError) as caught:
            scaler.set_replicas("worker", 2, reason="queue")
    finally:
        scaler.close()
    assert message in caught.value.detail
    assert TOKEN not in caught.value.detail
    assert caught.value.code == "railway_api_error"


def test_an_unreachable_api_is_a_clear_error() -> None:
    client = RailwayClient(url="http://127.0.0.1:9/graphql/v2", token=TOKEN, timeout_s=2)
    scaler = RailwayBackend(client=client, environment_id=ENV_ID, service_ids=IDS)
    try:
        with pytest.raises(RailwayApiError, match="could not reach Railway's API at http://127"):
            scaler.current_replicas("api")
    finally:
        scaler.close()


def test_missing_token_or_ids_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="RAILWAY_API_TOKEN"):
        RailwayClient(url="http://127.0.0.1:9/", token="")
    client = RailwayClient(url="http://127.0.0.1:9/", token=TOKEN)
    with pytest.raises(
        ConfigurationError, match="RAILWAY_ENVIRONMENT_ID, RAILWAY_WORKER_SERVICE_ID"
    ):
        RailwayBackend(client=client, environment_id="", service_ids={"api": "a", "worker": ""})
    client.close()


def test_the_default_endpoint_is_railways() -> None:
    from stolentee.config import RAILWAY_API_URL, ScalingSettings

    assert RAILWAY_API_URL == "https://backboard.railway.com/graphql/v2"
    assert ScalingSettings().railway_api_url == RAILWAY_API_URL
