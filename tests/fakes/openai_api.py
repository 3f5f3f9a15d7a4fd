"""Re-export of :mod:`apps.loadrun.fakes.openai_api` (the fake OpenAI server) for the tests."""

from apps.loadrun.fakes.openai_api import (
    DEFAULT_API_KEY,
    FakeOpenAI,
    Messages,
    RecordedRequest,
    default_reply,
)

__all__ = ["DEFAULT_API_KEY", "FakeOpenAI", "Messages", "RecordedRequest", "default_reply"]
