"""A typed client for Vigil's HTTP API: post tool-call events, read back stored events.

Retries are bounded and safe: an event's id is fixed when the `Event` is made, and Vigil
ignores an id it already stored, so a batch sent twice is stored once.
"""

from __future__ import annotations

import email.utils
import json
import random
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Dict, Iterator, List, Literal, Optional

Outcome = Literal["success", "error", "denied"]

#: Vigil's limits for one `POST /v1/events`: batches are cut to fit both.
MAX_EVENTS_PER_BATCH = 1000
MAX_BATCH_BYTES = 1024 * 1024


class VigilError(Exception):
    """Base class of everything this client raises."""


class VigilAPIError(VigilError):
    """Vigil refused the request (a 4xx other than 408/429): retrying will not help.

    `code`, `message` and `field` come from Vigil's error envelope
    `{"error": {"code", "message", "field"}}`; `field` names the offending field when one is
    at fault (`events[3].tool`).
    """

    def __init__(self, status: int, code: str, message: str, field: Optional[str] = None):
        super().__init__(f"{status} {code}: {message}" + (f" (field {field})" if field else ""))
        self.status = status
        self.code = code
        self.message = message
        self.field = field


class VigilUnavailable(VigilError):
    """Vigil could not be reached, or kept answering 429/5xx, for every allowed attempt."""

    def __init__(self, message: str, status: Optional[int] = None):
        super().__init__(message)
        self.status = status


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class Event:
    """One tool call, as `POST /v1/events` takes it. `event_id` and `timestamp` are fixed
    when the event is made, so sending it again is idempotent."""

    tool: str
    outcome: Outcome = "success"
    params: Dict[str, Any] = field(default_factory=dict)
    event_id: str = field(default_factory=_new_id)
    timestamp: datetime = field(default_factory=_now)
    error_code: Optional[str] = None
    duration_ms: Optional[int] = None
    agent_id: Optional[str] = None
    session_id: Optional[str] = None
    credential_ref: Optional[str] = None
    tenant_id: Optional[str] = None

    def to_json(self) -> Dict[str, Any]:
        body: Dict[str, Any] = {
            "event_id": self.event_id,
            "timestamp": self.timestamp.isoformat(),
            "tool": self.tool,
            "outcome": self.outcome,
            "params": self.params,
        }
        for name in ("error_code", "duration_ms", "agent_id", "session_id", "credential_ref", "tenant_id"):
            value = getattr(self, name)
            if value is not None:
                body[name] = value
        return body


@dataclass(frozen=True)
class Finding:
    """What Vigil raised about one event: a runtime may stop its agent on it."""

    event_id: str
    detector: str
    severity: str
    incident_id: Optional[str]
    action: str


@dataclass(frozen=True)
class PostResult:
    """The 202s of one `post_events` call, added up over its batches."""

    accepted: int
    duplicates: int
    findings: List[Finding]
    suppressed: int = 0


@dataclass(frozen=True)
class StoredEvent:
    """An event as Vigil stored it (`GET /v1/events`): parameters are redacted."""

    tenant_id: str
    event_id: str
    timestamp: str
    tool: str
    params: Dict[str, Any]
    outcome: str
    received_at: str
    error_code: Optional[str] = None
    duration_ms: Optional[int] = None
    agent_id: Optional[str] = None
    session_id: Optional[str] = None
    credential_ref: Optional[str] = None


@dataclass(frozen=True)
class EventsPage:
    events: List[StoredEvent]
    next_cursor: Optional[str]


