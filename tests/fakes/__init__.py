"""Fake LLM providers speaking the real OpenAI, Anthropic and Gemini wire formats over HTTP."""

from tests.fakes.behaviour import Fault, Reply, ToolCall
from tests.fakes.remote import FakeProviderProcess, RemoteFakeProvider
from tests.fakes.server import FakeProviderServer
from tests.fakes.specs import anthropic_spec, gemini_spec, openai_spec

__all__ = [
    "FakeProviderProcess",
    "FakeProviderServer",
    "Fault",
    "RemoteFakeProvider",
    "Reply",
    "ToolCall",
    "anthropic_spec",
    "gemini_spec",
    "openai_spec",
]
