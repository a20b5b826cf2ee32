"""A LangChain agent, instrumented by a real OpenTelemetry instrumentation, exporting to Vigil.

Used by tests/api/conformance.rs. Offline: the chat model is langchain_core's fake model
replaying the tool calls of the plan, the tools are local functions, and the only network
peer is Vigil. The instrumentation is set up exactly as the README's quick start says
(`setup_<family>` below holds those lines), the exporter configured by the environment:

    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://127.0.0.1:PORT/v1/traces \
    OTEL_EXPORTER_OTLP_TRACES_HEADERS="Authorization=Bearer%20vgl_..." \
    python agent.py openinference|openllmetry|genai < plan.json

The plan (JSON on stdin): {"session": "s-1", "runs": [[[{"tool": "get_weather",
"args": {"city": "Paris"}}, ...], ...], ...]}: each run is one agent invocation (a LangGraph
ReAct agent named "triage"), each of its steps one model turn asking for those tool calls.
Each run also invokes a retriever and a prompt chain, whose spans are no tool calls.

Prints {"tool_spans": [{"span_id": hex, "tool": name}], "other_spans": N}: the tool spans
the instrumentation emitted (by its own marker), and how many other spans it emitted.
"""

import json
import sys

from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


def setup_openinference():
    # README: OpenInference LangChain.
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from openinference.instrumentation.langchain import LangChainInstrumentor

    provider = TracerProvider(); provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))  # noqa: E702
    LangChainInstrumentor().instrument(tracer_provider=provider)
    return provider


def setup_openllmetry():
    # README: OpenLLMetry (Traceloop) LangChain.
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.langchain import LangchainInstrumentor

    provider = TracerProvider(); provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))  # noqa: E702
    LangchainInstrumentor().instrument(tracer_provider=provider)
    return provider


def setup_genai():
    # README: OpenTelemetry GenAI conventions (the OpenTelemetry LangChain instrumentation).
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.genai.langchain import LangChainInstrumentor

    provider = TracerProvider(); provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))  # noqa: E702
    LangChainInstrumentor().instrument(tracer_provider=provider)
    return provider


# Each family's own marker of a tool span, to count what it emitted independently of Vigil.
def is_tool_span(family, attributes):
    if family == "openinference":
        return "tool.name" in attributes
    if family == "openllmetry":
        return attributes.get("traceloop.span.kind") == "tool"
    return attributes.get("gen_ai.operation.name") == "execute_tool"


SETUPS = {"openinference": setup_openinference, "openllmetry": setup_openllmetry, "genai": setup_genai}


def main():
    family = sys.argv[1]
    plan = json.load(sys.stdin)
    provider = SETUPS[family]()
    emitted = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(emitted))
    trace.set_tracer_provider(provider)

    # Imported after instrumenting, as an application would.
    from langchain_core.documents import Document
    from langchain_core.language_models.fake_chat_models import (
        FakeListChatModel,
        FakeMessagesListChatModel,
    )
    from langchain_core.messages import AIMessage
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.retrievers import BaseRetriever
    from langchain_core.tools import ToolException, tool
    from langgraph.prebuilt import create_react_agent

    @tool
    def get_weather(city: str) -> str:
        """Current weather in a city."""
        return f"sunny in {city}"

    @tool
    def search_orders(customer_id: str, status: str) -> str:
        """Orders of a customer in a status."""
        return f"2 {status} orders for {customer_id}"

    @tool
    def lookup_invoice(invoice_id: int) -> str:
        """One invoice by number."""
        return f"invoice {invoice_id}: 120 EUR"

    @tool
    def ask_support_agent(question: str) -> str:
        """Hands a question to the support agent."""
        return "the support agent will answer by email"

    @tool
    def send_email(to: str, subject: str) -> str:
        """Sends an email."""
        return f"sent to {to}"

    @tool
    def admin_export_all_users(format: str) -> str:
        """Exports every user account."""
        return f"exported as {format}"

    @tool
    def fetch_report(report_id: str) -> str:
        """One report by id; a missing one is a handled tool error."""
        if report_id == "missing":
            raise ToolException(f"no report {report_id}")
        return f"report {report_id}"

    fetch_report.handle_tool_error = True
    tools = [get_weather, search_orders, lookup_invoice, ask_support_agent, send_email, admin_export_all_users, fetch_report]

    class ToolCallingFakeModel(FakeMessagesListChatModel):
        """Replays scripted tool calls; binding tools changes nothing."""

        def bind_tools(self, tools, **kwargs):
            return self

    class PolicyRetriever(BaseRetriever):
        def _get_relevant_documents(self, query, *, run_manager=None):
            return [Document(page_content="Refunds within 30 days.", metadata={"source": "policy.md"})]

    chain = ChatPromptTemplate.from_messages([("system", "Summarise."), ("human", "{text}")]) | FakeListChatModel(
        responses=["a summary"]
    )
    config = {"metadata": {"session_id": plan["session"], "thread_id": plan["session"]}}
    call_number = 0
    for steps in plan["runs"]:
        responses = []
        for step in steps:
            calls = []
            for call in step:
                call_number += 1
                calls.append({"name": call["tool"], "args": call["args"], "id": f"call_{call_number}"})
            responses.append(AIMessage(content="", tool_calls=calls))
        responses.append(AIMessage(content="done"))
        agent = create_react_agent(ToolCallingFakeModel(responses=responses), tools, name="triage")
        agent.invoke({"messages": [("user", "help me")]}, config={**config, "recursion_limit": 1000})
        PolicyRetriever().invoke("refund policy", config=config)
        chain.invoke({"text": "the day's orders"}, config=config)
    provider.force_flush()
    provider.shutdown()

    spans = emitted.get_finished_spans()
    tool_spans = [
        {"span_id": format(s.context.span_id, "016x"), "tool": s.attributes.get("tool.name") or s.attributes.get("gen_ai.tool.name")}
        for s in spans
        if is_tool_span(family, s.attributes)
    ]
    print(json.dumps({"tool_spans": tool_spans, "other_spans": len(spans) - len(tool_spans)}))


if __name__ == "__main__":
    main()
