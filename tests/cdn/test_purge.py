"""The purge backends and the purge job: Cloudflare's request shape against a local stand-in,
Varnish's refusals, what is retried and what is not, the jobs a DELETE queues, and bad purge
settings refused at start-up."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import select

from stolentee.api.app import create_app
from stolentee.cdn.jobs import CDN_PURGE_JOB, purge_handler
from stolentee.cdn.purge import (
    CloudflarePurger,
    PurgeRejectedError,
    PurgeRetryableError,
    VarnishPurger,
    build_purger,
)
from stolentee.config import CdnSettings
from stolentee.db.models import Job
from stolentee.errors import ConfigurationError
from stolentee.jobs.runs import PermanentJobError
from tests.fakes import cloudflare
from tests.fakes.callback_receiver import Receiver

from ..conftest import SettingsFactory
from ..removal.conftest import composite, draw_logo, encode

KEY = "st_cdn_purge_key"
LOGO = encode(composite(draw_logo((120, 80)), (255, 255, 255)))


@pytest.fixture
def standin() -> Iterator[cloudflare.CloudflareStandIn]:
    server = cloudflare.CloudflareStandIn().start()
    yield server
    server.stop()


def cloudflare_purger(standin: cloudflare.CloudflareStandIn, token: str = cloudflare.TOKEN) -> Any:
    return CloudflarePurger(
        api_url=standin.url, zone_id=cloudflare.ZONE, token=token, client=httpx.Client(timeout=5)
    )


def test_cloudflare_gets_absolute_urls_in_batches_of_30_with_the_token(
    standin: cloudflare.CloudflareStandIn,
) -> None:
    urls = [f"https://assets.example.com/assets/cutouts/{n:064x}.png" for n in range(65)]
    cloudflare_purger(standin).purge(urls)
    batches = [json.loads(request["body"])["files"] for request in standin.requests]
    assert [len(batch) for batch in batches] == [30, 30, 5]
    assert standin.purged == urls
    assert {request["headers"]["Content-Type"] for request in standin.requests} == {
        "application/json"
    }


def test_cloudflares_rate_limit_is_waited_out_and_a_bad_token_is_final(
    standin: cloudflare.CloudflareStandIn,
) -> None:
    standin.rate_limited = 1  # 429 with Retry-After: 1
    started = time.monotonic()
    cloudflare_purger(standin).purge(["https://assets.example.com/uploads/a/original.png"])
    assert time.monotonic() - started >= 1.0 and len(standin.purged) == 1
    standin.rate_limited = 2  # still limited after the wait: the queue retries later
    with pytest.raises(PurgeRetryableError):
        cloudflare_purger(standin).purge(["https://assets.example.com/uploads/b/original.png"])
    with pytest.raises(PurgeRejectedError, match="Authentication error"):
        cloudflare_purger(standin, token="wrong").purge(["https://assets.example.com/x.png"])


def job(urls: list[str]) -> Job:
    return Job(id="j1", kind=CDN_PURGE_JOB, payload={"urls": urls}, state="processing")


def test_the_purge_job_retries_what_may_pass_later_and_fails_a_refusal_for_good() -> None:
    counted: list[tuple[str, str, int]] = []

    def observe(backend: str, outcome: str, urls: int) -> None:
        counted.append((backend, outcome, urls))

    down = VarnishPurger(purge_url="http://127.0.0.1:9", client=httpx.Client(timeout=2))
    with pytest.raises(PurgeRetryableError):  # the queue's backoff takes it from here
        purge_handler(down, observe=observe)(job(["/uploads/a/original.png"]), None)  # type: ignore[arg-type]

    refusing = Receiver([403]).start()  # a Varnish whose ACL does not list us
    try:
        acl = VarnishPurger(purge_url=refusing.url(""), client=httpx.Client(timeout=2))
        with pytest.raises(PermanentJobError, match="purgers ACL"):
            purge_handler(acl, observe=observe)(job(["/uploads/a/original.png"]), None)  # type: ignore[arg-type]
    finally:
        refusing.stop()
    assert counted == [("varnish", "retried", 1), ("varnish", "rejected", 1)]


def test_a_delete_queues_one_purge_of_the_original_and_the_unshared_cutout(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(
        api={"api_keys": KEY},
        cdn={"purge_backend": "varnish", "purge_url": "http://127.0.0.1:9"},
        service={"public_base_url": "https://shop.example.com"},
    )
    headers = {"X-Api-Key": KEY}
    with TestClient(create_app(settings), headers=headers) as client:
        ids = [
            client.post("/v1/designs", files={"file": ("l.png", LOGO)}).json()["id"] for _ in (1, 2)
        ]
        bodies = {}
        for design_id in ids:
            deadline = time.monotonic() + 60
            while (body := client.get(f"/v1/designs/{design_id}").json())["status"] != "done":
                assert time.monotonic() < deadline
                time.sleep(0.1)
            bodies[design_id] = body
        runtime = client.app.state.services.runtime  # type: ignore[attr-defined]
        runtime.worker.stop(10)  # the purge jobs stay queued, to be looked at

        assert client.delete(f"/v1/designs/{ids[0]}").status_code == 204
        assert client.delete(f"/v1/designs/{ids[1]}").status_code == 204
        with runtime.database.session() as session:
            purges = list(session.scalars(select(Job).where(Job.kind == CDN_PURGE_JOB)))
            session.expunge_all()
    first, second = (bodies[i] for i in ids)
    assert first["cutout"]["url"] == second["cutout"]["url"]  # the same logo: one shared cutout
    urls = sorted(tuple(j.payload["urls"]) for j in purges)
    assert urls == sorted(
        [
            (first["original"]["url"],),  # the cutout was still another design's
            (second["original"]["url"], second["cutout"]["url"]),  # its last design went
        ]
    )
    assert all(url.startswith("https://shop.example.com/") for pair in urls for url in pair)


@pytest.mark.parametrize(
    ("cdn", "why"),
    [
        ({"purge_backend": "varnish"}, "needs STOLENTEE_CDN_PURGE_URL"),
        ({"purge_backend": "cloudflare", "cloudflare_zone_id": cloudflare.ZONE}, "API_TOKEN"),
        (
            {
                "purge_backend": "cloudflare",
                "cloudflare_zone_id": cloudflare.ZONE,
                "cloudflare_api_token": "t",
            },
            "purges absolute URLs",
        ),
    ],
)
def test_bad_purge_settings_stop_the_start_up(
    make_settings: SettingsFactory, cdn: dict[str, str], why: str
) -> None:
    settings = make_settings(cdn=cdn)
    with pytest.raises(ConfigurationError, match=why):
        build_purger(settings)
    with pytest.raises(ConfigurationError, match=why), TestClient(create_app(settings)):
        pass


@pytest.mark.parametrize(
    "values",
    [
        {"purge_backend": "fastly"},
        {"purge_url": "ftp://varnish"},
        {"purge_url": "http://varnish:6081/?x=1"},
        {"cloudflare_zone_id": "not-a-zone"},
    ],
)
def test_malformed_purge_settings_are_refused(values: dict[str, str]) -> None:
    with pytest.raises(ValidationError, match="validation error"):
        CdnSettings(**values)
