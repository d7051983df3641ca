"""Route planning: the ordered candidates for a request, by fallback layer."""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from kyma.chat.request import ChatRequest, Needs, ProviderPrefs
from kyma.providers.routes import Route, RouteTable
from kyma.services.catalog import Catalog, ModelInfo

NO_FALLBACK, SAME_MODEL, SAME_FAMILY, COMPARABLE = 0, 1, 2, 3
MAX_COMPARABLE_MODELS = 2
QUALITY_RANK = {"efficient": 0, "strong": 1, "frontier-open": 2}


@dataclass(frozen=True)
class Candidate:
    """One attempt the router may make: a route, the model it serves, and its fallback layer."""

    route: Route
    model: ModelInfo
    layer: int


def missing_capability(model: ModelInfo, needs: Needs) -> str | None:
    """The first thing the request uses that the model lacks, or None."""
    if needs.tools and not model.supports_tools:
        return "tool calling"
    if needs.vision and not model.supports_vision:
        return "image input"
    if needs.structured and not model.supports_structured_outputs:
        return "structured outputs"
    if needs.fim and not model.supports_fim:
        return "fill-in-the-middle (suffix)"
    return None


def fits(model: ModelInfo, needs: Needs, prompt_tokens: int) -> bool:
    """Can the model serve a request with these needs and this prompt size?"""
    return missing_capability(model, needs) is None and prompt_tokens < model.context_window


def _apply_prefs(routes: tuple[Route, ...], prefs: ProviderPrefs) -> list[Route]:
    kept = [r for r in routes if (not prefs.only or r.provider.name in prefs.only)
            and r.provider.name not in prefs.ignore]
    if prefs.order:
        rank = {name: i for i, name in enumerate(prefs.order)}
        kept.sort(key=lambda r: rank.get(r.provider.name, len(rank)))
        if not prefs.allow_fallbacks:
            kept = [r for r in kept if r.provider.name in rank]
    return kept


def _comparable(catalog: Catalog, model: ModelInfo, needs: Needs, prompt_tokens: int) -> list[ModelInfo]:
    """Other families of similar quality and price, closest first (layer 3)."""
    rank = QUALITY_RANK.get(model.quality_tier, 1)
    pool = [m for m in catalog.models if m.family != model.family and fits(m, needs, prompt_tokens)
            and QUALITY_RANK.get(m.quality_tier, 1) >= rank - 1]
    price = model.pricing.input_per_1m + model.pricing.output_per_1m
    pool.sort(key=lambda m: (abs(QUALITY_RANK.get(m.quality_tier, 1) - rank),
                             abs(m.pricing.input_per_1m + m.pricing.output_per_1m - price)))
    return pool[:MAX_COMPARABLE_MODELS]


def _routes(table: RouteTable, model_id: str, req: ChatRequest) -> list[Route]:
    """A model's routes that serve the request's API, after the client's provider preferences."""
    routes = table.routes_for(model_id)
    if req.api == "completions":
        routes = tuple(r for r in routes if r.completions)
    return _apply_prefs(routes, req.provider)


def plan(catalog: Catalog, table: RouteTable, model: ModelInfo, req: ChatRequest,
         prompt_tokens: int) -> list[Candidate]:
    """All candidates in the order they are tried: own routes, then siblings, then comparable models.

    Embeddings never fall back to another model: its vectors would live in another space.
    """
    candidates: list[Candidate] = []
    if prompt_tokens < model.context_window:
        for i, route in enumerate(_routes(table, model.id, req)):
            candidates.append(Candidate(route, model, NO_FALLBACK if i == 0 else SAME_MODEL))
    if not req.provider.allow_fallbacks or req.api == "embeddings":
        return candidates
    if req.fallback_models:
        others = [m for m in (catalog.get(name) for name in req.fallback_models) if m is not None]
        others = [m for m in others if m.id != model.id and m.kind == model.kind
                  and fits(m, req.needs, prompt_tokens)]
    else:
        others = [m for m in catalog.siblings(model) if fits(m, req.needs, prompt_tokens)]
        others += [m for m in _comparable(catalog, model, req.needs, prompt_tokens) if m not in others]
    for other in others:
        layer = SAME_FAMILY if other.family == model.family else COMPARABLE
        for route in _routes(table, other.id, req):
            candidates.append(Candidate(route, other, layer))
    return candidates


class Planner:
    """plan() with a cache: a plan depends on the prompt only through which context windows it fits."""

    def __init__(self, catalog: Catalog, table: RouteTable, max_entries: int = 4096):
        self.catalog = catalog
        self.table = table
        self.windows = sorted({m.context_window for m in catalog.models})
        self.max_entries = max_entries
        self._cache: dict[tuple, list[Candidate]] = {}

    def plan(self, model: ModelInfo, req: ChatRequest, prompt_tokens: int) -> list[Candidate]:
        """The candidates for a request, shared by every request of the same shape."""
        fit = bisect.bisect_right(self.windows, prompt_tokens)  # how many window sizes it does NOT fit
        key = (model.id, req.api, req.needs, req.provider, req.fallback_models, fit)
        found = self._cache.get(key)
        if found is None:
            if len(self._cache) >= self.max_entries:
                self._cache.clear()  # request shapes are few; a flood of odd ones just starts over
            found = self._cache[key] = plan(self.catalog, self.table, model, req, prompt_tokens)
        return found
