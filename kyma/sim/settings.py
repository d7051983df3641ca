"""Simulator settings, read once from KYMA_SIM_* environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass

from kyma.sim.faults import FaultRates, parse_rates

# Served when KYMA_SIM_MODELS is unset; the launcher passes the catalog's ids instead.
DEFAULT_MODELS = ("sim-small", "sim-large")


@dataclass(frozen=True)
class SimSettings:
    """One simulated provider's personality."""

    name: str = "sim"
    latency_ms: float = 0.0
    tokens_per_sec: float = 0.0
    faults: FaultRates = FaultRates(())
    seed: int = 0
    api_key: str = ""
    timeout_seconds: float = 30.0
    models: tuple[str, ...] = DEFAULT_MODELS
    context_window: int = 0
    prefill: str = "continue"  # a trailing assistant message: continue it, or "reject" it with a 400

    @classmethod
    def from_env(cls, environ: dict | None = None) -> "SimSettings":
        """Settings from KYMA_SIM_* variables (unset ones keep the deterministic defaults)."""
        env = os.environ if environ is None else environ
        models = tuple(m.strip() for m in env.get("KYMA_SIM_MODELS", "").split(",") if m.strip())
        return cls(
            name=env.get("KYMA_SIM_NAME", "sim"),
            latency_ms=float(env.get("KYMA_SIM_LATENCY_MS", "0")),
            tokens_per_sec=float(env.get("KYMA_SIM_TOKENS_PER_SEC", "0")),
            faults=parse_rates(env.get("KYMA_SIM_FAULTS", "")),
            seed=int(env.get("KYMA_SIM_SEED", "0")),
            api_key=env.get("KYMA_SIM_API_KEY", ""),
            timeout_seconds=float(env.get("KYMA_SIM_TIMEOUT_SECONDS", "30")),
            models=models or DEFAULT_MODELS,
            context_window=int(env.get("KYMA_SIM_CONTEXT_WINDOW", "0")),
            prefill=_prefill(env.get("KYMA_SIM_PREFILL", "continue")),
        )


def _prefill(value: str) -> str:
    if value not in ("continue", "reject"):
        raise ValueError(f"KYMA_SIM_PREFILL must be continue or reject, not {value!r}")
    return value
