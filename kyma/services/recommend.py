"""Model recommendations for a use case or a coding agent, with a ready-to-paste agent config."""

from __future__ import annotations

import json
from dataclasses import dataclass

from kyma.errors import InvalidRequest
from kyma.services.catalog import RECOMMENDED_FOR, Catalog, ModelInfo

# Use cases whose pick is an alias (the alias names the catalog's own choice for that job).
_USECASE_ALIAS = {"coding": "code", "general": "best", "agent": "agent", "reasoning": "reasoning",
                  "vision": "vision", "long-context": "long-context", "cheap": "cheap", "fast": "fast",
                  "balanced": "balanced"}


@dataclass(frozen=True)
class Agent:
    """A coding agent we can configure: how it talks to us and what it is mostly used for."""

    id: str
    name: str
    protocol: str  # "openai" (base URL …/v1), "openai-responses" (…/v1, Responses API) or "anthropic" (origin)
    usecase: str


AGENTS = (
    Agent("cline", "Cline", "openai", "agent"),
    Agent("roo-code", "Roo Code", "openai", "agent"),
    Agent("openclaw", "OpenClaw", "openai", "agent"),
    Agent("claude-code", "Claude Code", "anthropic", "agent"),
    Agent("aider", "Aider", "openai", "coding"),
    Agent("opencode", "OpenCode", "openai", "agent"),
    Agent("cursor", "Cursor", "openai", "coding"),
    Agent("kilo-code", "Kilo Code", "openai", "agent"),
    Agent("codex", "Codex CLI", "openai-responses", "coding"),
    Agent("continue", "Continue", "openai", "coding"),
)
AGENT_IDS = tuple(a.id for a in AGENTS)


@dataclass(frozen=True)
class Recommendation:
    """The pick, its alternatives (cheaper / stronger), why, and the agent config if one was asked for."""

    usecase: str
    agent: Agent | None
    model: ModelInfo
    alternatives: list[tuple[ModelInfo, str]]
    reason: str
    config: dict


def _candidates(catalog: Catalog, usecase: str, needs_tools: bool) -> list[ModelInfo]:
    found = [m for m in catalog.models if usecase in m.api.get("recommended_for", ())]
    if needs_tools:
        found = [m for m in found if m.supports_tools]
    return found or [m for m in catalog.models if m.supports_tools or not needs_tools]


def _pick(catalog: Catalog, usecase: str, candidates: list[ModelInfo]) -> ModelInfo:
    alias = _USECASE_ALIAS.get(usecase)
    target = catalog.get(alias) if alias else None
    if target is not None and target in candidates:
        return target
    recommended = [m for m in candidates if m.api.get("recommended")]
    return (recommended or candidates)[0]


def _alternatives(model: ModelInfo, candidates: list[ModelInfo]) -> list[tuple[ModelInfo, str]]:
    others = sorted((m for m in candidates if m.id != model.id), key=lambda m: m.pricing.input_per_1m)
    picks: list[tuple[ModelInfo, str]] = []
    cheaper = [m for m in others if m.pricing.input_per_1m < model.pricing.input_per_1m]
    if cheaper:
        picks.append((cheaper[0], "cheaper"))
    stronger = [m for m in others if m.quality_tier == "frontier-open" and all(m is not p for p, _ in picks)]
    if stronger:
        picks.append((stronger[-1], "stronger"))
    for m in others:
        if len(picks) >= 3:
            break
        if all(m is not p for p, _ in picks):
            picks.append((m, "also suitable"))
    return picks


def recommend(catalog: Catalog, *, usecase: str | None, agent_id: str | None, origin: str) -> Recommendation:
    """Choose a model for `usecase` (or the agent's usual job) and build the agent's config for `origin`."""
    if agent_id is not None and agent_id not in AGENT_IDS:
        raise InvalidRequest(f"Unknown agent {agent_id!r}; valid agents: {', '.join(AGENT_IDS)}.",
                             param="agent", code="invalid_parameter")
    if usecase is not None and usecase not in RECOMMENDED_FOR:
        raise InvalidRequest(f"Unknown usecase {usecase!r}; valid values: {', '.join(RECOMMENDED_FOR)}.",
                             param="usecase", code="invalid_parameter")
    agent = next((a for a in AGENTS if a.id == agent_id), None)
    usecase = usecase or (agent.usecase if agent else "general")
    candidates = _candidates(catalog, usecase, needs_tools=agent is not None)
    model = _pick(catalog, usecase, candidates)
    reason = f"{model.name} ({model.id}): {model.api.get('best_for', '')}".rstrip(": ")
    reason += f"; recommended for {usecase}"
    if agent:
        reason += f", supports the tool calling {agent.name} relies on"
    reason += f"; ${model.pricing.input_per_1m}/${model.pricing.output_per_1m} per 1M tokens in/out."
    config = agent_config(agent, model, catalog, origin)
    return Recommendation(usecase, agent, model, _alternatives(model, candidates), reason, config)


