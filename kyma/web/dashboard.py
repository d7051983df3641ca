"""The signed-in dashboard: balance, spend charts, request log, API keys (htmx fragments)."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Response, abort, redirect, render_template, request, stream_with_context, url_for

from kyma.errors import InvalidRequest
from kyma.runtime import runtime
from kyma.services import accounts
from kyma.services import dashboard as board
from kyma.services import ledger, usage
from kyma.services.request_log import SESSION_KEY, export_batches, request_log
from kyma.web import charts, htmx, log_args, log_csv, web_bp
from kyma.web.identity import current_principal, login_required


def _spend_context(account_id: int) -> dict:
    days, per_model = board.spend_per_day(account_id), board.spend_per_model(account_id)
    balance, ladder = ledger.balance(account_id), runtime().tiers
    tier = ladder.get(balance.tier)
    return dict(balance=balance, tier=tier, next_tier=ladder.above(tier), day_chart=charts.daily_spend_chart(days),
                model_chart=charts.model_spend_chart(per_model), month_micros=sum(d.cost_micros for d in days),
                credits=board.credit_history(account_id))


# The regions of the dashboard that refresh themselves (every 10 s) ask for these element ids.
KEYS_TABLE = "keys-table"
CREDIT_ROWS = "credit-rows"


# The request log (filters and results) and its results alone: what a filter change, a sort link, the pager
# and Reset swap; either puts its filters in the URL. The rows' own refresh asks for the results too.
LOG_REGION = "requests"
LOG_RESULTS = "log-results"


def _log_filter():
    page = request.args.get("page", 1, type=int)
    if page < 1:
        abort(400, description="The page number must be 1 or more.")
    return log_args.filter_from_args(request.args, page)


def _key_names(keys) -> dict:
    return {k.id: k.name for k in keys}


def _log_context(account_id: int, keys=None) -> dict:
    keys = accounts.list_keys(account_id) if keys is None else keys
    flt = _log_filter()
    return dict(log=request_log(account_id, flt), log_models=board.logged_models(account_id), log_keys=keys,
                key_names=_key_names(keys), session_key=SESSION_KEY, la=log_args)


def _usage_context(account_id: int) -> dict:
    rng = usage.RANGES.get(request.args.get("range", ""), usage.RANGES[usage.DEFAULT_RANGE])
    buckets = usage.usage_series(account_id, rng)
    return dict(usage_range=rng, ranges=usage.RANGES.values(), usage_charts=charts.usage_charts(buckets, rng.hourly),
                usage_totals=dict(requests=sum(b.requests for b in buckets), tokens=sum(b.tokens for b in buckets),
                                  cost_micros=sum(b.cost_micros for b in buckets)),
                speeds=usage.model_speeds(account_id, rng))


@web_bp.get("/dashboard")
@login_required
def dashboard():
    """The whole dashboard page."""
    p = current_principal()
    keys = accounts.list_keys(p.account_id)
    return render_template("web/dashboard.html", principal=p, keys=keys, **_log_context(p.account_id, keys),
                           **_usage_context(p.account_id), **_spend_context(p.account_id))


@web_bp.get("/dashboard/spend")
@login_required
def spend():
    """Balance and spend charts (polled every 10 s)."""
    p = current_principal()
    return htmx.render("web/spend.html", "web/_spend.html", principal=p, **_spend_context(p.account_id))


@web_bp.get("/dashboard/credits")
@login_required
def credits():
    """Credit history rows (polled inside the opened history); a browser is sent to the spend page."""
    if not htmx.wants_fragment(CREDIT_ROWS):
        return redirect(url_for("web.spend"), 303)
    return render_template("web/_credits.html", credits=board.credit_history(current_principal().account_id))


@web_bp.get("/dashboard/keys")
@login_required
def keys():
    """The keys page; the keys table alone for the dashboard's refresh of "Last used"."""
    p = current_principal()
    return htmx.render("web/keys.html", "web/_keys_table.html", target=KEYS_TABLE,
                       keys=accounts.list_keys(p.account_id), new_key=None)


@web_bp.get("/dashboard/usage")
@login_required
def usage_view():
    """Requests, tokens and spend over a chosen range, and each model's speed."""
    p = current_principal()
    return htmx.render("web/usage.html", "web/_usage.html", **_usage_context(p.account_id))


