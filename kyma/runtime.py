"""The per-app runtime: settings and the long-lived service objects built once in create_app."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import current_app

from kyma.config import Settings


@dataclass
class Runtime:
    """What the views and the pipeline need, built once per app (never at import time)."""

    settings: Settings
    catalog: Any  # kyma.services.catalog.Catalog
    routes: Any  # kyma.services.routes.RouteTable
    planner: Any  # kyma.services.router.Planner
    limiter: Any  # kyma.services.ratelimit.Limiter
    breaker: Any  # kyma.services.breaker.CircuitBreaker
    upstreams: Any  # kyma.providers.registry.UpstreamPool
    claude_models: dict
    tiers: Any = None  # kyma.services.tiers.TierLadder


def runtime() -> Runtime:
    """The current app's runtime."""
    return current_app.extensions["kyma"]