def agent_config(agent: Agent | None, model: ModelInfo, catalog: Catalog, origin: str) -> dict:
    """A ready-to-paste configuration for `agent` (or the OpenAI SDK) pointing at this gateway."""
    small = catalog.get("cheap") or model
    root = origin.rstrip("/")
    v1 = f"{root}/v1"
    if agent is None:
        snippet = (f'import os\nfrom openai import OpenAI\nclient = OpenAI(base_url="{v1}", api_key=os.environ["KYMA_API_KEY"])\n'
                   f'client.chat.completions.create(model="{model.id}", messages=[{{"role": "user", "content": "Hi"}}])')
        return {"format": "python", "base_url": v1, "snippet": snippet}
    if agent.id == "claude-code":
        env = {"ANTHROPIC_BASE_URL": root, "ANTHROPIC_AUTH_TOKEN": "<your ky- key>",
               "ANTHROPIC_MODEL": model.id, "ANTHROPIC_SMALL_FAST_MODEL": small.id}
        return {"format": "json", "file": "~/.claude/settings.json", "base_url": root,
                "settings": {"env": env}, "snippet": json.dumps({"env": env}, indent=2),
                "shell": "\n".join(f"export {k}={v!r}" for k, v in env.items())}
    if agent.id == "aider":
        cmd = f"aider --openai-api-base {v1} --openai-api-key $KYMA_API_KEY --model openai/{model.id}"
        env = {"OPENAI_API_BASE": v1, "OPENAI_API_KEY": "<your ky- key>"}
        return {"format": "shell", "base_url": v1, "settings": env, "snippet": cmd}
    if agent.id == "opencode":
        settings = {"$schema": "https://opencode.ai/config.json", "model": f"kyma/{model.id}",
                    "provider": {"kyma": {"npm": "@ai-sdk/openai-compatible", "name": "Kyma",
                                          "options": {"baseURL": v1, "apiKey": "{env:KYMA_API_KEY}"},
                                          "models": {model.id: {"name": model.name}}}}}
        return {"format": "json", "file": "opencode.json", "base_url": v1, "settings": settings,
                "snippet": json.dumps(settings, indent=2)}
    if agent.id == "openclaw":
        settings = {"models": {"providers": {"kyma": {
            "baseUrl": v1, "apiKey": "${KYMA_API_KEY}", "api": "openai-completions",
            "models": [{"id": model.id, "name": model.name, "contextWindow": model.context_window}]}}},
            "agents": {"defaults": {"model": {"primary": f"kyma/{model.id}"}}}}
        return {"format": "json", "file": "~/.openclaw/openclaw.json", "base_url": v1, "settings": settings,
                "snippet": json.dumps(settings, indent=2)}
    if agent.id == "continue":
        return continue_config(catalog, model, origin)
    if agent.id == "codex":
        snippet = (f'model = "{model.id}"\nmodel_provider = "kyma"\n\n[model_providers.kyma]\nname = "Kyma"\n'
                   f'base_url = "{v1}"\nenv_key = "KYMA_API_KEY"\nwire_api = "responses"\n')
        settings = {"model": model.id, "model_provider": "kyma", "model_providers": {"kyma": {
            "name": "Kyma", "base_url": v1, "env_key": "KYMA_API_KEY", "wire_api": "responses"}}}
        return {"format": "toml", "file": "~/.codex/config.toml", "base_url": v1, "settings": settings,
                "snippet": snippet}
    if agent.id == "cursor":
        settings = {"OpenAI API Key": "<your ky- key>", "Override OpenAI Base URL": v1, "Custom model": model.id}
        return {"format": "settings", "file": "Cursor Settings → Models", "base_url": v1, "settings": settings,
                "snippet": "\n".join(f"{k}: {v}" for k, v in settings.items())}
    # Cline, Roo Code and Kilo Code share the "OpenAI Compatible" provider form.
    settings = {"apiProvider": "openai", "openAiBaseUrl": v1, "openAiApiKey": "<your ky- key>",
                "openAiModelId": model.id}
    return {"format": "json", "file": f"{agent.name} → Settings → API Provider: OpenAI Compatible",
            "base_url": v1, "settings": settings, "snippet": json.dumps(settings, indent=2)}


def continue_config(catalog: Catalog, model: ModelInfo, origin: str) -> dict:
    """Continue's config.yaml: chat on `model`, autocomplete on a fill-in-the-middle model, and embeddings
    for codebase indexing, all through this gateway."""
    v1 = f"{origin.rstrip('/')}/v1"
    fim = next((m for m in catalog.models if m.supports_fim), model)
    roles = [(model, "chat, edit, apply")] + [(fim, "autocomplete")]
    roles += [(m, "embed") for m in catalog.embeddings[:1]]
    lines = ["name: Kyma", "version: 1.0.0", "schema: v1", "models:"]
    for m, role in roles:
        lines += [f"  - name: Kyma {m.name}", "    provider: openai", f"    model: {m.id}", f"    apiBase: {v1}",
                  "    apiKey: ${{ secrets.KYMA_API_KEY }}", f"    roles: [{role}]"]
    return {"format": "yaml", "file": "~/.continue/config.yaml", "base_url": v1,
            "settings": {"chat": model.id, "autocomplete": fim.id,
                         "embed": catalog.embeddings[0].id if catalog.embeddings else None},
            "snippet": "\n".join(lines) + "\n"}
