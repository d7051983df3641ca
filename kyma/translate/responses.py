"""The OpenAI Responses translation surface used by /v1/responses (pure functions, no I/O)."""

from kyma.translate.responses_request import Translated, responses_to_chat_request
from kyma.translate.responses_response import chat_to_response, new_response, responses_usage
from kyma.translate.responses_stream import ResponsesStreamTranslator, sse_event

__all__ = ["ResponsesStreamTranslator", "Translated", "chat_to_response", "new_response",
           "responses_to_chat_request", "responses_usage", "sse_event"]
