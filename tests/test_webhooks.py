"""Webhooks: signatures, the SSRF guard on webhook URLs, retries, and delivery by a real server.

Traffic only ever goes to 127.0.0.1: an autouse guard makes any other connect() in this process
fail the test, and refused addresses are refused before a connection is attempted.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest

from openremix.config import Settings
from openremix.contract.errors import InputImageError, InvalidRequest, UnsafeURL
from openremix.jobs.model import NewJob
from openremix.jobs.params import WEBHOOK_KEY
from openremix.jobs.sqlite.store import SQLiteJobStore
from openremix.jobs.store import JobStore
from openremix.webhooks.dispatcher import WebhookDispatcher, webhook_addresses
from openremix.webhooks.request_fields import parse_webhook_fields
from openremix.webhooks.signing import (
    SECRET_FILE,
    WebhookVerificationError,
    load_secret,
    new_secret,
    sign,
    verify,
)
from tests.support.servers import TEST_KEY, OpenRemixProcess, forbid_non_loopback, http_server

MODEL = "ideogram-3-remix"
HEADERS = {"x-api-key": TEST_KEY}

# The Standard Webhooks reference vector (standard-webhooks/libraries/python/tests).
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


# --- a receiver on loopback ----------------------------------------------------------------------
@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


class Receiver(BaseHTTPRequestHandler):
    """Records every POST; answers each path with its scripted statuses, then 200."""

    protocol_version = "HTTP/1.1"
    received: list[Received] = []  # noqa: RUF012 - shared on purpose, one server per module
    scripts: dict[str, list[int]] = {}  # noqa: RUF012

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        cls = type(self)
        cls.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()},
                                     body, time.time()))
        script = cls.scripts.get(self.path) or []
        status = script.pop(0) if script else 200
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.send_response(status)
            if status == 302:
                self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    @classmethod
    def at(cls, path: str) -> list[Received]:
        return [r for r in cls.received if r.path == path]


@pytest.fixture(scope="module")
def receiver() -> Iterator[str]:
    with http_server(Receiver) as url:
        yield url


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail loudly if anything in this process connects anywhere but loopback."""
    forbid_non_loopback(monkeypatch)


def wait_for(predicate: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("timed out waiting")


# --- signing --------------------------------------------------------------------------------------
def test_signature_matches_the_standard_webhooks_reference_vector():
    assert sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY) == VECTOR_SIGNATURE


def test_verify_accepts_a_signed_message_and_returns_its_json():
    headers = {"Webhook-Id": VECTOR_ID, "Webhook-Timestamp": str(VECTOR_TIMESTAMP),
               "Webhook-Signature": f"v1,bm9wZQ== {VECTOR_SIGNATURE}"}
    payload = verify(VECTOR_SECRET, headers, VECTOR_BODY, now=VECTOR_TIMESTAMP + 10)
    assert payload == {"test": 2432232314}


@pytest.mark.parametrize("change", ["body", "id", "old", "missing", "secret"])
def test_verify_refuses_tampering_replays_and_missing_headers(change: str):
    headers = {"webhook-id": VECTOR_ID, "webhook-timestamp": str(VECTOR_TIMESTAMP),
               "webhook-signature": VECTOR_SIGNATURE}
    body, secret, now = VECTOR_BODY, VECTOR_SECRET, float(VECTOR_TIMESTAMP)
    if change == "body":
        body = b'{"test": 2432232315}'
    elif change == "id":
        headers["webhook-id"] = "msg_other"
    elif change == "old":
        now += 301
    elif change == "missing":
        del headers["webhook-signature"]
    else:
        secret = new_secret()
    with pytest.raises(WebhookVerificationError):
        verify(secret, headers, body, now=now)


def test_a_plain_secret_signs_with_its_utf8_bytes():
    expected = hmac.new(b"s3cret", b"msg_1.1700000000.{}", hashlib.sha256).digest()
    assert sign("s3cret", "msg_1", 1700000000, b"{}") == "v1," + base64.b64encode(expected).decode()


