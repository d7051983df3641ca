"""Everything before the first upstream call: validate, plan, admit under the rate limits, hold credit."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kyma import tokens
from kyma.chat.apis import CAPABILITY_PARAMS, INPUT_PARAMS, check_model, parse_request
from kyma.chat.call import ChatCall, Prepared, output_cap
from kyma.chat.plan import missing_capability
from kyma.db import connected, write_transaction
from kyma.errors import ContextLengthExceeded, InsufficientCredits, InvalidRequest
from kyma.services import group_commit, key_limits, landed, ledger, row_locks
from kyma.services.accounts import Principal
from kyma.services.catalog import CHAT, ModelInfo
from kyma.services.pricing import micros_to_usd, worst_case_micros
from kyma.services.ratelimit import Admission

if TYPE_CHECKING:
    from kyma.runtime import Runtime


def prepare(rt: Runtime, call: ChatCall, principal: Principal) -> Prepared:
    """Validate, plan, admit and hold; raises the KymaError the client should get."""
    req = parse_request(call.endpoint, call.body)
    model, alias = rt.catalog.resolve(req.model)
    allowed = key_limits.check_model(principal, rt.catalog, model)
    alias = call.asked_for or alias
    if req.api != "chat" or model.kind != CHAT:
        check_model(model, req, rt.routes.routes_for(model.id))
    lacking = missing_capability(model, req.needs)
    if lacking:
        raise InvalidRequest(f"The model '{model.id}' does not support {lacking}; GET /v1/models lists the "
                             f"models that do.", param=CAPABILITY_PARAMS.get(lacking, "messages"),
                             code="unsupported_feature")
    if req.input_tokens is None:
        prompt_tokens = tokens.count_messages(req.messages, call.body.get("tools"))
    else:
        prompt_tokens = req.input_tokens
    fit = prompt_tokens if req.longest_input is None else req.longest_input  # what must fit the window
    candidates = key_limits.within(allowed, rt.planner.plan(model, req, fit))
    if not candidates:
        if fit >= model.context_window:
            what = "The prompt" if req.longest_input is None else "An input"
            raise ContextLengthExceeded(f"{what} (about {fit} tokens) does not fit the context window of "
                                        f"'{model.id}' ({model.context_window}) or of any fallback model.",
                                        param=INPUT_PARAMS[req.api])
        raise InvalidRequest("No provider route matches the request's provider preferences.", param="provider",
                             code="no_route")
    tier = rt.tiers.get(principal.tier)
    models = {c.model.id: c.model for c in candidates}.values()
    # A max_tokens beyond what a model can write is held, reserved and sent as that model's limit:
    # Claude Code asks for more output than open models have.
    hold = max(worst_case_micros(m, prompt_tokens, output_cap(m, req.max_tokens)) for m in models)
    admission = _admit_and_hold(rt, principal, call.request_id, model, list(models), prompt_tokens,
                                req.max_tokens and output_cap(model, req.max_tokens), hold, tier)
    return Prepared(call, principal, req, model, alias, candidates, prompt_tokens, hold, admission)


class _Refused(Exception):
    """Rolls back an admission whose hold the balance could not cover."""

    def __init__(self, admission: Admission | None = None):
        super().__init__()
        self.admission = admission


class _KeyRefused(_Refused):
    """Rolls back an admission whose hold would take the key past its credit limit."""


def _take_hold(principal: Principal, request_id: str, hold: int, ttl: int,
               admission: Admission | None = None) -> None:
    """The key's credit limit, then the balance; raises _KeyRefused or _Refused (roll back the caller's transaction)."""
    if not key_limits.reserve(principal, hold):
        raise _KeyRefused(admission)
    if not ledger.place_hold(principal.account_id, request_id, hold, ttl_seconds=ttl,
                             note=key_limits.hold_note(principal)):
        raise _Refused(admission)


def _admit_and_hold(rt: Runtime, principal: Principal, request_id: str, model: ModelInfo,
                    models: list[ModelInfo], prompt_tokens: int, max_tokens: int | None, hold: int,
                    tier) -> Admission:
    """Rate limits, then the credit hold: one transaction when the counters share the database."""
    account = principal.account_id
    ttl = rt.settings.hold_ttl_seconds
    if rt.limiter.in_database:
        def admit() -> Admission:
            admission = rt.limiter.admit(account, tier, model.id, prompt_tokens, max_tokens or 0)
            _take_hold(principal, request_id, hold, ttl, admission)  # a refusal undoes the admission: no quota used
            return admission

        try:
            # Committed (with whatever else this worker writes meanwhile) before the upstream call.
            return group_commit.run(admit, isolated=True, landed=group_commit.Landed(landed.held, request_id),
                                    locks=row_locks.of(principal))
        except _KeyRefused as refused:
            raise key_limits.refusal(principal, hold, refused.admission.headers) from None
        except _Refused as refused:
            raise _insufficient(account, model, models, prompt_tokens, max_tokens, hold,
                                refused.admission.headers) from None
    admission = rt.limiter.admit(account, tier, model.id, prompt_tokens, max_tokens or 0)  # Redis: no txn
    try:
        if principal.key_limit_micros is None:
            # One statement (on PostgreSQL), committed with the holds this worker places alongside:
            # one round trip and one commit for them all, before any of their upstream calls.
            wanted = ledger.HoldRequest(account, request_id, hold, ttl, key_limits.hold_note(principal))
            if not group_commit.run(lambda: ledger.place_hold(account, request_id, hold, ttl_seconds=ttl),
                                    batch=group_commit.Batch(ledger.place_holds, wanted, landed.holds_placed),
                                    locks=row_locks.of(principal)):
                raise _Refused()
        else:
            # The key's reservation and the hold stand or fall together: one transaction of their own.
            group_commit.alone(lambda: _take_hold(principal, request_id, hold, ttl), row_locks.of(principal))
    except _KeyRefused:
        rt.limiter.cancel(admission)
        raise key_limits.refusal(principal, hold, admission.headers) from None
    except _Refused:
        rt.limiter.cancel(admission)
        raise _insufficient(account, model, models, prompt_tokens, max_tokens, hold, admission.headers) from None
    except BaseException:
        rt.limiter.cancel(admission)  # the database failed: the request never ran
        raise
    return admission


def affordable_max_tokens(models: list[ModelInfo], prompt_tokens: int, available: int) -> int:
    """The largest max_tokens whose hold (the worst case over every candidate model) fits `available`."""
    best = None
    for m in models:
        out = m.pricing.output_per_1m
        n = int((available - prompt_tokens * m.pricing.input_per_1m) // out) if out > 0 else 0
        # The float estimate can be off by one either way: settle it with the exact integer check.
        while n > 0 and worst_case_micros(m, prompt_tokens, n) > available:
            n -= 1
        while out > 0 and worst_case_micros(m, prompt_tokens, n + 1) <= available:
            n += 1
        best = n if best is None else min(best, n)
    return max(0, best or 0)


def _insufficient(account_id: int, model: ModelInfo, models: list[ModelInfo], prompt_tokens: int,
                  max_tokens: int | None, hold: int, headers: dict) -> InsufficientCredits:
    """A 402 that says what the balance could afford (a max_tokens that would be accepted)."""
    available = max(0, ledger.balance(account_id).balance_micros)
    affordable = affordable_max_tokens(models, prompt_tokens, available)
    asked = max_tokens or model.max_output_tokens
    hint = (f"Lower max_tokens to {affordable} or less, or add credits." if affordable >= 1
            else "Add credits to continue.")
    return InsufficientCredits(
        f"Insufficient credits: this request may cost up to ${micros_to_usd(hold):.6f} ({prompt_tokens} prompt "
        f"tokens + max_tokens {asked} at {model.id} prices, or a fallback model's) and the balance is "
        f"${micros_to_usd(available):.6f}. " + hint, headers=headers)
