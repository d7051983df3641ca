"""discovery endpoints (placeholder until its issue lands)."""

from kyma.api import api_bp  # noqa: F401
