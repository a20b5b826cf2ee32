"""A LangChain callback handler that posts one Vigil event per tool call.

Immediate, not batched: the event is posted when the tool ends (or fails), before the agent
goes on, so a finding reaches `on_findings` while the agent can still be stopped. What is
posted: the tool's name, its parsed arguments, the outcome, the duration, the agent and the
session; never the tool's output. The tool run's id is the event id, so the client's retries
store it once.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Optional
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler

from .client import Event, Finding, VigilClient

#: Metadata keys (LangChain `config={"metadata": …}`, LangGraph's `thread_id`) read for the
#: session and the agent when the handler was not given them.
SESSION_KEYS = ("session_id", "thread_id", "conversation_id")
AGENT_KEYS = ("agent_id", "agent_name", "lc_agent_name")


def _first(metadata: Optional[Dict[str, Any]], keys: tuple) -> Optional[str]:
    for key in keys:
        value = (metadata or {}).get(key)
        if value:
            return str(value)[:128]
    return None


def parse_arguments(input_str: str, inputs: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """The call's arguments as an object: LangChain's parsed `inputs` when it has them, else
    the input string as JSON, else `{"input": <the string>}` (a single-string tool)."""
    if inputs is not None:
        return dict(inputs)
    try:
        parsed = json.loads(input_str)
    except (TypeError, ValueError):
        return {"input": input_str}
    return parsed if isinstance(parsed, dict) else {"input": parsed}


class VigilCallbackHandler(BaseCallbackHandler):
    """Posts each tool call a LangChain run makes to Vigil through `client` (holding the
    tenant's ingest token).

    `agent_id` and `session_id` default to the run's metadata (`agent_id`/`agent_name`,
    `session_id`/`thread_id`), the session then to the tool's parent run. Findings Vigil
    raises are appended to `findings` and passed to `on_findings`. A tool that raised, or
    whose error LangChain handled into an error message, is `error` (`PermissionError`:
    `denied`). Posting failures are LangChain's to report (it logs a handler's exception and
    goes on, unless `raise_error` is set).
    """

    raise_error = False

    def __init__(
        self,
        client: VigilClient,
        *,
        agent_id: Optional[str] = None,
        session_id: Optional[str] = None,
        on_findings: Optional[Callable[[List[Finding]], None]] = None,
    ):
        self.client = client
        self.agent_id = agent_id
        self.session_id = session_id
        self.on_findings = on_findings
        self.findings: List[Finding] = []
        self._started: Dict[UUID, tuple] = {}

    def on_tool_start(
        self,
        serialized: Dict[str, Any],
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: Optional[UUID] = None,
        tags: Optional[List[str]] = None,
        metadata: Optional[Dict[str, Any]] = None,
        inputs: Optional[Dict[str, Any]] = None,
        **kwargs: Any,
    ) -> None:
        tool = kwargs.get("name") or (serialized or {}).get("name") or "unknown_tool"
        session = self.session_id or _first(metadata, SESSION_KEYS) or (str(parent_run_id) if parent_run_id else None)
        event = Event(
            tool=str(tool)[:200],
            params=parse_arguments(input_str, inputs),
            event_id=str(run_id),
            timestamp=datetime.now(timezone.utc),
            agent_id=self.agent_id or _first(metadata, AGENT_KEYS),
            session_id=session,
        )
        self._started[run_id] = (event, time.monotonic())

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        # Only the status of LangChain's ToolMessage is read, never its content.
        failed = getattr(output, "status", None) == "error"
        self._finish(run_id, "error" if failed else "success", "tool_error" if failed else None)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        outcome = "denied" if isinstance(error, PermissionError) else "error"
        self._finish(run_id, outcome, type(error).__name__[:64])

    def _finish(self, run_id: UUID, outcome: str, error_code: Optional[str]) -> None:
        started = self._started.pop(run_id, None)
        if started is None:
            return
        event, at = started
        event.outcome = outcome  # type: ignore[assignment]
        event.error_code = error_code
        event.duration_ms = int((time.monotonic() - at) * 1000)
        result = self.client.post_events([event])
        if result.findings:
            self.findings.extend(result.findings)
            if self.on_findings is not None:
                self.on_findings(result.findings)
