"""Token buckets (with a clock the test drives), and the limits they enforce on the
real server: pushes per token, sign-in attempts per client address."""

from __future__ import annotations

import json

import pytest

from dashboard.web.ratelimit import RateLimiter, TokenBucket, retry_after
from tests.helpers import BASE_CONFIG, TOKEN
from tests.test_auth import ALICE_PASSWORD, AUTH_CONFIG
from tests.webclient import WebClient


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_a_burst_then_the_rate():
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.5)  # one more token in half a second
    assert bucket.take(0.25) == pytest.approx(0.25)
    assert bucket.take(0.5) == 0.0
    assert bucket.take(0.5) == pytest.approx(0.5)


def test_a_bucket_refills_to_its_burst_and_no_further():
    bucket = TokenBucket(rate=1.0, burst=2, now=0.0)
    bucket.take(0.0), bucket.take(0.0)
    assert not bucket.full(1.0)
    assert bucket.full(100.0)
    assert [bucket.take(100.0) for _ in range(3)][:2] == [0.0, 0.0]


def test_a_clock_going_backwards_gives_nothing_away():
    bucket = TokenBucket(rate=1.0, burst=1, now=10.0)
    assert bucket.take(10.0) == 0.0
    assert bucket.take(5.0) > 0  # no refill for negative time


def test_the_limiter_keeps_a_bucket_per_key():
    clock = Clock()
    limiter = RateLimiter(clock)
    assert limiter.take("ci", 1.0, 1) == 0.0
    assert limiter.take("ci", 1.0, 1) > 0
    assert limiter.take("cron", 1.0, 1) == 0.0  # another token is not slowed down
    clock.now += 1.0
    assert limiter.take("ci", 1.0, 1) == 0.0


def test_a_new_rate_applies_at_once():
    limiter = RateLimiter(Clock())
    assert limiter.take("ci", 1 / 3600, 1) == 0.0
    assert limiter.take("ci", 1 / 3600, 1) > 3000
    assert limiter.take("ci", 10.0, 5) == 0.0  # a reload raised the limit


def test_the_table_of_keys_stays_bounded():
    clock = Clock()
    limiter = RateLimiter(clock, max_keys=100)
    for n in range(1000):
        limiter.take(f"client-{n}", 1.0, 2)
        clock.now += 0.001
    assert len(limiter.buckets) <= 100
    # Full buckets go first: a busy key survives a flood of one-off keys.
    limiter = RateLimiter(clock, max_keys=10)
    for _ in range(5):
        limiter.take("busy", 0.001, 5)
    for n in range(50):
        limiter.take(f"once-{n}", 1000.0, 1)
        clock.now += 0.01
    assert "busy" in limiter.buckets and limiter.take("busy", 0.001, 5) > 0


@pytest.mark.parametrize("seconds, header", [(0.01, 1), (1.0, 1), (1.2, 2), (59.5, 60)])
def test_retry_after_is_whole_seconds_rounded_up(seconds, header):
    assert retry_after(seconds) == header


# --- on the real server --------------------------------------------------------------------

AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
OTHER_TOKEN = "other-token-0123456789"
LIMITED = BASE_CONFIG.replace(
    'tokens = { test = "test-token-0123456789" }',
    f'tokens = {{ test = "test-token-0123456789", other = "{OTHER_TOKEN}" }}\nrate = "1/h"\nburst = 3',
)


@pytest.mark.gen_test(timeout=60)
async def test_pushes_past_the_rate_get_429_with_retry_after_and_store_nothing(servers):
    server = await servers.start(LIMITED)
    client = WebClient(server.port)
    body = json.dumps({"value": 1}).encode()
    replies = [await client.request("POST", "/api/widgets/a", AUTH, body) for _ in range(5)]
    assert [r.status for r in replies] == [200, 200, 200, 429, 429]
    refused = replies[3]
    assert refused.json() == {
        "error": 'too many pushes with token "test": retry in '
        f"{refused.headers['Retry-After']} s ([api] rate and burst)"
    }
    assert 3000 < int(refused.headers["Retry-After"]) <= 3600
    assert TOKEN not in refused.text
    batch = await client.request("POST", "/api/widgets", AUTH, json.dumps({"values": {"a": 2}}).encode())
    assert batch.status == 429  # one bucket per token, whatever the endpoint
    assert len(await server.runtime.store.history("a")) == 3
    other = {**AUTH, "Authorization": f"Bearer {OTHER_TOKEN}"}
    assert (await client.request("POST", "/api/widgets/a", other, body)).status == 200
    # A wrong token is refused for what it is, and costs the right one nothing.
    wrong = {**AUTH, "Authorization": "Bearer wrong-token-0123456789"}
    assert (await client.request("POST", "/api/widgets/a", wrong, body)).status == 401


@pytest.mark.gen_test(timeout=60)
async def test_a_reload_with_a_new_rate_applies_to_the_next_push(servers):
    from dashboard.config import load_config

    server = await servers.start(LIMITED)
    server.server.config_loader = lambda: load_config(server.config_path)
    client = WebClient(server.port)
    body = json.dumps({"value": 1}).encode()
    for _ in range(3):
        await client.request("POST", "/api/widgets/a", AUTH, body)
    assert (await client.request("POST", "/api/widgets/a", AUTH, body)).status == 429
    server.config_path.write_text(LIMITED.replace('rate = "1/h"\nburst = 3', 'rate = "1/h"\nburst = 10'))
    assert await server.server.reload()
    assert (await client.request("POST", "/api/widgets/a", AUTH, body)).status == 200


@pytest.mark.gen_test(timeout=90)
async def test_sign_in_attempts_are_limited_per_client_address(servers):
    server = await servers.start(AUTH_CONFIG)
    attacker = WebClient(server.port)
    await attacker.get("/login")
    statuses = []
    for n in range(11):
        reply = await attacker.post_form("/login", {"name": "alice", "password": f"guess {n}", "next": "/"})
        statuses.append(reply.status)
    assert statuses == [401] * 10 + [429]
    assert int(reply.headers["Retry-After"]) >= 1 and "Too many attempts" in reply.text
    # Even the right password waits now: the limit must not tell a guess that hit.
    right = await attacker.post_form("/login", {"name": "alice", "password": ALICE_PASSWORD, "next": "/"})
    assert right.status == 429 and "dashboard_session" not in attacker.jar
    # Another address (a second client, here through the trusted proxy) is not held up.
    elsewhere = WebClient(server.port, source="127.0.0.2", headers={"X-Forwarded-For": "203.0.113.9"})
    await elsewhere.get("/login")
    reply = await elsewhere.post_form("/login", {"name": "alice", "password": ALICE_PASSWORD, "next": "/"})
    assert reply.status == 303 and "dashboard_session" in elsewhere.jar
