"""The per-app runtime: settings and the long-lived service objects built once in create_app."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import current_app

from kyma.config import Settings

if TYPE_CHECKING:
    from kyma.chat.plan import Planner
    from kyma.providers.registry import UpstreamPool
    from kyma.providers.routes import RouteTable
    from kyma.services.breaker import CircuitBreaker
    from kyma.services.catalog import Catalog
    from kyma.services.ratelimit import Limiter
    from kyma.services.tiers import TierLadder


@dataclass
class Runtime:
    """What the views and the pipeline need, built once per app (never at import time)."""

    settings: Settings
    catalog: Catalog
    routes: RouteTable
    planner: Planner
    limiter: Limiter
    breaker: CircuitBreaker
    upstreams: UpstreamPool
    claude_models: dict
    tiers: TierLadder


def runtime() -> Runtime:
    """The current app's runtime."""
    return current_app.extensions["kyma"]
