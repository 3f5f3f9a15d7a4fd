"""Re-export of :mod:`wae_loadrun.fakes.openai_api` (the fake OpenAI server) for the tests."""

from wae_loadrun.fakes.openai_api import (
    DEFAULT_API_KEY,
    FakeOpenAI,
    Messages,
    RecordedRequest,
    default_reply,
)

__all__ = ["DEFAULT_API_KEY", "FakeOpenAI", "Messages", "RecordedRequest", "default_reply"]