def test_the_secret_is_made_once_per_data_folder_with_mode_600(tmp_path: Path):
    settings = Settings(data_dir=tmp_path)
    secret, path = load_secret(settings)
    assert path == tmp_path / SECRET_FILE and secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_secret(settings) == (secret, path)
    configured = Settings(data_dir=tmp_path, webhook_secret=VECTOR_SECRET)
    assert load_secret(configured) == (VECTOR_SECRET, None)
    with pytest.raises(ValueError):
        load_secret(Settings(data_dir=tmp_path, webhook_secret="whsec_not base64!"))


# --- the submit fields and the address guard ----------------------------------------------------
def test_webhook_fields_are_split_off_with_default_events():
    rest, hook = parse_webhook_fields(
        {"prompt": "p", "webhook_url": "https://hooks.example.com/x"}, allow_private=False)
    assert rest == {"prompt": "p"}
    assert hook == {"url": "https://hooks.example.com/x", "events": ["completed", "failed"]}
    _, hook = parse_webhook_fields({"webhook_url": "http://h.example/", "webhook_events":
                                    ["FAILED"]}, allow_private=False)
    assert hook is not None and hook["events"] == ["failed"]
    _, hook = parse_webhook_fields({"webhook_url": "http://h.example/", "webhook_events":
                                    "completed, failed"}, allow_private=False)
    assert hook is not None and hook["events"] == ["completed", "failed"]
    assert parse_webhook_fields({"webhook_url": None, "webhook_events": []},
                                allow_private=False) == ({}, None)


@pytest.mark.parametrize(("fields", "named"), [
    ({"webhook_url": "ftp://hooks.example.com/"}, "webhook_url"),
    ({"webhook_url": "not a url"}, "webhook_url"),
    ({"webhook_url": 42}, "webhook_url"),
    ({"webhook_url": "http://127.0.0.1:9/hook"}, "webhook_url"),
    ({"webhook_url": "http://10.0.0.1/hook"}, "webhook_url"),
    ({"webhook_url": "http://localhost/hook"}, "webhook_url"),
    ({"webhook_url": "http://169.254.169.254/latest"}, "webhook_url"),
    ({"webhook_url": "http://h.example/", "webhook_events": ["done"]}, "webhook_events"),
    ({"webhook_events": ["failed"]}, "webhook_events"),
])
def test_bad_webhook_fields_are_refused_naming_the_field(fields: dict, named: str):
    with pytest.raises(InvalidRequest) as caught:
        parse_webhook_fields(fields, allow_private=False)
    assert caught.value.field == named
    assert str(caught.value).startswith(f"{named}: ")


@pytest.mark.parametrize("url", ["http://127.0.0.1/h", "http://10.0.0.1/h",
                                 "http://169.254.169.254/h", "http://[::1]/h"])
def test_delivery_refuses_private_and_metadata_addresses(url: str):
    with pytest.raises(UnsafeURL, match="webhook_url"):
        webhook_addresses(url, allow_private=False)


def test_delivery_checks_every_address_a_name_resolves_to():
    def resolver(answer: list[str]) -> Any:
        return lambda host: answer

    url, ips = webhook_addresses("https://hooks.example.com/x", allow_private=False,
                                 resolver=resolver(["93.184.216.34"]))
    assert ips == ["93.184.216.34"] and url.host == "hooks.example.com"
    with pytest.raises(UnsafeURL):
        webhook_addresses("https://hooks.example.com/x", allow_private=False,
                          resolver=resolver(["93.184.216.34", "10.0.0.1"]))
    with pytest.raises(UnsafeURL, match="metadata"):  # refused even where private is allowed
        webhook_addresses("http://rebind.example/x", allow_private=True,
                          resolver=resolver(["169.254.169.254"]))
    assert webhook_addresses("http://127.0.0.1:9/h", allow_private=True)[1] == ["127.0.0.1"]
    with pytest.raises(InputImageError, match="resolve"):
        webhook_addresses("http://nowhere.invalid/", allow_private=False,
                          resolver=lambda host: [])


# --- the dispatcher over a store, with a fake clock ----------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, clock: FakeClock) -> Iterator[JobStore]:
    """The dispatcher's store: an SQLite file, or a database on the test PostgreSQL server."""
    made: JobStore
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_db")  # skips, saying why, without a server
        from openremix.jobs.postgres.store import PostgresJobStore

        made = PostgresJobStore(url, clock=clock)
    else:
        made = SQLiteJobStore(request.getfixturevalue("tmp_path") / "jobs.sqlite3", clock=clock)
    yield made
    made.close()


