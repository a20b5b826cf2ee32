"""The LangChain callback against a real Vigil: an agent loop driven by a fake chat model that
emits tool calls (offline), calling local tools; each tool call is one stored event, with the
tool's own argument names, its outcome and duration, and never its output."""

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import ToolException, tool

from vigil_client.langchain import VigilCallbackHandler

OUTPUT_MARK = "tool-output-never-sent"


@tool
def search_orders(customer: str, limit: int) -> str:
    """Search a customer's orders."""
    return f"{OUTPUT_MARK}: {limit} orders of {customer}"


@tool
def lookup_user(email: str) -> str:
    """Look a user up by email."""
    return f"{OUTPUT_MARK}: user {email}"


@tool
def admin_export_all_users() -> str:
    """Export every user."""
    raise PermissionError("not allowed")


@tool
def refund_order(order_id: str) -> str:
    """Refund an order."""
    raise ToolException(f"{OUTPUT_MARK}: order {order_id} is not refundable")


# LangChain turns the exception into an error message for the model: a handled failure.
refund_order.handle_tool_error = True

TOOLS = {t.name: t for t in (search_orders, lookup_user, admin_export_all_users, refund_order)}


def call(name, args, i):
    return {"name": name, "args": args, "id": f"call_{i}", "type": "tool_call"}


def run_agent(handler, session_id, turns):
    """A minimal tool-calling agent: the model's tool calls are run, their results fed back,
    until it answers without one."""
    model = GenericFakeChatModel(messages=iter([AIMessage(content="", tool_calls=t) for t in turns] + [AIMessage(content="done")]))
    config = {"callbacks": [handler], "metadata": {"session_id": session_id}}
    messages = [HumanMessage(content="help customer acme")]
    while True:
        reply = model.invoke(messages, config=config)
        messages.append(reply)
        if not reply.tool_calls:
            return messages
        for tc in reply.tool_calls:
            try:
                messages.append(TOOLS[tc["name"]].invoke(tc, config=config))
            except PermissionError as e:
                messages.append(ToolMessage(content=str(e), tool_call_id=tc["id"], status="error"))


def test_each_tool_call_is_one_event_with_its_arguments_and_outcome(ingest, admin, tenant, session_id):
    handler = VigilCallbackHandler(ingest, agent_id="support-agent")
    turns = [
        [call("search_orders", {"customer": "acme", "limit": 5}, 1), call("lookup_user", {"email": "a@acme.test"}, 2)],
        [call("refund_order", {"order_id": "o-17"}, 3)],
        [call("admin_export_all_users", {}, 4), call("search_orders", {"customer": "acme", "limit": 50}, 5)],
    ]
    run_agent(handler, session_id, turns)

    events = [e for e in admin.iter_events(tenant=tenant, limit=500) if e.session_id == session_id]
    assert len(events) == 5, "exactly one event per tool call, none for the model"
    by_call = sorted(events, key=lambda e: e.timestamp)
    assert [e.tool for e in by_call] == [
        "search_orders",
        "lookup_user",
        "refund_order",
        "admin_export_all_users",
        "search_orders",
    ]
    assert [e.params for e in by_call] == [
        {"customer": "acme", "limit": 5},
        {"email": "a@acme.test"},
        {"order_id": "o-17"},
        {},
        {"customer": "acme", "limit": 50},
    ]
    assert [e.outcome for e in by_call] == ["success", "success", "error", "denied", "success"]
    assert by_call[2].error_code == "tool_error", "an error LangChain handled is still a failure"
    assert by_call[3].error_code == "PermissionError"
    assert all(e.agent_id == "support-agent" for e in events)
    assert all(e.duration_ms is not None and e.duration_ms >= 0 for e in events)
    assert all(OUTPUT_MARK not in str(e.params) for e in events), "the tool's output is never posted"
    assert len({e.event_id for e in events}) == 5


def test_findings_reach_the_agent_through_the_handler(ingest, session_id):
    seen = []
    handler = VigilCallbackHandler(ingest, on_findings=seen.extend)
    turns = [[call("lookup_user", {"email": "AKIAIOSFODNN7EXAMPLE"}, 1)]]
    run_agent(handler, session_id, turns)
    assert "secret_in_payload" in [f.detector for f in seen], seen
    assert handler.findings == seen
