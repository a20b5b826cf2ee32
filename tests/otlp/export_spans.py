"""Exports GenAI `execute_tool` spans to Vigil with the real OpenTelemetry Python SDK.

Used by tests/api/otlp.rs, the way an instrumented agent runtime would send them: the SDK
builds the spans (under one `invoke_agent` span, beside one `chat` span that is not a tool
call) and the stock OTLP/HTTP protobuf exporter sends them, configured only by the standard
environment variables the README tells users to set:

    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://127.0.0.1:PORT/v1/traces \
    OTEL_EXPORTER_OTLP_TRACES_HEADERS="Authorization=Bearer%20vgl_..." \
    OTEL_EXPORTER_OTLP_TRACES_COMPRESSION=gzip \
    python export_spans.py < plan.json

The plan (JSON on stdin):
    {"resource": {"service.name": "triage-bot"},   # resource attributes
     "repeat": 1,                                   # export the same spans this many times
     "agent": {"id": "triage", "conversation": "conv-1"},
     "calls": [{"tool": "github.list_issues", "start_ns": 1795694340000000000,
                "duration_ms": 20, "arguments": {"repo": "web"} | null,
                "error_type": "TimeoutError" | null}]}

Prints {"span_ids": [hex per call, in plan order], "results": ["SUCCESS", ...]} and exits 1
if any export did not succeed.
"""

import json
import sys

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

# What the SDK's BatchSpanProcessor sends at most per request by default.
BATCH = 512


def record(plan):
    """Builds the plan's spans with the SDK and returns them finished, and each call's span id."""
    collected = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(plan.get("resource", {})))
    provider.add_span_processor(SimpleSpanProcessor(collected))
    tracer = provider.get_tracer("vigil-tests.export_spans")
    calls = plan["calls"]
    agent = plan.get("agent") or {}
    first = min(c["start_ns"] for c in calls)
    last = max(c["start_ns"] + c.get("duration_ms", 0) * 1_000_000 for c in calls)

    run = tracer.start_span(
        f"invoke_agent {agent.get('id', 'agent')}",
        kind=SpanKind.INTERNAL,
        start_time=first,
        attributes={
            "gen_ai.operation.name": "invoke_agent",
            **({"gen_ai.agent.id": agent["id"]} if "id" in agent else {}),
            **({"gen_ai.conversation.id": agent["conversation"]} if "conversation" in agent else {}),
        },
    )
    context = trace.set_span_in_context(run)
    chat = tracer.start_span(
        "chat gpt-4o",
        kind=SpanKind.CLIENT,
        context=context,
        start_time=first,
        attributes={"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o"},
    )
    chat.end(end_time=first + 1_000_000)

    span_ids = []
    for i, call in enumerate(calls):
        attributes = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": call["tool"],
            "gen_ai.tool.type": "function",
            "gen_ai.tool.call.id": f"call_{i}",
        }
        if call.get("arguments") is not None:
            attributes["gen_ai.tool.call.arguments"] = json.dumps(call["arguments"])
        span = tracer.start_span(
            f"execute_tool {call['tool']}",
            kind=SpanKind.INTERNAL,
            context=context,
            start_time=call["start_ns"],
            attributes=attributes,
        )
        if call.get("error_type"):
            span.set_attribute("error.type", call["error_type"])
            span.set_status(Status(StatusCode.ERROR, "the tool failed"))
        span_ids.append(format(span.get_span_context().span_id, "016x"))
        span.end(end_time=call["start_ns"] + call.get("duration_ms", 0) * 1_000_000)
    run.end(end_time=last)
    provider.shutdown()
    return collected.get_finished_spans(), span_ids


def main():
    plan = json.load(sys.stdin)
    spans, span_ids = record(plan)
    exporter = OTLPSpanExporter()
    results = []
    for _ in range(plan.get("repeat", 1)):
        for start in range(0, len(spans), BATCH):
            results.append(exporter.export(spans[start : start + BATCH]).name)
    exporter.shutdown()
    json.dump({"span_ids": span_ids, "results": results}, sys.stdout)
    sys.exit(0 if all(r == "SUCCESS" for r in results) else 1)


if __name__ == "__main__":
    main()
