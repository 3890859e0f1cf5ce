"""Which Outreach user a freshly granted access token acts as.

The authorisation page needs it to tell a renewed connection (the same user authorising again)
from one that would switch every synced record to somebody else's Outreach account.

Outreach documents no "who am I" endpoint. The API root `GET /api/v2` "returns info about the
current OAuth application/token" (outreach-api.md §2, [C] Airbyte's connection check) in a shape
no public source shows ([I]); the emulator's default names the user as `data.attributes.userId`,
and its switch `api_root_shape=opaque` names none. The user's email then comes from
`GET /users/{id}` (§3.3, scope users.read). Anything missing, refused or unreadable means the
user is unknown (None), never an error: the caller treats an unknown user as "not proven the
same", which asks a person instead of deciding.
"""
from __future__ import annotations

from typing import Any

from .errors import PluginError

_ACCEPT = "application/vnd.api+json"


def connected_user(http, api_url: str, access_token: str) -> dict | None:
    """{"id", "email", "name"} of the token's user (email/name may be None), or None."""
    root = _get(http, api_url.rstrip("/"), access_token)
    user_id = _dig(root, "data", "attributes", "userId")
    if isinstance(user_id, bool) or not isinstance(user_id, (int, str)) or str(user_id).strip() in ("", "None"):
        return None
    user_id = str(user_id).strip()
    if not user_id.isdigit():
        return None
    record = _get(http, f"{api_url.rstrip('/')}/users/{user_id}", access_token)
    attributes = _dig(record, "data", "attributes") or {}
    if not isinstance(attributes, dict):
        attributes = {}
    return {"id": user_id, "email": _text(attributes.get("email")), "name": _text(attributes.get("name"))}


def describe_user(user: dict | None) -> str:
    if not user or not user.get("id"):
        return "an Outreach user this page cannot identify"
    who = user.get("email") or user.get("name")
    return f"{who} (Outreach user {user['id']})" if who else f"Outreach user {user['id']}"


def same_user(a: dict | None, b: dict | None) -> bool:
    """Proven the same only when both are known by id."""
    return bool(a and b and a.get("id") and b.get("id")) and str(a["id"]) == str(b["id"])


def _get(http, url: str, token: str) -> Any:
    try:
        response = http.request("GET", url, idempotent=True, allow_redirects=False, max_retries=1,
                                headers={"Authorization": f"Bearer {token}", "Accept": _ACCEPT})
    except PluginError:
        return None
    if response.status_code != 200:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def _dig(value: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _text(value: Any) -> str | None:
    return str(value)[:255] if isinstance(value, str) and value else None