def failed_job_with_webhook(store: JobStore, url: str) -> str:
    key, _ = store.create_api_key("t", credits=10)
    new = NewJob(request_id=f"req-{time.monotonic_ns()}", model=MODEL, api_key_id=key.key_id,
                 params={"prompt": "p", WEBHOOK_KEY: {"url": url, "events": ["failed"],
                                                      "base_url": "http://x"}}, cost=1.0)
    store.enqueue(new)
    assert store.fail(new.request_id, None, "cancelled")
    return new.request_id


def test_a_failing_receiver_is_retried_with_backoff_for_an_hour_then_given_up(
        store: JobStore, clock: FakeClock, receiver: str):
    path = f"/always-500/{type(store).__name__}"  # one path per store: the receiver is shared
    Receiver.scripts[path] = [500] * 100
    request_id = failed_job_with_webhook(store, receiver + path)
    dispatcher = WebhookDispatcher(store, VECTOR_SECRET, allow_private=True, clock=clock)
    first = clock.now
    gaps = []
    while True:
        assert dispatcher.run_once() == 1
        [delivery] = store.get_webhook_deliveries(request_id)
        if delivery.next_attempt_at is None:
            break
        gaps.append(delivery.next_attempt_at - clock.now)
        clock.now = delivery.next_attempt_at
    assert gaps == [5, 15, 45, 135, 405, 600, 600, 600, 600]
    assert clock.now - first <= 3600 < clock.now - first + 600
    assert (delivery.attempts, delivery.last_error, delivery.delivered_at) == (10, "HTTP 500", None)
    assert dispatcher.run_once() == 0
    sent = Receiver.at(path)
    assert len(sent) == 10 and len({r.headers["webhook-id"] for r in sent}) == 1


def test_refused_addresses_are_given_up_without_any_traffic(store: JobStore,
                                                            clock: FakeClock):
    request_id = failed_job_with_webhook(store, "http://10.0.0.1/hook")
    dispatcher = WebhookDispatcher(store, VECTOR_SECRET, allow_private=False, clock=clock)
    assert dispatcher.run_once() == 1
    [delivery] = store.get_webhook_deliveries(request_id)
    assert delivery.next_attempt_at is None and delivery.delivered_at is None
    assert "private, loopback" in (delivery.last_error or "")


def test_redirects_are_not_followed(store: JobStore, clock: FakeClock, receiver: str):
    Receiver.scripts["/moved"] = [302]
    request_id = failed_job_with_webhook(store, receiver + "/moved")
    WebhookDispatcher(store, VECTOR_SECRET, allow_private=True, clock=clock).run_once()
    [delivery] = store.get_webhook_deliveries(request_id)
    assert delivery.last_error == "HTTP 302 (redirects are not followed)"
    assert delivery.next_attempt_at == clock.now + 5
    assert Receiver.at("/elsewhere") == []


# --- end to end: a real `openremix serve` and a real receiver -----------------------------------
@pytest.fixture(scope="module")
def hook_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenRemixProcess]:
    proc = OpenRemixProcess("serve", tmp_path_factory.mktemp("webhooks"), {
        "OPENREMIX_ALLOW_PRIVATE_URLS": "1",  # the receiver is on 127.0.0.1
        "OPENREMIX_WEBHOOK_RETRY_BASE_SECONDS": "0.2",
    }).wait_ready()
    yield proc
    proc.stop()


def submit(server: OpenRemixProcess, image: str, **extra: Any) -> str:
    body = {"image": image, "prompt": "a watercolour harbour at dawn", "seed": 3,
            "rendering_speed": "TURBO", **extra}
    response = httpx.post(f"{server.base_url}/v2/{MODEL}", json=body, headers=HEADERS)
    assert response.status_code == 200, response.text
    return str(response.json()["request_id"])


