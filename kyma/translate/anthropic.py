"""The Anthropic Messages translation surface used by /v1/messages (pure functions, no I/O)."""

from kyma.translate.anthropic_models import (anthropic_model, anthropic_page, capable_model, claude_names,
                                             map_claude_model)
from kyma.translate.anthropic_request import anthropic_to_openai_request, count_tokens_for
from kyma.translate.anthropic_response import anthropic_usage, openai_to_anthropic_response
from kyma.translate.anthropic_stream import AnthropicStreamTranslator, sse_event
from kyma.translate.errors import anthropic_error_body

__all__ = ["AnthropicStreamTranslator", "anthropic_error_body", "anthropic_model", "anthropic_page",
           "anthropic_to_openai_request", "capable_model", "claude_names",
           "anthropic_usage", "count_tokens_for", "map_claude_model", "openai_to_anthropic_response",
           "sse_event"]
