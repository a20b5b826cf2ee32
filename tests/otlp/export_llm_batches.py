"""An LLM agent's traces sent to Vigil by the real OpenTelemetry Python SDK, default settings.

Used by tests/api/otlp_transport.rs. Each step of the agent is a `chat` span carrying the
conversation so far (GenAI input/output message attributes, as instrumentations record them)
and an `execute_tool` span, all under one `invoke_agent` span. The spans go through the SDK's
`BatchSpanProcessor` with its defaults (512-span batches, 2048-span queue) and the stock OTLP
exporter of the protocol asked for, configured only by the standard environment variables:

    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://127.0.0.1:PORT/v1/traces   # gRPC: http://127.0.0.1:PORT
    OTEL_EXPORTER_OTLP_TRACES_HEADERS="authorization=Bearer%20vgl_..."
    python export_llm_batches.py < plan.json

The plan (JSON on stdin):
    {"protocol": "http/protobuf" | "grpc",
     "steps": 600,                  # tool calls (and as many chat spans)
     "conversation_bytes": 24000,   # the most a chat span's input messages grow to
     "start_ns": 1795694340000000000}

Prints {"tool_span_ids": [...], "batches": [{"spans", "bytes", "result"}]}, where `bytes` is
the serialized request's size before compression, and exits 1 unless every export succeeded.
"""

import json
import random
import sys

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind

WORDS = (
    "the invoice for acme was sent twice please check which customer record holds the "
    "correct billing address and update the ticket with the order number before closing it "
    "refund shipment warehouse delayed priority escalate summary report quarterly numbers"
).split()


class Recording(SpanExporter):
    """The stock exporter, with each batch's span count, request size and result noted."""

    def __init__(self, inner):
        self.inner = inner
        self.batches = []

    def export(self, spans):
        size = encode_spans(spans).ByteSize()
        result = self.inner.export(spans)
        self.batches.append({"spans": len(spans), "bytes": size, "result": result.name})
        return result

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis=30000):
        return self.inner.force_flush(timeout_millis)


def exporter(protocol):
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    return OTLPSpanExporter()


def sentence(rng, n):
    return " ".join(rng.choice(WORDS) for _ in range(n))


def main():
    plan = json.load(sys.stdin)
    rng = random.Random(7)
    recording = Recording(exporter(plan["protocol"]))
    provider = TracerProvider(resource=Resource.create({"service.name": "support-agent"}))
    provider.add_span_processor(BatchSpanProcessor(recording))
    tracer = provider.get_tracer("vigil-tests.export_llm_batches")

    at = plan["start_ns"]
    run = tracer.start_span(
        "invoke_agent support",
        start_time=at,
        attributes={
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": "support",
            "gen_ai.conversation.id": "conv-llm",
        },
    )
    context = trace.set_span_in_context(run)
    conversation = [{"role": "system", "parts": [{"type": "text", "content": sentence(rng, 200)}]}]
    tool_span_ids = []
    for step in range(plan["steps"]):
        conversation.append({"role": "user", "parts": [{"type": "text", "content": sentence(rng, 60)}]})
        messages = json.dumps(conversation)
        # The conversation is what makes these spans heavy; it is cut from the front once
        # it reaches the plan's size, as a model's context window would be.
        while len(messages) > plan["conversation_bytes"] and len(conversation) > 2:
            del conversation[1]
            messages = json.dumps(conversation)
        answer = sentence(rng, 120)
        chat = tracer.start_span(
            "chat gpt-4o",
            kind=SpanKind.CLIENT,
            context=context,
            start_time=at + step * 2_000_000,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.input.messages": messages,
                "gen_ai.output.messages": json.dumps(
                    [{"role": "assistant", "parts": [{"type": "text", "content": answer}]}]
                ),
                "gen_ai.usage.input_tokens": len(messages) // 4,
            },
        )
        chat.end(end_time=at + step * 2_000_000 + 900_000)
        conversation.append({"role": "assistant", "parts": [{"type": "text", "content": answer}]})
        tool = tracer.start_span(
            "execute_tool crm.lookup_order",
            context=context,
            start_time=at + step * 2_000_000 + 1_000_000,
            attributes={
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": "crm.lookup_order",
                "gen_ai.tool.call.id": f"call_{step}",
                "gen_ai.tool.call.arguments": json.dumps({"order": step, "customer": "acme"}),
            },
        )
        tool_span_ids.append(format(tool.get_span_context().span_id, "016x"))
        tool.end(end_time=at + step * 2_000_000 + 1_500_000)
    run.end(end_time=at + plan["steps"] * 2_000_000)
    provider.shutdown()

    json.dump({"tool_span_ids": tool_span_ids, "batches": recording.batches}, sys.stdout)
    sys.exit(0 if all(b["result"] == "SUCCESS" for b in recording.batches) else 1)


if __name__ == "__main__":
    main()