@web_bp.get("/dashboard/requests")
@login_required
def requests_log():
    """The request log, filtered, sorted and paged; a filter change puts its filters in the page's URL."""
    p = current_principal()
    context = _log_context(p.account_id)
    push = None
    if htmx.wants_fragment(LOG_REGION) or htmx.wants_fragment(LOG_RESULTS):  # the refresh adds no history entries
        page = "web.dashboard" if _from_dashboard() else "web.requests_log"
        push = url_for(page, **log_args.query_args(context["log"].filter))
    fragment = "web/_requests.html" if htmx.wants_fragment(LOG_REGION) else "web/_log_results.html"
    return htmx.render("web/requests.html", fragment, push_url=push, principal=p, **context)


def _from_dashboard() -> bool:
    current = request.htmx.current_url or ""
    return urlsplit(current).path == url_for("web.dashboard")


@web_bp.get("/dashboard/requests.csv")
@login_required
def requests_csv():
    """Every request the log's filters select, in their order, as CSV streamed a batch at a time."""
    p = current_principal()
    flt = log_args.filter_from_args(request.args)
    names = _key_names(accounts.list_keys(p.account_id))

    def key_name(row) -> str:
        return SESSION_KEY if row.api_key_id is None else names.get(row.api_key_id, f"key {row.api_key_id}")

    body = stream_with_context(log_csv.lines(export_batches(p.account_id, flt), key_name))
    return Response(body, mimetype="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="kyma-requests.csv"'})


@web_bp.get("/dashboard/requests/<row_id:log_id>")
@login_required
def request_detail(log_id: int):
    """Tokens, cost, latency, time to first token, provider and fallback of one request."""
    row = board.request_detail(current_principal().account_id, log_id)
    return htmx.render("web/request_detail.html", "web/_request_detail.html", row=row,
                       attempts=board.attempts_of(row))


@web_bp.post("/dashboard/keys")
@login_required
def create_key():
    """Create a key; its full value is shown once, in this response only. A blank name is refused."""
    p = current_principal()
    name = request.form.get("name", "")
    if not name.strip():  # the API's "default" is for a name left out, not for a field left empty
        return _keys_response(p.account_id, error="Give the key a name, for example “laptop”.", status=400)
    try:
        new = accounts.create_key(p.account_id, name, limits=_form_limits(), catalog=runtime().catalog)
    except InvalidRequest as err:  # a limit field the service refused, named in the message
        return _keys_response(p.account_id, limits_error=err.message, status=400)
    return _keys_response(p.account_id, new_key=new, status=201)


@web_bp.post("/dashboard/keys/<row_id:key_id>/revoke")
@login_required
def revoke_key(key_id: int):
    """Revoke one of the signed-in account's keys (another account's key is a 404)."""
    p = current_principal()
    accounts.revoke_key(p.account_id, key_id)
    return _keys_response(p.account_id)


@web_bp.post("/dashboard/keys/<row_id:key_id>/limits")
@login_required
def edit_key_limits(key_id: int):
    """Set one key's credit limit, expiry and allowed models; a blank field clears that limit."""
    p = current_principal()
    try:
        accounts.set_key_limits(p.account_id, key_id, _form_limits(), runtime().catalog)
    except InvalidRequest as err:
        return _keys_response(p.account_id, limits_error=err.message, status=400)
    return _keys_response(p.account_id)


def _form_limits() -> dict:
    """A keys form's limit fields as the API takes them: a blank field is no limit."""
    form = request.form
    credit = form.get("credit_limit", "").strip()
    try:
        credit_limit = float(credit) if credit else None
    except ValueError:
        credit_limit = credit  # refused by the service, with a message naming the field
    models = form.get("allowed_models", "").replace(",", " ").split()
    return {"credit_limit": credit_limit, "expires_at": form.get("expires_at", "").strip() or None,
            "allowed_models": models or None}


def _keys_response(account_id: int, new_key=None, error: str | None = None, status: int = 200,
                   limits_error: str | None = None):
    # htmx swaps the keys table; a plain form post (no JavaScript) gets a page showing the same table.
    resp = htmx.render("web/keys.html", "web/_keys.html", keys=accounts.list_keys(account_id), new_key=new_key,
                       error=error, limits_error=limits_error)
    resp.status_code = status
    return resp
