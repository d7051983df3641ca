"""Provider routes per catalog model, loaded from a data file the operator edits (KYMA_ROUTES)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from kyma.providers.http import parse_base_url


@dataclass(frozen=True)
class Provider:
    """An OpenAI-compatible upstream: where it is and which environment variable holds its key."""

    name: str
    base_url: str
    api_key_env: str | None = None
    simulated: bool = False

    def api_key(self, environ: Mapping[str, str]) -> str | None:
        """The provider's key from the environment (never from a request)."""
        return environ.get(self.api_key_env) if self.api_key_env else None


@dataclass(frozen=True)
class Route:
    """One way to serve a catalog model: a provider and the model id that provider knows."""

    model_id: str
    provider: Provider
    upstream_model: str

    @property
    def key(self) -> str:
        """Identity of the route for circuit-breaker state and outcome records."""
        return f"{self.provider.name}/{self.model_id}"


@dataclass(frozen=True)
class RouteTable:
    """Usable routes per catalog model, in the order they are tried."""

    by_model: dict[str, tuple[Route, ...]]
    providers: dict[str, Provider]

    @classmethod
    def load(cls, path: Path, catalog, *, sim_base_port: int = 8091,
             environ: Mapping[str, str] | None = None) -> "RouteTable":
        """Read the routes file; keep real routes whose key is set, else fall back to simulators."""
        environ = os.environ if environ is None else environ
        data = json.loads(Path(path).read_text())
        providers = {name: _provider(name, spec, sim_base_port) for name, spec in data["providers"].items()}
        simulated = [providers[n] for n in data.get("simulated", [])]
        by_model: dict[str, tuple[Route, ...]] = {}
        for model in catalog.models:
            real = []
            for spec in data.get("routes", {}).get(model.id, []):
                provider = providers[spec["provider"]]
                if provider.simulated or provider.api_key(environ):
                    real.append(Route(model.id, provider, spec.get("model", model.id)))
            by_model[model.id] = tuple(real) or tuple(Route(model.id, p, model.id) for p in simulated)
        return cls(by_model, providers)

    def routes_for(self, model_id: str) -> tuple[Route, ...]:
        """The routes of one model, in order (empty for an unknown model)."""
        return self.by_model.get(model_id, ())

    @property
    def simulated(self) -> bool:
        """True when any model is served by a simulated provider."""
        return any(r.provider.simulated for routes in self.by_model.values() for r in routes)


def _provider(name: str, spec: dict, sim_base_port: int) -> Provider:
    base_url = spec["base_url"]
    if "sim_port_offset" in spec:
        base_url = base_url.replace("{sim_port}", str(sim_base_port + int(spec["sim_port_offset"])))
    try:
        parse_base_url(base_url)  # checked when the routes load, not on each request
    except ValueError as exc:
        raise ValueError(f"provider {name!r}: {exc}") from None
    return Provider(name, base_url.rstrip("/"), spec.get("api_key_env"), bool(spec.get("simulated")))
