"""The upstream registry: one adapter per provider protocol, one connection pool per provider."""

from __future__ import annotations

import os

from kyma.providers.egress import Egress
from kyma.providers.openai_compat import OpenAICompatAdapter
from kyma.providers.routes import Route

# A provider protocol maps to its adapter class; a new protocol is a module plus a line here.
ADAPTERS = {"openai": OpenAICompatAdapter}


class UpstreamPool:
    """Builds adapters lazily, one per provider, each with its own connection pool."""

    def __init__(self, settings):
        self.settings = settings
        # Resolved at start, so a bad proxy or CA bundle setting stops the start, not each request.
        self.egress = Egress.from_settings(settings.upstream_proxy, settings.ca_bundle)
        self._adapters: dict[str, OpenAICompatAdapter] = {}

    def adapter(self, route: Route) -> OpenAICompatAdapter:
        """The adapter (and its connection pool) for the route's provider."""
        name = route.provider.name
        adapter = self._adapters.get(name)
        if adapter is None:
            s = self.settings
            # As many upstream sockets as the worker holds connections: a stream never waits for one.
            adapter = ADAPTERS["openai"](pool_size=s.worker_connections, connect_timeout=s.connect_timeout,
                                         first_byte_timeout=s.first_byte_timeout, idle_timeout=s.idle_timeout,
                                         egress=self.egress)
            self._adapters[name] = adapter
        return adapter

    @staticmethod
    def api_key(route: Route) -> str | None:
        """The provider's key, read from its environment variable at call time."""
        return route.provider.api_key(os.environ)