def _retry_after(value: Optional[str]) -> Optional[float]:
    """Seconds a `Retry-After` header asks for (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - _now()).total_seconds())


class VigilClient:
    """Vigil at `url`, called with `token`: a tenant's ingest token to post events, the admin
    token to read them back.

    Each request times out after `timeout` seconds. A connection failure, a timeout, 408, 429
    and 5xx are retried up to `max_retries` times: after `Retry-After` when Vigil sends one
    (429/503 when its queue is full), else after an exponential, jittered back-off from
    `backoff` seconds; no wait is longer than `max_backoff`. Then `VigilUnavailable` is raised.
    Any other 4xx raises `VigilAPIError` at once.
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 10.0,
        max_retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.url = url.rstrip("/")
        self._token = token
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._sleep = sleep

    def __repr__(self) -> str:  # never the token
        return f"VigilClient({self.url!r})"

    # ------------------------------------------------------------ events

    def post_events(self, events: List[Event]) -> PostResult:
        """Posts `events` in as few batches as Vigil's limits allow; returns the 202s added up,
        with every finding Vigil raised."""
        accepted = duplicates = suppressed = 0
        findings: List[Finding] = []
        for batch in self._batches([e.to_json() for e in events]):
            answer = self._request("POST", "/v1/events", body=b'{"events":[' + b",".join(batch) + b"]}")
            accepted += answer.get("accepted", 0)
            duplicates += answer.get("duplicates", 0)
            suppressed += answer.get("suppressed", 0)
            findings.extend(
                Finding(
                    event_id=f["event_id"],
                    detector=f["detector"],
                    severity=f["severity"],
                    incident_id=f.get("incident_id"),
                    action=f["action"],
                )
                for f in answer.get("findings", [])
            )
        return PostResult(accepted=accepted, duplicates=duplicates, findings=findings, suppressed=suppressed)

    @staticmethod
    def _batches(events: List[Dict[str, Any]]) -> Iterator[List[bytes]]:
        batch: List[bytes] = []
        size = 0
        for e in events:
            encoded = json.dumps(e, separators=(",", ":")).encode()
            if batch and (len(batch) == MAX_EVENTS_PER_BATCH or size + len(encoded) + 1 > MAX_BATCH_BYTES - 64):
                yield batch
                batch, size = [], 0
            batch.append(encoded)
            size += len(encoded) + 1
        if batch:
            yield batch

    def events(
        self,
        *,
        tenant: Optional[str] = None,
        tool: Optional[str] = None,
        since: Optional[datetime] = None,
        until: Optional[datetime] = None,
        limit: Optional[int] = None,
        cursor: Optional[str] = None,
    ) -> EventsPage:
        """One page of stored events, newest accepted first (admin token)."""
        query = {
            "tenant": tenant,
            "tool": tool,
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
            "limit": str(limit) if limit is not None else None,
            "cursor": cursor,
        }
        qs = urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        answer = self._request("GET", "/v1/events" + (f"?{qs}" if qs else ""))
        return EventsPage(
            events=[StoredEvent(**{k: e.get(k) for k in StoredEvent.__dataclass_fields__}) for e in answer["events"]],
            next_cursor=answer.get("next_cursor"),
        )

    def iter_events(self, **filters: Any) -> Iterator[StoredEvent]:
        """Every stored event matching `filters` (as `events` takes them), page after page."""
        cursor = None
        while True:
            page = self.events(cursor=cursor, **filters)
            yield from page.events
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    # ------------------------------------------------------------ transport

    def _request(self, method: str, path: str, body: Optional[bytes] = None) -> Dict[str, Any]:
        last = "no attempt"
        status: Optional[int] = None
        for attempt in range(self.max_retries + 1):
            request = urllib.request.Request(self.url + path, data=body, method=method)
            request.add_header("Authorization", f"Bearer {self._token}")
            request.add_header("Accept", "application/json")
            if body is not None:
                request.add_header("Content-Type", "application/json")
            wait: Optional[float] = None
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read() or b"{}")
            except urllib.error.HTTPError as e:
                status = e.code
                text = e.read()
                if e.code not in (408, 429) and e.code < 500:
                    raise _api_error(e.code, text) from None
                wait = _retry_after(e.headers.get("Retry-After"))
                last = f"{e.code} from {method} {path}"
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                last = f"{method} {path} failed: {getattr(e, 'reason', e)}"
            if attempt == self.max_retries:
                break
            if wait is None:
                wait = self.backoff * (2**attempt) * random.uniform(0.5, 1.0)
            self._sleep(min(wait, self.max_backoff))
        raise VigilUnavailable(f"{last}, after {self.max_retries + 1} attempts", status)


def _api_error(status: int, text: bytes) -> VigilAPIError:
    try:
        error = json.loads(text)["error"]
        return VigilAPIError(status, error["code"], error["message"], error.get("field"))
    except (ValueError, KeyError, TypeError):
        return VigilAPIError(status, "http_error", text.decode(errors="replace")[:200] or f"HTTP {status}")
