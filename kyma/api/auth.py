"""/v1/auth: sign-up, log-in, log-out, the caller's account and API keys."""

from __future__ import annotations

from flask import jsonify, request

from kyma.api import api_bp
from kyma.api.credentials import current_principal, presented_credential, require_principal
from kyma.api.parsing import json_object
from kyma.errors import InvalidRequest
from kyma.runtime import runtime
from kyma.services import accounts
from kyma.services.accounts import isoformat_utc
from kyma.services.pricing import micros_to_usd

# Fields a client may never set on itself (mass assignment); anything else unknown is ignored.
_FORBIDDEN_FIELDS = ("user_id", "account_id", "owner", "balance", "tier", "is_admin", "admin",
                     "key_hash", "password_hash", "lifetime_purchased", "credits")


def _body() -> dict:
    body = json_object()
    for name in _FORBIDDEN_FIELDS:
        if name in body:
            raise InvalidRequest(f"'{name}' cannot be set by a client.", param=name, code="forbidden_field")
    return body


def _string_field(body: dict, name: str) -> str:
    """A field that must be a string; any string (even empty) is then judged by the service."""
    value = body.get(name)
    if not isinstance(value, str):
        raise InvalidRequest(f"'{name}' is required and must be a string.", param=name,
                             code="missing_field" if value is None else "invalid_type")
    return value


def secret_response(payload: dict, status: int = 200):
    """A response carrying a secret shown once: never cached anywhere."""
    resp = jsonify(payload)
    resp.status_code = status
    resp.headers["Cache-Control"] = "no-store"
    return resp


@api_bp.post("/auth/register")
def register():
    """Create an account; returns its first API key and a session token (shown once)."""
    body = _body()
    reg = accounts.register(body.get("email"), body.get("password"), runtime().settings,
                            client_ip=request.remote_addr or "")
    return secret_response({
        "user_id": str(reg.account_id), "email": reg.email, "api_key": reg.api_key,
        "api_key_id": reg.api_key_id, "session_token": reg.session_token,
        "expires_at": isoformat_utc(reg.expires_at), "balance": micros_to_usd(reg.balance_micros),
    })


@api_bp.post("/auth/login")
def login():
    """Exchange email and password for a session token."""
    body = _body()
    email, password = _string_field(body, "email"), _string_field(body, "password")
    grant = accounts.login(email, password, runtime().settings, client_ip=request.remote_addr or "")
    return secret_response({"session_token": grant.token, "expires_at": isoformat_utc(grant.expires_at),
                    "user_id": str(grant.account_id)})


@api_bp.post("/auth/logout")
@require_principal
def logout():
    """End the session whose token authenticated this request."""
    accounts.logout(presented_credential(request))
    return jsonify({"ok": True})


@api_bp.get("/auth/me")
@require_principal
def me():
    """The caller's account, balance and masked keys."""
    return jsonify(accounts.me(current_principal()))


@api_bp.get("/auth/keys")
@require_principal
def list_keys():
    """The caller's API keys, masked."""
    keys = accounts.list_keys(current_principal().account_id)
    return jsonify({"keys": [k.to_dict() for k in keys]})


@api_bp.post("/auth/keys")
@require_principal
def create_key():
    """A new API key; the full key appears in this response only."""
    # get_data, not request.data: a body sent with a form Content-Type (curl -d) counts too.
    body = _body() if request.get_data(cache=True) else {}
    account_id = current_principal().account_id
    new = accounts.create_key(account_id, body.get("name"), limits=_limits(body), catalog=runtime().catalog)
    info = next(k for k in accounts.list_keys(account_id) if k.id == new.id).to_dict()
    return secret_response({**info, "id": new.id, "name": new.name, "key": new.key, "api_key": new.key,
                            "prefix": new.prefix, "created_at": isoformat_utc(new.created_at)}, 201)


def _limits(body: dict) -> dict:
    """The limit fields the body names (a null clears one)."""
    return {name: body[name] for name in accounts.LIMIT_FIELDS if name in body}


# One rule for both methods: two rules on one path answer an id the converter refuses with 405, not 404.
@api_bp.route("/auth/keys/<row_id:key_id>", methods=["PATCH", "DELETE"])
@require_principal
def one_key(key_id: int):
    """PATCH changes a key's limits, DELETE revokes it."""
    return _update_key(key_id) if request.method == "PATCH" else _revoke_key(key_id)


def _update_key(key_id: int):
    """Change a key's credit limit, expiry or model allow-list; fields left out stay, null clears one."""
    body = _body()
    key = accounts.set_key_limits(current_principal().account_id, key_id, _limits(body), runtime().catalog)
    return jsonify(key.to_dict())


def _revoke_key(key_id: int):
    """Revoke one of the caller's keys; it is refused from the next request on."""
    accounts.revoke_key(current_principal().account_id, key_id)
    return jsonify({"id": key_id, "revoked": True})
