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
    """An OpenAI-compatible upstream: where it is and which environment variable holds its key.

    `prefill` says whether it continues a trailing assistant message (a broken stream can then be
    finished there); some need extra body fields (vLLM: continue_final_message) or fields on that
    message (DeepSeek, Mistral: "prefix": true), kept as (name, value) pairs.
    """

    name: str
    base_url: str
    api_key_env: str | None = None
    simulated: bool = False
    prefill: bool = False
    prefill_params: tuple[tuple[str, object], ...] = ()
    prefill_message: tuple[tuple[str, object], ...] = ()
    completions: bool = False  # serves the legacy /completions API too

    def api_key(self, environ: Mapping[str, str]) -> str | None:
        """The provider's key from the environment (never from a request)."""
        return environ.get(self.api_key_env) if self.api_key_env else None


@dataclass(frozen=True)
class Route:
    """One way to serve a catalog model: a provider and the model id that provider knows."""

    model_id: str
    provider: Provider
    upstream_model: str
    prefill: bool = False  # the provider's, unless the route says otherwise
    completions: bool = False  # serves /completions for this model: the provider's, unless the route says

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
        for model in getattr(catalog, "every", catalog.models):  # embedding models too
            real = []
            for spec in data.get("routes", {}).get(model.id, []):
                provider = providers[spec["provider"]]
                if provider.simulated or provider.api_key(environ):
                    real.append(Route(model.id, provider, spec.get("model", model.id),
                                      bool(spec.get("prefill", provider.prefill)),
                                      bool(spec.get("completions", provider.completions))))
            by_model[model.id] = tuple(real) or tuple(Route(model.id, p, model.id, p.prefill, p.completions)
                                                      for p in simulated)
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
    simulated = bool(spec.get("simulated"))
    return Provider(name, base_url.rstrip("/"), spec.get("api_key_env"), simulated,
                    prefill=bool(spec.get("prefill", simulated)),  # the simulator continues a prefill
                    prefill_params=_pairs(name, spec.get("prefill_params")),
                    prefill_message=_pairs(name, spec.get("prefill_message")),
                    completions=bool(spec.get("completions", simulated)))  # the simulator serves it


def _pairs(provider: str, fields) -> tuple[tuple[str, object], ...]:
    """A JSON object of scalar fields as sorted (name, value) pairs (routes are immutable and hashable)."""
    if fields is None:
        return ()
    if not isinstance(fields, dict) or not all(isinstance(v, (str, int, float, bool)) for v in fields.values()):
        raise ValueError(f"provider {provider!r}: prefill fields must be an object of strings, numbers or booleans")
    return tuple(sorted(fields.items()))
