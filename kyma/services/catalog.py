"""The model catalog: a data file of models and aliases, loaded once into typed objects."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from kyma.errors import InvalidRequest, ModelNotFound


# Model kinds: chat models serve chat, messages and completions; embedding models serve embeddings.
CHAT, EMBEDDING = "chat", "embedding"
KINDS = (CHAT, EMBEDDING)


# Costs are computed exactly in integers from prices scaled by this (kyma/services/pricing.py).
PRICE_DECIMALS = 9
PRICE_SCALE = 10**PRICE_DECIMALS


def scaled_price(usd_per_1m: float) -> int:
    """A price as an exact integer, USD per 1M tokens times PRICE_SCALE; ValueError if it cannot be."""
    exact = Decimal(str(usd_per_1m))
    if not exact.is_finite() or exact < 0 or exact.as_tuple().exponent < -PRICE_DECIMALS:
        raise ValueError(f"{usd_per_1m}: a price must be a non-negative number with at most "
                         f"{PRICE_DECIMALS} decimals")
    return int(exact * PRICE_SCALE)


@dataclass(frozen=True)
class Pricing:
    """USD per million tokens; each a finite, non-negative price with at most 9 decimals."""

    input_per_1m: float
    output_per_1m: float
    cached_input_per_1m: float

    def __post_init__(self):
        # Checked when the catalog loads: a bad price is a start-up error, not a 500 on some request.
        for name in ("input_per_1m", "output_per_1m", "cached_input_per_1m"):
            try:
                scaled_price(getattr(self, name))
            except ValueError as exc:
                raise ValueError(f"{name} {exc}") from None


@dataclass(frozen=True)
class ModelInfo:
    """One catalog model: what routing, pricing and validation need, plus its full API object."""

    id: str
    name: str
    family: str
    context_window: int
    max_output_tokens: int
    supports_tools: bool
    supports_vision: bool
    supports_reasoning: bool
    supports_structured_outputs: bool
    supports_caching: bool
    cost_tier: str
    latency_tier: str
    quality_tier: str
    pricing: Pricing
    api: dict  # the object /v1/models returns, every seed field included
    kind: str = CHAT  # chat | embedding: which endpoints may serve it
    supports_fim: bool = False  # fill-in-the-middle: /v1/completions takes a `suffix`
    dimensions: int = 0  # an embedding model's vector length
    min_dimensions: int = 0  # the shortest `dimensions` it can be truncated to (0: not truncatable)

    @classmethod
    def from_record(cls, record: dict) -> "ModelInfo":
        """Build from one catalog-file record (the API object itself)."""
        p = record["pricing"]
        try:
            pricing = Pricing(float(p["input_per_1m"]), float(p["output_per_1m"]),
                              float(p.get("cached_input_per_1m", round(float(p["input_per_1m"]) * 0.1, 6))))
        except ValueError as exc:
            raise ValueError(f"catalog model {record.get('id')!r}: {exc}") from None
        kind = record.get("kind", CHAT)
        if kind not in KINDS:
            raise ValueError(f"catalog model {record.get('id')!r}: kind must be one of {', '.join(KINDS)}")
        dimensions = int(record.get("dimensions") or 0)
        if kind == EMBEDDING and dimensions < 1:
            raise ValueError(f"catalog model {record.get('id')!r}: an embedding model needs its dimensions")
        truncatable = bool(record.get("supports_dimensions"))
        api = {**record, "kind": kind, "pricing": {"input_per_1m": pricing.input_per_1m, "output_per_1m": pricing.output_per_1m,
                                     "cached_input_per_1m": pricing.cached_input_per_1m}}
        return cls(
            id=record["id"], name=record["name"], family=record["family"],
            context_window=int(record["context_window"]), max_output_tokens=int(record["max_output_tokens"]),
            supports_tools=bool(record["supports_tools"]), supports_vision=bool(record["supports_vision"]),
            supports_reasoning=bool(record["supports_reasoning"]),
            supports_structured_outputs=bool(record["supports_structured_outputs"]),
            supports_caching=bool(record.get("supports_caching", True)),
            cost_tier=record["cost_tier"], latency_tier=record["latency_tier"],
            quality_tier=record["quality_tier"], pricing=pricing, api=api, kind=kind,
            supports_fim=bool(record.get("supports_fim")), dimensions=dimensions,
            min_dimensions=int(record.get("min_dimensions") or 1) if truncatable else 0,
        )


@dataclass(frozen=True)
class Catalog:
    """The chat models (`models`) and embedding models, in file order, with aliases and the default model.

    `models` holds only chat models: routing, fallback, discovery and the pages work on those;
    get() and resolve() find a model of any kind, so an endpoint can say a model is the wrong kind.
    """

    models: tuple[ModelInfo, ...]
    aliases: dict[str, str]
    default_model: str
    embeddings: tuple[ModelInfo, ...] = ()
    _by_id: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "_by_id", {m.id: m for m in self.every})

    @property
    def every(self) -> tuple[ModelInfo, ...]:
        """Every model, chat models first."""
        return self.models + self.embeddings

    def of_kind(self, kind: str | None) -> tuple[ModelInfo, ...]:
        """The models of one kind (None: every model)."""
        return self.every if kind is None else self.models if kind == CHAT else self.embeddings

    @classmethod
    def load(cls, path: Path) -> "Catalog":
        """Read and validate the catalog file; a dangling alias or default is an error at start-up."""
        data = json.loads(Path(path).read_text())
        every = tuple(ModelInfo.from_record(r) for r in data["models"])
        models = tuple(m for m in every if m.kind == CHAT)
        ids = {m.id for m in every}
        aliases = dict(data.get("aliases", {}))
        for alias, target in aliases.items():
            if target not in ids:
                raise ValueError(f"catalog alias {alias!r} points at unknown model {target!r}")
        if not models:
            raise ValueError("the catalog has no chat model")
        default = data.get("default_model", models[0].id)
        if default not in {m.id for m in models}:
            raise ValueError(f"catalog default model {default!r} is not a chat model of the catalog")
        return cls(models, aliases, default, tuple(m for m in every if m.kind == EMBEDDING))

    def get(self, name: str) -> ModelInfo | None:
        """The model (of any kind) with this id or alias, or None."""
        return self._by_id.get(self.aliases.get(name, name))

    def resolve(self, name: str) -> tuple[ModelInfo, str | None]:
        """(model, alias used or None); unknown names raise ModelNotFound (404)."""
        model = self.get(name)
        if model is None:
            raise ModelNotFound(f"The model '{name}' does not exist. GET /v1/models lists the models "
                                f"and their aliases.", param="model")
        return model, (name if name in self.aliases else None)

    def siblings(self, model: ModelInfo) -> list[ModelInfo]:
        """Other models of the same family (fallback layer 2), in catalog order."""
        return [m for m in self.models if m.family == model.family and m.id != model.id]


def load_claude_models(path: Path) -> dict:
    """The claude-* name → catalog model map for Anthropic clients ({} when the file is absent)."""
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else {}


def require_kind(model: ModelInfo, kind: str) -> None:
    """A 400 naming the endpoint a model of another kind belongs on."""
    if model.kind == kind:
        return
    if kind == CHAT:
        raise InvalidRequest(f"'{model.id}' is an embedding model: use POST /v1/embeddings, or a chat model "
                             f"from GET /v1/models.", param="model", code="model_not_chat")
    raise InvalidRequest(f"'{model.id}' is a chat model, not an embedding model; GET /v1/models?kind=embedding "
                         f"lists the embedding models.", param="model", code="model_not_embedding")


# The seed's recommended_for vocabulary and tier enums; filters reject anything else.
RECOMMENDED_FOR = ("general", "coding", "reasoning", "agent", "vision", "fast", "cheap", "long-context",
                   "math", "multilingual", "balanced", "value", "writing", "bulk")
LATENCY_TIERS = ("fast", "medium", "slow")
COST_TIERS = ("cheap", "balanced", "premium")
QUALITY_TIERS = ("efficient", "strong", "frontier-open")


@dataclass(frozen=True)
class ModelFilter:
    """The /v1/models query filters; None means "don't filter on this"."""

    recommended_for: tuple[str, ...] = ()
    tools: bool | None = None
    vision: bool | None = None
    reasoning: bool | None = None
    structured_outputs: bool | None = None
    latency_tier: str | None = None
    cost_tier: str | None = None
    quality_tier: str | None = None
    min_context_window: int | None = None
    max_input_price: float | None = None
    kind: str | None = CHAT  # None: every kind

    def matches(self, m: ModelInfo) -> bool:
        """True when the model passes every filter that is set."""
        flags = ((self.tools, m.supports_tools), (self.vision, m.supports_vision),
                 (self.reasoning, m.supports_reasoning),
                 (self.structured_outputs, m.supports_structured_outputs))
        if any(want is not None and want != have for want, have in flags):
            return False
        tiers = ((self.latency_tier, m.latency_tier), (self.cost_tier, m.cost_tier),
                 (self.quality_tier, m.quality_tier))
        if any(want is not None and want != have for want, have in tiers):
            return False
        if self.recommended_for and not set(self.recommended_for) & set(m.api.get("recommended_for", ())):
            return False
        if self.min_context_window is not None and m.context_window < self.min_context_window:
            return False
        return self.max_input_price is None or m.pricing.input_per_1m <= self.max_input_price


def filter_models(catalog: Catalog, model_filter: ModelFilter) -> list[ModelInfo]:
    """The catalog's models of the filter's kind that pass `model_filter`, in catalog order."""
    return [m for m in catalog.of_kind(model_filter.kind) if model_filter.matches(m)]

