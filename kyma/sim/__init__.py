"""The provider simulator: an OpenAI-compatible upstream with fault injection (see app.py)."""