def finished_status(server: OpenRemixProcess, request_id: str) -> httpx.Response:
    def terminal() -> httpx.Response | None:
        got = httpx.get(f"{server.base_url}/v2/requests/{request_id}/status", headers=HEADERS)
        return got if got.json()["status"] in ("COMPLETED", "FAILED") else None

    return wait_for(terminal)


def server_store(server: OpenRemixProcess) -> SQLiteJobStore:
    return SQLiteJobStore(server.data_dir / "openremix.db")


def test_a_completed_job_delivers_its_signed_status_body(hook_server, receiver, astronaut_uri):
    request_id = submit(hook_server, astronaut_uri, webhook_url=receiver + "/done")
    status = finished_status(hook_server, request_id)
    [received] = wait_for(lambda: Receiver.at("/done"))
    assert received.body == status.content  # byte for byte the /status body
    assert json.loads(received.body)["status"] == "COMPLETED"
    headers = received.headers
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"].startswith("openremix/")
    assert headers["webhook-id"].startswith("msg_")
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
    secret = (hook_server.data_dir / SECRET_FILE).read_text().strip()
    assert verify(secret, headers, received.body)["request_id"] == request_id
    store = server_store(hook_server)
    job = store.get(request_id)
    [delivery] = wait_for(lambda: [d for d in store.get_webhook_deliveries(request_id)
                                   if d.delivered_at])
    store.close()
    assert job is not None and job.finished_at is not None
    assert delivery.delivery_id == headers["webhook-id"] and delivery.attempts == 1
    latency = received.at - job.finished_at
    print(f"webhook delivered {latency * 1000:.0f} ms after the job completed")
    assert latency < 2.0


def test_a_receiver_that_fails_twice_gets_three_attempts_with_one_id(
        hook_server, receiver, astronaut_uri):
    Receiver.scripts["/flaky"] = [500, 500]
    request_id = submit(hook_server, astronaut_uri, webhook_url=receiver + "/flaky")
    attempts = wait_for(lambda: Receiver.at("/flaky")[2:] and Receiver.at("/flaky"))
    assert len({r.headers["webhook-id"] for r in attempts}) == 1
    assert attempts[1].at - attempts[0].at >= 0.2 and attempts[2].at - attempts[1].at >= 0.6
    store = server_store(hook_server)
    [delivery] = wait_for(lambda: [d for d in store.get_webhook_deliveries(request_id)
                                   if d.delivered_at])
    store.close()
    assert delivery.attempts == 3 and delivery.last_error is None


def test_an_unwanted_event_sends_nothing(hook_server, receiver, astronaut_uri):
    request_id = submit(hook_server, astronaut_uri, webhook_url=receiver + "/only-failed",
                        webhook_events=["failed"])
    assert finished_status(hook_server, request_id).json()["status"] == "COMPLETED"
    store = server_store(hook_server)
    assert store.get_webhook_deliveries(request_id) == []  # written with the state, or never
    store.close()
    assert Receiver.at("/only-failed") == []


def test_a_blocked_prompt_delivers_a_failed_event(hook_server, receiver, astronaut_uri):
    from openremix.engine.style.engine import DEFAULT_BLOCKLIST

    request_id = submit(hook_server, astronaut_uri, prompt=sorted(DEFAULT_BLOCKLIST)[0],
                        magic_prompt="OFF", webhook_url=receiver + "/failed",
                        webhook_events=["FAILED"])
    status = finished_status(hook_server, request_id)
    assert status.status_code == 422
    [received] = wait_for(lambda: Receiver.at("/failed"))
    assert received.body == status.content
    assert json.loads(received.body)["status"] == "FAILED"


@pytest.mark.parametrize("fields", [{"webhook_url": "ftp://127.0.0.1/x"},
                                    {"webhook_url": "http://169.254.169.254/latest"},
                                    {"webhook_url": "http://127.0.0.1/", "webhook_events": "x"}])
def test_a_bad_webhook_is_a_400_naming_it(hook_server, astronaut_uri, fields):
    body = {"image": astronaut_uri, "prompt": "p", **fields}
    response = httpx.post(f"{hook_server.base_url}/v2/{MODEL}", json=body, headers=HEADERS)
    assert response.status_code == 400
    assert response.json()["error"].startswith(("webhook_url: ", "webhook_events: "))
    assert "request_id" in response.json()
