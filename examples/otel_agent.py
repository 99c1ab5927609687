"""A small agent loop instrumented with the OpenTelemetry SDK, recording into sessiongraph.

No model is called: the "model" answers from a table, but the spans are the ones a real
agent makes under OpenTelemetry's GenAI semantic conventions (invoke_agent, chat,
execute_tool, with gen_ai.conversation.id naming the conversation). Point the exporter at
a running `sessiongraph serve` with the two standard variables:

    export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:8000
    export OTEL_EXPORTER_OTLP_HEADERS="x-api-key=<your API key>"
    python examples/otel_agent.py [conversation id]

Each question becomes a turn of the session whose external id is the conversation id.
"""

import json
import sys
import uuid

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

QUESTIONS = ["What is the weather in Paris?", "And in Rome?"]
WEATHER = {"Paris": "18°C, light rain", "Rome": "24°C, sunny"}


def messages(role: str, text: str) -> str:
    """A GenAI message list, as the conventions record it on a span (a JSON string)."""
    return json.dumps([{"role": role, "parts": [{"type": "text", "content": text}]}])


def fake_model(question: str, tool_result: str | None) -> tuple[str | None, str]:
    """(the city to look up, or None), the answer text."""
    city = next((c for c in WEATHER if c in question), "Rome")
    if tool_result is None:
        return city, f"Let me look up the weather in {city}."
    return None, f"The weather in {city}: {tool_result}."


def ask(tracer, conversation_id: str, question: str) -> str:
    """One turn: the agent's span (the trace's root), a model call, a tool call, a model call."""
    common = {"gen_ai.conversation.id": conversation_id, "gen_ai.agent.name": "weather-agent"}
    with tracer.start_as_current_span("invoke_agent weather-agent", kind=SpanKind.INTERNAL) as agent:
        agent.set_attributes({**common, "gen_ai.operation.name": "invoke_agent", "gen_ai.input.messages": messages("user", question)})
        tool_result = None
        for _ in range(2):
            with tracer.start_as_current_span("chat fake-model", kind=SpanKind.CLIENT) as chat:
                city, answer = fake_model(question, tool_result)
                chat.set_attributes({
                    **common, "gen_ai.operation.name": "chat", "gen_ai.request.model": "fake-model",
                    "gen_ai.input.messages": messages("user", question), "gen_ai.output.messages": messages("assistant", answer),
                    "gen_ai.usage.input_tokens": 20 + len(question), "gen_ai.usage.output_tokens": len(answer.split()),
                })
            if city is None:
                break
            with tracer.start_as_current_span("execute_tool get_weather") as tool:
                tool_result = WEATHER[city]
                tool.set_attributes({
                    **common, "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "get_weather",
                    "gen_ai.tool.call.arguments": json.dumps({"city": city}), "gen_ai.tool.call.result": tool_result,
                })
        agent.set_attribute("gen_ai.output.messages", messages("assistant", answer))
        agent.set_status(Status(StatusCode.OK))
        return answer


def main() -> None:
    conversation_id = sys.argv[1] if len(sys.argv) > 1 else f"weather-{uuid.uuid4().hex[:8]}"
    provider = TracerProvider(resource=Resource.create({"service.name": "weather-agent"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))  # OTEL_EXPORTER_OTLP_* from the environment
    tracer = provider.get_tracer("examples.otel_agent")
    for question in QUESTIONS:
        print(f"> {question}\n{ask(tracer, conversation_id, question)}")
    provider.shutdown()  # exports what is left
    print(f"conversation: {conversation_id}")


if __name__ == "__main__":
    main()
