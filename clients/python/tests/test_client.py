"""The API client against a real Vigil: posting, idempotent resends, findings, refusals as
exceptions, and retries that honour Retry-After."""

import http.server
import threading
import time
import urllib.request

import pytest

from vigil_client import Event, VigilAPIError, VigilClient, VigilUnavailable


def stored(admin, tenant, session_id):
    return [e for e in admin.iter_events(tenant=tenant, limit=500) if e.session_id == session_id]


def test_posted_events_are_stored_once_even_when_sent_again(ingest, admin, tenant, session_id):
    events = [
        Event(tool="db.query", params={"table": "orders", "limit": i}, session_id=session_id, agent_id="billing-bot")
        for i in range(3)
    ]
    first = ingest.post_events(events)
    assert (first.accepted, first.duplicates) == (3, 0)
    again = ingest.post_events(events)
    assert (again.accepted, again.duplicates) == (0, 3), "the ids were fixed when the events were made"

    back = stored(admin, tenant, session_id)
    assert sorted(e.event_id for e in back) == sorted(e.event_id for e in events)
    assert {e.params["limit"] for e in back} == {0, 1, 2}
    assert all(e.tool == "db.query" and e.outcome == "success" and e.agent_id == "billing-bot" for e in back)


def test_findings_come_back_to_the_caller(ingest, admin, tenant, session_id):
    leak = Event(tool="s3.get", params={"aws_access_key_id": "AKIAIOSFODNN7EXAMPLE"}, session_id=session_id)
    result = ingest.post_events([leak])
    assert result.accepted == 1
    secret = [f for f in result.findings if f.detector == "secret_in_payload"]
    assert [f.event_id for f in secret] == [leak.event_id], result.findings
    assert secret[0].incident_id and secret[0].severity
    (back,) = stored(admin, tenant, session_id)
    assert back.params["aws_access_key_id"].startswith("[REDACTED:"), "stored redacted, never raw"


def test_a_refused_event_raises_with_the_envelopes_code_and_field(ingest, admin, tenant, session_id):
    good = Event(tool="db.query", session_id=session_id)
    bad = Event(tool="", session_id=session_id)
    with pytest.raises(VigilAPIError) as refused:
        ingest.post_events([good, bad])
    assert refused.value.status == 422
    assert refused.value.code == "invalid_field"
    assert refused.value.field == "events[1].tool"
    assert refused.value.message
    assert stored(admin, tenant, session_id) == [], "a refused batch changes nothing"
    with pytest.raises(VigilAPIError) as denied:
        admin.post_events([good])
    assert denied.value.status == 401, "the admin token does not ingest"


class _Flaky(http.server.BaseHTTPRequestHandler):
    """A stand-in for an overloaded Vigil: Vigil answers 503 + Retry-After only when a shard
    queue is full, which no test can cause on demand, so this local server answers `refusals`
    requests with `status` and `Retry-After`, then forwards the rest to the real Vigil."""

    upstream = ""
    refusals = 1
    status = 503
    retry_after = "1"
    seen: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).seen.append(time.monotonic())
        if len(type(self).seen) <= type(self).refusals:
            self.send_response(type(self).status)
            self.send_header("Retry-After", type(self).retry_after)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        request = urllib.request.Request(self.upstream + self.path, data=body, method="POST")
        for name in ("Authorization", "Content-Type"):
            request.add_header(name, self.headers[name])
        with urllib.request.urlopen(request, timeout=10) as answer:
            payload = answer.read()
            self.send_response(answer.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def flaky(vigil_url):
    _Flaky.upstream = vigil_url
    _Flaky.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield _Flaky, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("status", [503, 429])
def test_a_retry_waits_as_long_as_retry_after_says(flaky, ingest_token, admin, tenant, session_id, status):
    server, url = flaky
    server.status, server.refusals, server.retry_after = status, 1, "1"
    client = VigilClient(url, ingest_token, backoff=0.01)
    event = Event(tool="db.query", session_id=session_id)
    result = client.post_events([event])
    assert result.accepted == 1
    assert len(server.seen) == 2
    assert server.seen[1] - server.seen[0] >= 1.0, "the retry came before Retry-After allowed"
    assert [e.event_id for e in stored(admin, tenant, session_id)] == [event.event_id]


def test_retries_are_bounded(flaky, ingest_token, session_id):
    server, url = flaky
    server.status, server.refusals, server.retry_after = 503, 100, "0"
    waits = []
    client = VigilClient(url, ingest_token, max_retries=3, backoff=0.01, max_backoff=0.05, sleep=waits.append)
    with pytest.raises(VigilUnavailable) as gave_up:
        client.post_events([Event(tool="db.query", session_id=session_id)])
    assert gave_up.value.status == 503
    assert len(server.seen) == 4, "one attempt and three retries"
    assert waits == [0.0, 0.0, 0.0], "Retry-After: 0 is honoured as is"


def test_an_unreachable_vigil_is_retried_with_backoff_then_given_up(session_id):
    waits = []
    client = VigilClient("http://127.0.0.1:9", "vgl_x", max_retries=2, backoff=0.2, sleep=waits.append, timeout=2)
    with pytest.raises(VigilUnavailable):
        client.post_events([Event(tool="db.query", session_id=session_id)])
    assert len(waits) == 2
    assert 0.1 <= waits[0] <= 0.2 and 0.2 <= waits[1] <= 0.4, waits
