"""Vigil's Python client: post AI-agent tool calls, read back what Vigil stored.

`vigil_client.langchain.VigilCallbackHandler` (needs `langchain-core`) posts one event per
LangChain tool call.
"""

from .client import (
    Event,
    EventsPage,
    Finding,
    PostResult,
    StoredEvent,
    VigilAPIError,
    VigilClient,
    VigilError,
    VigilUnavailable,
)

__all__ = [
    "Event",
    "EventsPage",
    "Finding",
    "PostResult",
    "StoredEvent",
    "VigilAPIError",
    "VigilClient",
    "VigilError",
    "VigilUnavailable",
]
