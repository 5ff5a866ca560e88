"""Setting a service's replica count through Railway's public GraphQL API.

Railway scales each replica vertically by itself, but the number of replicas is a setting of the
service instance (one service in one environment). The documented calls, from "Manage Services
with the Public API" (https://docs.railway.com/integrations/api/manage-services, source
``railwayapp/docs`` ``content/docs/integrations/api/manage-services.md``) and "Public API"
(https://docs.railway.com/integrations/api), are:

* ``POST https://backboard.railway.com/graphql/v2`` with a JSON body ``{"query", "variables"}``,
  authenticated with ``Authorization: Bearer <account or workspace token>`` or
  ``Project-Access-Token: <project token>``;
* ``serviceInstanceUpdate(serviceId, environmentId, input: ServiceInstanceUpdateInput!)`` with
  ``input: {numReplicas: N}`` ("Number of replicas"), which answers a Boolean;
* ``serviceInstance(serviceId, environmentId) { numReplicas }`` to read the current count;
* ``serviceInstanceRedeploy(serviceId, environmentId)`` to redeploy (optional here).

Not verified against a live account here: whether a project applies a replica change at once or
with the next deployment (``STOLENTEE_SCALE_RAILWAY_REDEPLOY`` covers the latter), and how
``numReplicas`` combines with replicas spread over several regions.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import httpx

from stolentee import __version__
from stolentee.errors import ConfigurationError
from stolentee.scaling.errors import RailwayApiError

log = logging.getLogger(__name__)

UPDATE_REPLICAS = """\
mutation serviceInstanceUpdate($serviceId: String!, $environmentId: String!, \
$input: ServiceInstanceUpdateInput!) {
  serviceInstanceUpdate(serviceId: $serviceId, environmentId: $environmentId, input: $input)
}"""

READ_REPLICAS = """\
query serviceInstance($serviceId: String!, $environmentId: String!) {
  serviceInstance(serviceId: $serviceId, environmentId: $environmentId) {
    numReplicas
  }
}"""

REDEPLOY = """\
mutation serviceInstanceRedeploy($serviceId: String!, $environmentId: String!) {
  serviceInstanceRedeploy(serviceId: $serviceId, environmentId: $environmentId)
}"""

_SNIPPET = 300  # characters of an unexpected answer quoted in an error


class RailwayClient:
    """A small GraphQL client for Railway's public API (one ``httpx.Client``)."""

    def __init__(
        self,
        *,
        url: str,
        token: str,
        project_scoped: bool = False,
        timeout_s: float = 10.0,
        client: httpx.Client | None = None,
    ) -> None:
        if not token:
            raise ConfigurationError(
                "no Railway token: set RAILWAY_API_TOKEN (account or workspace token) or "
                "RAILWAY_TOKEN (project token)"
            )
        self.url = url
        # account and workspace tokens: Authorization: Bearer; project tokens: their own header
        auth = (
            {"Project-Access-Token": token}
            if project_scoped
            else {"Authorization": f"Bearer {token}"}
        )
        self._headers = {
            **auth,
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": f"stolentee/{__version__} (autoscale)",
        }
        self._client = client or httpx.Client(timeout=timeout_s, follow_redirects=False)

    def close(self) -> None:
        self._client.close()

    def execute(
        self, query: str, variables: Mapping[str, Any], *, operation: str
    ) -> dict[str, Any]:
        """The ``data`` of a GraphQL answer; :class:`RailwayApiError` on any kind of failure."""
        body = {"query": query, "variables": dict(variables), "operationName": operation}
        try:
            response = self._client.post(self.url, json=body, headers=self._headers)
        except httpx.TimeoutException as exc:
            raise RailwayApiError(f"{operation}: Railway's API at {self.url} timed out") from exc
        except httpx.HTTPError as exc:
            raise RailwayApiError(
                f"{operation}: could not reach Railway's API at {self.url}: {exc}"
            ) from exc
        payload = _json(response)
        errors = _graphql_errors(payload)
        if response.status_code != 200:
            hint = ""
            if response.status_code in (401, 403):
                hint = " (check RAILWAY_API_TOKEN / RAILWAY_TOKEN and its scope)"
            elif response.status_code == 429:
                retry = response.headers.get("Retry-After")
                hint = " (rate limited" + (f"; retry after {retry} s)" if retry else ")")
            detail = errors or _snippet(response.text)
            raise RailwayApiError(
                f"{operation}: Railway's API answered HTTP {response.status_code}{hint}: {detail}"
            )
        if errors:
            raise RailwayApiError(f"{operation}: Railway's API answered errors: {errors}")
        if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
            raise RailwayApiError(
                f"{operation}: Railway's API answered without data: {_snippet(response.text)}"
            )
        data: dict[str, Any] = payload["data"]
        return data


class RailwayBackend:
    """Reads and sets replica counts of our services in one Railway environment."""

    name = "railway"

    def __init__(
        self,
        *,
        client: RailwayClient,
        environment_id: str,
        service_ids: Mapping[str, str],
        redeploy: bool = False,
    ) -> None:
        missing = [service for service, found in service_ids.items() if not found]
        if not environment_id or missing:
            needed = ["RAILWAY_ENVIRONMENT_ID"] if not environment_id else []
            needed += [f"RAILWAY_{service.upper()}_SERVICE_ID" for service in missing]
            raise ConfigurationError(f"the railway backend needs {', '.join(needed)}")
        self._client = client
        self._environment_id = environment_id
        self._service_ids = dict(service_ids)
        self._redeploy = redeploy

    def close(self) -> None:
        self._client.close()

    def _ids(self, service: str) -> dict[str, str]:
        try:
            service_id = self._service_ids[service]
        except KeyError:
            raise RailwayApiError(f"no Railway service id for {service!r}") from None
        return {"serviceId": service_id, "environmentId": self._environment_id}

    def current_replicas(self, service: str) -> int | None:
        data = self._client.execute(READ_REPLICAS, self._ids(service), operation="serviceInstance")
        instance = data.get("serviceInstance")
        if not isinstance(instance, dict):
            raise RailwayApiError(f"serviceInstance: no instance of {service!r} in the answer")
        count = instance.get("numReplicas")
        if count is None:
            return None
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise RailwayApiError(f"serviceInstance: numReplicas is {count!r}")
        return count

    def set_replicas(self, service: str, replicas: int, *, reason: str) -> None:
        variables = {**self._ids(service), "input": {"numReplicas": replicas}}
        data = self._client.execute(UPDATE_REPLICAS, variables, operation="serviceInstanceUpdate")
        if data.get("serviceInstanceUpdate") is not True:
            raise RailwayApiError(
                f"serviceInstanceUpdate: Railway did not confirm the change of {service!r} "
                f"(answered {data.get('serviceInstanceUpdate')!r})"
            )
        log.info("railway: %s set to %d replicas (%s)", service, replicas, reason)
        if self._redeploy:
            self._client.execute(REDEPLOY, self._ids(service), operation="serviceInstanceRedeploy")
            log.info("railway: %s redeployed", service)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def _graphql_errors(payload: Any) -> str:
    """The messages of a GraphQL ``errors`` list, joined; empty when there are none."""
    if not isinstance(payload, dict):
        return ""
    errors = payload.get("errors")
    if not isinstance(errors, list) or not errors:
        return ""
    messages = []
    for error in errors:
        message = error.get("message") if isinstance(error, dict) else None
        messages.append(str(message) if message else _snippet(json.dumps(error)))
    return "; ".join(messages)


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _SNIPPET else text[:_SNIPPET] + "..."
