"""Kyma gateway: one OpenAI- and Anthropic-compatible endpoint in front of many open-weight models."""

__version__ = "0.1.0"
