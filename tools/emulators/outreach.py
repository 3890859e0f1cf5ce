"""Outreach.io REST API v2 + OAuth emulator, built from `reference/outreach-api.md` (cited as §n).

Routes (the real API's shape):
  GET  /oauth/authorize?client_id&redirect_uri&response_type=code&scope&state   -> 302 back with code
  POST /oauth/token   grant_type=authorization_code|refresh_token (form or JSON)     §1.1, §1.2
  GET  /api/v2                                          token info (shape unknown, §2 "API root")
  GET|POST /api/v2/{prospects|accounts|users}           list (filters §4) / create (§2.3)
  GET|PATCH|DELETE /api/v2/{plural}/{id}                fetch / update (§2.4) / delete
  GET  /api/v2/{sequences|sequenceStates|sequenceSteps}[/{id}]   the receive side's resources (§12),
                                                        with the same list semantics as prospects
Users are readable and can be created or patched (OAS has POST/PATCH /users); DELETE /users is 405.
Sequences, sequence states and steps are read-only to API clients: a write the OAS has needs its
scope (`sequences.write`, `sequenceStates.delete`, ...: 403 unauthorizedOauthScope, §1.3) and is then
refused as a governance profile refuses it (403 unauthorizedRequest, §1.3 [S]); the OAS has no PATCH
on /sequenceStates/{id} (405). Read scopes: `sequences.read`, `sequenceStates.read` (published with
the S2S scope list, §1.3 / AE-SCOPES) and `sequenceSteps.read` (by the scope grammar [I]); `.all` too.
People's doings in Outreach (a rep's edit, an opt-out, a sequence state change) come from the
control surface in outreach_activity.py, stamped as Outreach stamps them.

Behaviour switches (`OutreachEmulator(**switches)`, `--set name=value`, POST /_emulator/config).
Every one models something the reference marks uncertain; defaults lean strict, and where issue #2
names a default the issue wins.

  switch                          default       reference    meaning
  oauth_clients                   "any"         §1.1, #2     "any": approve any client id, which is
                                                             then registered as first seen: its first
                                                             redirect_uri (at /authorize) and first
                                                             secret (at /token) are its own, so a
                                                             different secret later -> 401
                                                             invalid_client, a different redirect_uri ->
                                                             400 invalid_request at /authorize or
                                                             invalid_grant at /token (RFC 6749 §4.1.2.1,
                                                             §5.2); "registered": only register_client()
                                                             ones (else invalid_client); "deny": the
                                                             user refuses (redirect error=access_denied)
  authorize_as_user               None          §1.1         user who approves at /oauth/authorize:
                                                             id, email or username; None = the lowest
                                                             id that is not locked
  authorization_code_ttl          600           §1.1 [I]     seconds an authorization code lives
  access_token_ttl                7200          §1.1         `expires_in` of access tokens
  refresh_token_single_use        True          §1.2, R2.4,  a used refresh token is dead at once
                                                §10.2, #2    (issue #2's default; R2.4 suggests False)
  refresh_token_ttl               1209600       §1.2, R2.4   refresh token lifetime from creation (14 d)
  max_active_refresh_tokens       100           §1.2, R2.4   live refresh tokens per user+client; the
                                                             oldest die when more are minted
  token_mint_min_interval         60            §1.2, R2.2   seconds between mints per user+client;
                                                             sooner -> 429 text/plain "Retry later\\n"
                                                             (0 disables)
  token_scope_separator           "+"           §1.1         joins `scope` in the token response (the
                                                             docs' sample shows "Scope1+Scope2"; " " is
                                                             the OAuth-standard alternative)
  unauthorized_body               "jsonapi"     §1.4, R2.1   401 body: "jsonapi" errors[], "gateway"
                                                             {error, description}, "empty"
  strict_content_type             True          §2, §10.4    True: 415 unless application/vnd.api+json;
                                                             False: application/json accepted too
  rate_limit_per_hour             10000         §6           requests per Outreach user per clock hour
  rate_limit_remaining_two_values False         §6           X-RateLimit-Remaining "hourly, daily" form
                                                             (the second value is invented: 2x the
                                                             hourly limit over the UTC day)
  retry_after_format              "epoch"       R2.2, §10.5  429 Retry-After: "epoch" (= X-RateLimit-
                                                             Reset) or "delta" seconds
  maintenance_retry_after_format  "iso"         §6, R2.2     503 Retry-After: "iso" timestamp, "epoch"
                                                             or "delta"
  email_filter_case_insensitive   True          R2.3, §10.7  filter[emails] ignores case (False: exact)
  email_filter_matches            "any"         R2.3, §10.7  filter[emails] matches "any" of a prospect's
                                                             emails, or only the "primary" (first) one
                                                             (R2.3's suggested default is "any")
  reject_duplicate_emails         True          §5.2, R2.6   422 "Contacts email hash has already been
                                                             taken." (False models Purposeful Duplicates)
  excluded_domains                []            §5.2         email domains that get 422 "Contacts
                                                             contact is using an excluded email address."
  string_max_length               255           §3.1, §3.2,  limit of the 255-char strings (every prospect
                                                §12          and account attribute whose OAS maxLength is
                                                             255: names, title, address, facebookUrl,
                                                             locality...); JF's 50 is the strict
                                                             alternative. Other OAS limits (twitterUrl
                                                             1000, custom1 32000...) are fixed
  strict_account_custom_id        False         R2.6         True: duplicate account customId -> 422
  page_size_over_max              "error"       §4.3, §10.9  page[size]/page[limit] > 1000: "error"
                                                             (400) or "clamp" to 1000
  count_default                   False         §4.4         meta.count without count=true (new apps:
                                                             False)
  patch_unchanged_email_error     False         §5.2, §10.6  True: a PATCH whose `emails` equal the
                                                             prospect's own -> 422
                                                             validationDuplicateValueError
  granular_opt_out                True          §12          granular opt-out enabled: optedOut,
                                                             emailOptedOut, callOptedOut are three
                                                             flags; False: any of them is "opted out
                                                             in general" and sets all three
  granular_opt_in_stamp           "stamp"       §12 [I]      an opt-in (emailOptedOut / callOptedOut
                                                             false) stamps emailsOptedAt / callsOptedAt
                                                             with its time ("clear": sets it null);
                                                             either way the status says "opted_in"
  self_opt_out_updater            "unchanged"   §12 [I]      the updater after a prospect opts itself
                                                             out (control surface, by=None): the last
                                                             writer stays ("none": null). Strict: a
                                                             client's own last PATCH can be the updater
                                                             of a person's opt-out
  opt_out_finishes_sequences      True          §12 [I]      an opt-out of email (or of everything)
                                                             finishes the prospect's unfinished
                                                             sequence states
  sequence_state_bumps_prospect   False         §12 [I]      a sequence state's change also moves its
                                                             prospect's updatedAt (False: only the
                                                             state's own)
  unsorted_window_ms              1000          §9 [C]       "results sometimes unsorted within a
                                                             query": in a page sorted by a date-time
                                                             first, neighbours at most this many ms
                                                             apart come swapped with probability 1/2
                                                             (seeded; the page's records and the
                                                             cursor stay right); 0: exact order
  upper_bound_ignored_rate        0.5           §9 [C]       "the upper bound is sometimes ignored":
                                                             the share of queries with an updatedAt
                                                             upper bound ([lte], [lt], a..b) that
                                                             lose it (seeded by query number); 0 never
  trap_seed                       0             §9           seed of the two traps' dice: a replay of
                                                             the same requests meets the same traps
  api_root_shape                  "application" §2 [C]/[I]   GET /api/v2 (shape unknown): "application"
                                                             names the token's user as
                                                             data.attributes.userId; "opaque" answers
                                                             200 naming no user (a client must then
                                                             treat the user as unknown)
The updatedAt filter's bounds are always inclusive (§4.1 [C]: a..b, [gte], [lte]).

Guesses (the reference gives no answer; each is [I] and pinned by a test):
  * PATCH body id/type differing from the URL/collection -> 409 `conflict` (JSON:API); also POST.
  * Client-generated id on POST -> 403 `clientGeneratedIdNotSupported` (JSON:API).
  * Bad JSON -> 400 `badRequest`; wrong envelope -> 422 validationError pointer /data (§5.2).
  * Query errors -> 400 with ids `filterParameter.unknownAttribute`, `filterParameter.invalidValue`,
    `sortParameter.unknownAttribute`, `pageParameter.invalidValue`,
    `includeParameter.unknownRelationship`; `fieldsParameter.unknownResourceField` is from §2.5.
  * Bracket operators without newFilterSyntax=true -> 400 (§4.1 says they require it).
  * A wrongly typed attribute -> 422 validationError pointed at the attribute; a too-long one ->
    422 validationDataTooLongError without a pointer (JF's body, §5.2).
  * Read-only attributes (name, createdAt, externalSource, ...) on write -> 400
    permittedParams.unknownAttribute, like unknown ones.
  * Accounts need a non-blank name: 422 "Name can't be blank." (the documented example, §5.1).
  * 401 responses carry no X-RateLimit-* headers: without a valid token there is no user to count.
  * Unknown routes -> 404 `routeNotFound`; methods a route lacks -> 405 `methodNotAllowed`.
  * `issue_tokens()` skips the mint throttle (it stands in for an authorisation done earlier).
  * Emails in filters and uniqueness are compared lower-cased for the index; strings elsewhere
    compare exactly; nulls sort last ascending, first descending (PostgreSQL).
  * `updatedAt` moves (ms, never backwards) only with a real change, by the API or the control
    surface, and `updater` becomes whoever made it (§12); nothing else moves it (§9: e.g. adding a
    dataConnection does not, and the emulator models no such link).
  * Writing `emailsOptStatus` "opted_out"/"opted_in" is the same as writing `emailOptedOut`
    true/false (§12 calls both the opt-out); other values are stored as they are.
  * A deleted sequence's states stay and still name it; a deleted prospect's states stay too.
  * A rep's create through the control surface is stamped like an API create, `externalSource`
    "outreach-api" included (the web app's own value is unknown; one value for both keeps a
    client from telling a person's records from its own by it).
  * Relationships of sequence states (prospect, sequence, sequenceStep, account, user) filter by
    `[id]` only (the deprecation of non-id relationship filters, DOC-DEPR).

Python API (tests, demo, benchmark): add_user, register_client, issue_tokens, revoke, insert,
records, record, delete, seed, requests_by_user, and from outreach_activity.py rep, rep_edit,
rep_create, opt_out, opt_in, create_sequence, add_to_sequence, change_sequence_state,
delete_sequence, activity. Kinds: prospects, accounts, users, sequences, sequenceStates,
sequenceSteps (singular type names too). Control routes (JSON, under /_emulator/):
  POST /users {email, username, first_name?, last_name?, locked?}   -> {"id", "data"}
  POST /clients {client_id, client_secret, redirect_uris?}
  POST /tokens {user_id, scopes?, client_id?}                       -> the token response
  POST /revoke {user_id?}
  POST /seed {users, accounts, prospects, excluded_domains, sequences?, sequenceSteps?, sequenceStates?}
  POST /activity {by?, actions: [{do, ...}]}                        -> {"results": [...]} (outreach_activity.py)
  GET  /records/<kind>[/<id>]; POST /records/<kind> {attributes, relationships}; DELETE /records/<kind>/<id>
  GET  /rate -> {"by_user": {...}, "window_reset": epoch}
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import random
import re
import secrets
import threading
import urllib.parse
from pathlib import Path
from typing import Any, Callable, Iterable

from werkzeug.wrappers import Request, Response

from .core import UTC, Emulator, json_response, parse_iso
from .outreach_activity import OutreachActivity

JSONAPI = "application/vnd.api+json"
MAX_PAGE = 1000
MAX_OFFSET = 10000
DEFAULT_PAGE = 50
MAINTENANCE_SECONDS = 60

KINDS = {"prospects": "prospect", "accounts": "account", "users": "user",
         "sequences": "sequence", "sequenceStates": "sequenceState", "sequenceSteps": "sequenceStep"}
TYPE_TO_KIND = {v: k for k, v in KINDS.items()}
CONTROLLERS = {"prospects": "ApiV2::ProspectsController", "accounts": "ApiV2::AccountsController",
               "users": "ApiV2::UsersController", "sequences": "ApiV2::SequencesController",
               "sequenceStates": "ApiV2::SequenceStatesController",
               "sequenceSteps": "ApiV2::SequenceStepsController"}
# §12 / OAS: the states a sequence state can be in ("active", "paused", "failed", "bounced",
# "pending" and "disabled" are the non-finished ones of `activeSequenceStates`).
SEQUENCE_STATE_VALUES = ("active", "paused", "failed", "bounced", "pending", "disabled", "finished")

# --------------------------------------------------------------------------------------------------
# Attribute catalogue (§3.1–§3.3, §12). Kinds of value: str, emails, arr (array of strings), int, num,
# bool, date, datetime, any. `limit` is a max length; "cfg" means the string_max_length switch.
# --------------------------------------------------------------------------------------------------


class Attr:
    __slots__ = ("name", "kind", "limit", "ro", "filterable", "sortable")

    def __init__(self, name, kind="str", limit=None, ro=False, filterable=False, sortable=False):
        self.name, self.kind, self.limit = name, kind, limit
        self.ro, self.filterable, self.sortable = ro, filterable, sortable


def _catalogue(*groups: tuple[str, dict]) -> dict[str, Attr]:
    out: dict[str, Attr] = {}
    for names, opts in groups:
        for name in names.split():
            out[name] = Attr(name, **opts)
    return out


RO_FS = dict(ro=True, filterable=True, sortable=True)

# Prospect and account attributes as Outreach's OpenAPI document gives them (§12): the extract
# reference/outreach-attributes.json, of which the plugin ships a verbatim copy (its catalogue
# reads the same facts; tests/test_catalogue.py checks the copy against the reference).
OAS_ATTRIBUTES = Path(__file__).resolve().parents[2] / "plugin" / "data" / "outreach-attributes.json"
_OAS_KINDS = {"array": "arr", "integer": "int", "number": "num", "boolean": "bool", "object": "any"}
_OAS_STRING_KINDS = {"date": "date", "date-time": "datetime"}


def _oas_attr(name: str, spec: dict) -> Attr:
    kind = (_OAS_STRING_KINDS.get(spec.get("format"), "str") if spec["type"] == "string"
            else _OAS_KINDS[spec["type"]])
    limit = spec.get("maxLength")
    # The 255-character strings follow the string_max_length switch (§3.1: JF's mock says 50).
    return Attr(name, kind, "cfg" if limit == 255 else limit, ro=bool(spec.get("readonly")),
                filterable=bool(spec.get("filterable")), sortable=bool(spec.get("sortable")))


def _oas_catalogue(object_type: str, overrides: dict[str, dict]) -> dict[str, Attr]:
    specs = json.loads(OAS_ATTRIBUTES.read_text(encoding="utf-8"))["objects"][object_type]["attributes"]
    table = {name: _oas_attr(name, spec) for name, spec in specs.items()}
    for name, changes in overrides.items():
        base = table.get(name, Attr(name))
        table[name] = Attr(name, **{"kind": base.kind, "limit": base.limit, "ro": base.ro,
                                    "filterable": base.filterable, "sortable": base.sortable, **changes})
    return table


PROSPECT_ATTRS = _oas_catalogue("prospect", {
    "emails": dict(kind="emails"),             # §3.1: array<string(email)>, validated as emails
    "contactHistogram": dict(kind="any"),      # read-only; an array of arrays
    # §3.1: no readonly badge in the OAS, but PYSDK marks it read-only [C]; server-set [I].
    "externalSource": dict(ro=True),
    # Not in the OAS but in real payloads (§3.1): rendered, never writable.
    "smsOptStatus": dict(ro=True), "smsOptedAt": dict(ro=True), "smsOptedOut": dict(ro=True),
})

ACCOUNT_ATTRS = _oas_catalogue("account", {
    "externalSource": dict(ro=True),           # §3.2: PYSDK marks it read-only [C]
})

USER_ATTRS = _catalogue(
    ("email", dict(limit=255, filterable=True, sortable=True)),
    ("username firstName lastName", dict(limit=255, filterable=True, sortable=True)),
    ("name userGuid lastSignInAt passwordExpiresAt", dict(ro=True)),
    ("title", dict(limit=255)),
    ("locked", dict(kind="bool", filterable=True, sortable=True)),
    ("phoneNumber phoneCountryCode phoneType scimExternalId scimSource", dict()),
    ("custom1 custom2 custom3 custom4 custom5", dict(limit=225)),
    ("createdAt updatedAt currentSignInAt", dict(kind="datetime", **RO_FS)),
)

# The receive side's resources (§12; types, limits and badges as outreach-attributes.json lists
# them). The emulator serves them read-only to API clients: see `_read_only_write`.
SEQUENCE_ATTRS = _catalogue(
    ("name", dict(limit=255, filterable=True, sortable=True)),
    ("description", dict(limit=1024)),
    ("sequenceType scheduleIntervalType", dict(limit=255)),
    ("shareType", dict(limit=255, filterable=True, sortable=True)),
    ("salesMotion", dict(limit=255, filterable=True)),
    ("primaryReplyAction secondaryReplyAction", dict(limit=4)),
    ("enabled locked", dict(kind="bool", ro=True)),
    ("finishOnReply throttlePaused transactional", dict(kind="bool")),
    ("maxActivations primaryReplyPauseDuration secondaryReplyPauseDuration", dict(kind="int")),
    ("throttleCapacity throttleMaxAddsPerDay", dict(kind="int", filterable=True, sortable=True)),
    ("clickCount deliverCount openCount replyCount", dict(kind="int", **RO_FS)),
    ("bounceCount durationInDays failureCount negativeReplyCount neutralReplyCount numContactedProspects "
     "numRepliedProspects optOutCount positiveReplyCount scheduleCount sequenceStepCount",
     dict(kind="int", ro=True)),
    ("automationPercentage", dict(kind="num", ro=True)),
    ("tags", dict(kind="arr")),
    ("createdAt updatedAt enabledAt lastUsedAt lockedAt", dict(kind="datetime", **RO_FS)),
    ("throttlePausedAt", dict(kind="datetime", ro=True)),
)

SEQUENCE_STATE_ATTRS = _catalogue(   # every attribute is read-only (§12)
    ("state pauseReason", dict(limit=255, **RO_FS)),
    ("errorReason", dict(limit=255, ro=True)),
    ("createdAt updatedAt stateChangedAt repliedAt callCompletedAt", dict(kind="datetime", **RO_FS)),
    ("activeAt", dict(kind="datetime", ro=True)),
    ("clickCount deliverCount openCount replyCount", dict(kind="int", **RO_FS)),
    ("bounceCount failureCount negativeReplyCount neutralReplyCount optOutCount positiveReplyCount "
     "scheduleCount", dict(kind="int", ro=True)),
)

SEQUENCE_STEP_ATTRS = _catalogue(
    ("order", dict(kind="int", filterable=True, sortable=True)),
    ("stepType", dict(limit=255, filterable=True, sortable=True)),
    ("date", dict(kind="date", filterable=True, sortable=True)),
    ("interval taskAutoskipDelay", dict(kind="int")),
    ("taskNote", dict(limit=65535)),
    ("displayName", dict(ro=True)),
    ("bounceCount clickCount deliverCount failureCount negativeReplyCount neutralReplyCount openCount "
     "optOutCount positiveReplyCount replyCount scheduleCount", dict(kind="int", ro=True)),
    ("createdAt updatedAt", dict(kind="datetime", **RO_FS)),
)

ATTRS = {"prospects": PROSPECT_ATTRS, "accounts": ACCOUNT_ATTRS, "users": USER_ATTRS,
         "sequences": SEQUENCE_ATTRS, "sequenceStates": SEQUENCE_STATE_ATTRS, "sequenceSteps": SEQUENCE_STEP_ATTRS}
ID_ATTR = Attr("id", kind="int", filterable=True, sortable=True)

# To-one relationships and the kind they point at (§2.1, §2.3; §12 for the receive side's, which
# only the control surface sets).
TO_ONE = {"prospects": {"account": "accounts", "owner": "users"}, "accounts": {"owner": "users"},
          "users": {}, "sequences": {"owner": "users"}, "sequenceSteps": {"sequence": "sequences"},
          "sequenceStates": {"prospect": "prospects", "sequence": "sequences", "sequenceStep": "sequenceSteps",
                             "account": "accounts", "user": "users"}}
# Filters on a related record's attributes (§3.2: "filter prospects by account"; only by id on the
# receive side's resources, as DOC-DEPR left relationship filters).
RELATED_FILTERS = {"prospects": {"account": ("accounts", {"id", "customId", "name", "named", "updatedAt"}),
                                 "owner": ("users", {"id"})},
                   "accounts": {"owner": ("users", {"id"})},
                   "users": {}, "sequences": {"owner": ("users", {"id"})},
                   "sequenceSteps": {"sequence": ("sequences", {"id"})},
                   "sequenceStates": {name: (target, {"id"}) for name, target in (
                       ("prospect", "prospects"), ("sequence", "sequences"), ("sequenceStep", "sequenceSteps"),
                       ("account", "accounts"), ("user", "users"))}}
# Exact-value indexes kept for fast look-ups (emails lower-cased).
INDEXED = {"prospects": ("emails",), "accounts": ("name", "domain", "customId"), "users": ("email", "username"),
           "sequences": ("name",), "sequenceStates": (), "sequenceSteps": ()}

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
SCOPE_RE = re.compile(r"^[A-Za-z]+\.(read|write|delete|all)$")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
ACTION_OF = {"GET": "read", "POST": "write", "PATCH": "write", "DELETE": "delete"}
ALLOWED = {"prospects": {"GET", "POST", "PATCH", "DELETE"}, "accounts": {"GET", "POST", "PATCH", "DELETE"},
           "users": {"GET", "POST", "PATCH"}, "sequences": {"GET", "POST", "PATCH", "DELETE"},
           "sequenceStates": {"GET", "POST", "DELETE"}, "sequenceSteps": {"GET", "POST", "PATCH", "DELETE"}}
# Resources served read-only: the OAS has their writes (sequenceStates has no PATCH), but the plugin
# only reads them and people change them through the control surface (see `_read_only_write`).
READ_ONLY_KINDS = frozenset({"sequences", "sequenceStates", "sequenceSteps"})
INVALID_GRANT = ("The provided authorization grant is invalid, expired, revoked, does not match the "
                 "redirection URI used in the authorization request, or was issued to another client.")


def iso_ms(when: dt.datetime | None) -> str | None:
    """Outreach timestamps: UTC with milliseconds and a Z (§2.1)."""
    if when is None:
        return None
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def truncate_ms(when: dt.datetime) -> dt.datetime:
    return when.replace(microsecond=when.microsecond // 1000 * 1000)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class ApiError(Exception):
    """An answer in the JSON:API error shape (§5.1); raised anywhere in request handling."""

    def __init__(self, status: int, error_id: str, title: str, detail: str | None = None,
                 pointer: str | None = None, headers: dict | None = None, detail_key: str = "detail"):
        super().__init__(f"{status} {error_id}")
        self.status, self.headers = status, headers or {}
        error: dict[str, Any] = {"id": error_id, "title": title}
        if detail is not None:
            error[detail_key] = detail
        if pointer is not None:
            error["source"] = {"pointer": pointer}
        self.body = {"errors": [error]}


def validation(detail: str, pointer: str = "/data") -> ApiError:
    return ApiError(422, "validationError", "Validation Error", detail, pointer)


def bad_param(error_id: str, detail: str) -> ApiError:
    return ApiError(400, error_id, "Bad Request", detail)


class OAuthError(Exception):
    def __init__(self, status: int, error: str, description: str):
        super().__init__(error)
        self.status, self.error, self.description = status, error, description


class OutreachEmulator(OutreachActivity, Emulator):
    name = "outreach"
    default_config = {
        "oauth_clients": "any",
        "authorize_as_user": None,
        "authorization_code_ttl": 600,
        "access_token_ttl": 7200,
        "refresh_token_single_use": True,
        "refresh_token_ttl": 14 * 24 * 3600,
        "max_active_refresh_tokens": 100,
        "token_mint_min_interval": 60,
        "token_scope_separator": "+",
        "unauthorized_body": "jsonapi",
        "api_root_shape": "application",
        "strict_content_type": True,
        "rate_limit_per_hour": 10000,
        "rate_limit_remaining_two_values": False,
        "retry_after_format": "epoch",
        "maintenance_retry_after_format": "iso",
        "email_filter_case_insensitive": True,
        "email_filter_matches": "any",
        "reject_duplicate_emails": True,
        "excluded_domains": [],
        "string_max_length": 255,
        "strict_account_custom_id": False,
        "page_size_over_max": "error",
        "count_default": False,
        "patch_unchanged_email_error": False,
        "granular_opt_out": True,
        "granular_opt_in_stamp": "stamp",
        "self_opt_out_updater": "unchanged",
        "sequence_state_bumps_prospect": False,
        "opt_out_finishes_sequences": True,
        "unsorted_window_ms": 1000,
        "upper_bound_ignored_rate": 0.5,
        "trap_seed": 0,
    }

    # ============================================================================ state and set-up
    def reset_data(self) -> None:
        self._current = threading.local()
        self._jwt_secret = secrets.token_bytes(32)
        self.stores: dict[str, dict[int, dict]] = {kind: {} for kind in KINDS}
        self._next_id = {kind: 1 for kind in KINDS}
        self._index: dict[tuple[str, str], dict[Any, set[int]]] = {
            (kind, attr): {} for kind, attrs in INDEXED.items() for attr in attrs}
        self.clients: dict[str, dict] = {}
        self._codes: dict[str, dict] = {}
        self._access: dict[str, dict] = {}
        self._refresh: dict[str, dict] = {}
        self._refresh_lines: dict[tuple[int, str], list[str]] = {}
        self._last_mint: dict[tuple[int, str], dt.datetime] = {}
        self._rate: dict[tuple[int, int], int] = {}
        self._rate_daily: dict[tuple[int, int], int] = {}
        self._states_of_prospect: dict[int, set[int]] = {}   # prospect id -> its sequence states' ids
        self._bounded_queries = 0                             # queries with an upper bound (a trap's dice)
        self._default_rep: int | None = None                  # the control surface's "a rep" (created on use)

    def _handle(self, request: Request) -> Response:
        # Remembered so error_response (which core calls without the request) can answer an
        # injected fault on /oauth/* the way the token endpoint does, not in JSON:API shape.
        self._current.path = request.path
        return super()._handle(request)

    def add_user(self, email: str, username: str, first_name: str = "", last_name: str = "",
                 locked: bool = False, **extra: Any) -> int:
        with self.lock:
            if self._index_lookup("users", "email", email):
                raise ValueError(f"a user with email {email!r} exists")
            attributes = {"email": email, "username": username, "firstName": first_name or None,
                          "lastName": last_name or None, "locked": bool(locked), **extra}
            return self.insert("users", attributes)["id"]

    def register_client(self, client_id: str, client_secret: str,
                        redirect_uris: Iterable[str] | None = None) -> None:
        with self.lock:
            self.clients[client_id] = {"secret": client_secret, "redirect_uris": list(redirect_uris or [])}

    def issue_tokens(self, user_id: int, scopes: str = "prospects.all accounts.all users.read",
                     client_id: str = "test-client") -> dict:
        with self.lock:
            if int(user_id) not in self.stores["users"]:
                raise ValueError(f"no user {user_id}")
            return self._mint(int(user_id), client_id, _parse_scopes(scopes), throttle=False)

    def revoke(self, user_id: int | None = None) -> None:
        with self.lock:
            for table in (self._access, self._refresh, self._codes):
                for grant in table.values():
                    if user_id is None or grant["user_id"] == int(user_id):
                        grant["dead"] = True

    def insert(self, kind: str, attributes: dict, relationships: dict | None = None) -> dict:
        """Store a record as-is (no validation) except that ids must be free and related records
        must exist. `createdAt`/`updatedAt` in `attributes` (ISO) set the timestamps."""
        with self.lock:
            kind = _kind(kind)
            attributes = dict(attributes or {})
            record_id = attributes.pop("id", None)
            record_id = self._claim_id(kind, record_id)
            now = truncate_ms(self.now())
            created = attributes.pop("createdAt", None)
            updated = attributes.pop("updatedAt", None)
            created = truncate_ms(parse_iso(created)) if created else now
            updated = truncate_ms(parse_iso(updated)) if updated else created
            rels = {name: None for name in TO_ONE[kind]}
            for name, value in (relationships or {}).items():
                rels[name] = self._insert_relationship(kind, name, value)
            if kind == "accounts":
                attributes.setdefault("named", True)
            if kind in ("prospects", "accounts"):
                attributes.setdefault("externalSource", "outreach-api")
            record = {"id": record_id, "attrs": attributes, "rels": rels, "createdAt": created,
                      "updatedAt": updated, "creator": None, "updater": None}
            self.stores[kind][record_id] = record
            self._index_add(kind, record)
            return self.render(kind, record)

    def records(self, kind: str) -> list[dict]:
        with self.lock:
            kind = _kind(kind)
            return [self.render(kind, r) for _, r in sorted(self.stores[kind].items())]

    def record(self, kind: str, record_id: int) -> dict | None:
        with self.lock:
            kind = _kind(kind)
            found = self.stores[kind].get(int(record_id))
            return self.render(kind, found) if found else None

    def delete(self, kind: str, record_id: int) -> bool:
        with self.lock:
            kind = _kind(kind)
            found = self.stores[kind].pop(int(record_id), None)
            if found:
                self._index_remove(kind, found)
            return found is not None

    def seed(self, data: dict) -> dict:
        """Load `{"users": [...], "accounts": [...], "prospects": [...], "excluded_domains": [...]}`,
        and optionally "sequences", "sequenceSteps", "sequenceStates" (stored as given: the
        control surface's create_sequence / add_to_sequence build them the way Outreach would).
        Items are flat attribute dicts (optional `id`, and `owner`/`account` as related ids) or
        `{"id", "attributes", "relationships"}`. Users accept first_name/last_name too."""
        with self.lock:
            if "excluded_domains" in data:
                self.config["excluded_domains"] = [d.lower() for d in data["excluded_domains"]]
            created: dict[str, list[int]] = {}
            for kind in ("users", "accounts", "prospects", "sequences", "sequenceSteps", "sequenceStates"):
                if kind in data or kind in ("users", "accounts", "prospects"):
                    created[kind] = [self._seed_item(kind, item)["id"] for item in data.get(kind) or []]
            return created

    @property
    def requests_by_user(self) -> dict[int, int]:
        with self.lock:
            window = self._window_start()
            return {user: n for (user, start), n in self._rate.items() if start == window}

    def _seed_item(self, kind: str, item: dict) -> dict:
        if "attributes" in item:
            attrs = dict(item["attributes"])
            if "id" in item:
                attrs["id"] = item["id"]
            return self.insert(kind, attrs, item.get("relationships"))
        attrs = dict(item)
        rels = {name: attrs.pop(name) for name in TO_ONE[kind] if name in attrs}
        if kind == "users":
            for snake, camel in (("first_name", "firstName"), ("last_name", "lastName")):
                if snake in attrs:
                    attrs[camel] = attrs.pop(snake)
            attrs.setdefault("locked", False)
            if self._index_lookup("users", "email", attrs.get("email")):
                raise ValueError(f"a user with email {attrs.get('email')!r} exists")  # §3.3: unique
        return self.insert(kind, attrs, rels)

    def _claim_id(self, kind: str, wanted: Any) -> int:
        if wanted is None:
            record_id = self._next_id[kind]
        else:
            record_id = int(wanted)
            if record_id in self.stores[kind]:
                raise ValueError(f"{kind} id {record_id} is taken")
        self._next_id[kind] = max(self._next_id[kind], record_id + 1)
        return record_id

    def _insert_relationship(self, kind: str, name: str, value: Any) -> int | None:
        if name not in TO_ONE[kind]:
            raise ValueError(f"{kind} has no relationship {name!r}")
        if isinstance(value, dict):
            value = value.get("data", value)
            value = value.get("id") if isinstance(value, dict) else value
        if value is None:
            return None
        target = TO_ONE[kind][name]
        if int(value) not in self.stores[target]:
            raise ValueError(f"no {KINDS[target]} {value}")
        return int(value)

    # ============================================================================ indexes
    def _index_keys(self, kind: str, attr: str, record: dict) -> list:
        value = record["attrs"].get(attr)
        if value is None:
            return []
        if attr == "emails":
            return [e.lower() for e in value if isinstance(e, str)] if isinstance(value, list) else []
        return [value] if isinstance(value, (str, int, float)) else []

    def _index_add(self, kind: str, record: dict) -> None:
        for attr in INDEXED[kind]:
            table = self._index[(kind, attr)]
            for key in self._index_keys(kind, attr, record):
                table.setdefault(key, set()).add(record["id"])
        if kind == "sequenceStates" and record["rels"].get("prospect") is not None:
            self._states_of_prospect.setdefault(record["rels"]["prospect"], set()).add(record["id"])

    def _index_remove(self, kind: str, record: dict) -> None:
        if kind == "sequenceStates":
            self._states_of_prospect.get(record["rels"].get("prospect"), set()).discard(record["id"])
        for attr in INDEXED[kind]:
            table = self._index[(kind, attr)]
            for key in self._index_keys(kind, attr, record):
                ids = table.get(key)
                if ids:
                    ids.discard(record["id"])
                    if not ids:
                        del table[key]

    def _index_lookup(self, kind: str, attr: str, value: Any) -> set[int]:
        key = value.lower() if attr == "emails" and isinstance(value, str) else value
        try:
            return self._index[(kind, attr)].get(key, set())
        except TypeError:  # an unhashable filter value cannot match anything
            return set()

    # ============================================================================ rendering
    def render(self, kind: str, record: dict, fields: set[str] | None = None) -> dict:
        attrs = self._render_attributes(kind, record)
        rels = self._render_relationships(kind, record)
        if fields is not None:
            attrs = {k: v for k, v in attrs.items() if k in fields}
            rels = {k: v for k, v in rels.items() if k in fields}
        return {"type": KINDS[kind], "id": record["id"], "attributes": attrs, "relationships": rels,
                "links": {"self": f"{self.base_url}/api/v2/{kind}/{record['id']}"}}

    def _render_attributes(self, kind: str, record: dict) -> dict:
        stored = record["attrs"]
        out: dict[str, Any] = {}
        for name, attr in ATTRS[kind].items():
            value = stored.get(name)
            if value is None and attr.kind in ("arr", "emails"):
                value = []
            out[name] = value
        out["createdAt"] = iso_ms(record["createdAt"])
        out["updatedAt"] = iso_ms(record["updatedAt"])
        if kind in ("prospects", "users"):  # a prospect's or user's `name` is the read-only full name
            first, last = stored.get("firstName"), stored.get("lastName")
            out["name"] = " ".join(p for p in (first, last) if isinstance(p, str) and p) or None
        if kind == "prospects":
            out["contactHistogram"] = stored.get("contactHistogram") or []
            for counter in ("openCount", "clickCount", "replyCount"):
                out[counter] = stored.get(counter) or 0
            account_id = record["rels"].get("account")
            if not stored.get("company") and account_id in self.stores["accounts"]:
                # OAS: "If associated with an account, this is the name of the account."
                out["company"] = self.stores["accounts"][account_id]["attrs"].get("name")
        return out

    def _render_relationships(self, kind: str, record: dict) -> dict:
        rid, base = record["id"], f"{self.base_url}/api/v2"
        out: dict[str, Any] = {}
        for name, target in TO_ONE[kind].items():
            out[name] = {"data": _ident(target, record["rels"].get(name))}
        # §12: sequence states have a creator but no updater (OAS sequenceStateRelationships)
        for name in ("creator",) if kind == "sequenceStates" else ("creator", "updater"):
            out[name] = {"data": _ident("users", record.get(name))}
        if kind == "prospects":
            for name in ("mailings", "tasks", "sequenceStates", "calls"):
                out[name] = {"links": {"related": f"{base}/{name}?filter[prospect][id]={rid}"}}
            active = self._active_states(rid)
            out["activeSequenceStates"] = {
                "data": [_ident("sequenceStates", sid) for sid in active],
                "links": {"related": f"{base}/sequenceStates?filter[prospect][id]={rid}"},
                "meta": {"count": len(active)}}
            out["stage"] = {"data": None}
            # A relationship with neither data nor links (§2.1, singer-io/tap-outreach#39).
            out["favorites"] = {"meta": {"count": 0}}
        elif kind == "accounts":
            out["prospects"] = {"links": {"related": f"{base}/prospects?filter[account][id]={rid}"}}
            out["tasks"] = {"links": {"related": f"{base}/tasks?filter[account][id]={rid}"}}
        elif kind == "users":
            out["mailboxes"] = {"links": {"related": f"{base}/mailboxes?filter[user][id]={rid}"}}
            out["profile"] = {"data": None}
        elif kind == "sequences":
            for name in ("sequenceStates", "sequenceSteps", "mailings", "tasks", "calls"):
                out[name] = {"links": {"related": f"{base}/{name}?filter[sequence][id]={rid}"}}
        elif kind == "sequenceSteps":
            for name in ("mailings", "tasks", "calls"):
                out[name] = {"links": {"related": f"{base}/{name}?filter[sequenceStep][id]={rid}"}}
        elif kind == "sequenceStates":
            out["mailbox"] = {"data": None}
            out["opportunity"] = {"data": None}
            for name in ("mailings", "tasks", "calls"):
                out[name] = {"links": {"related": f"{base}/{name}?filter[sequenceState][id]={rid}"}}
        return out

    def _active_states(self, prospect_id: int) -> list[int]:
        """§12: `activeSequenceStates` are the prospect's states that are not "finished"."""
        store = self.stores["sequenceStates"]
        return sorted(sid for sid in self._states_of_prospect.get(prospect_id, ())
                      if sid in store and store[sid]["attrs"].get("state") != "finished")

    # ============================================================================ HTTP entry
    def dispatch(self, request: Request) -> Response:
        path = request.path.rstrip("/") or "/"
        if path == "/oauth/authorize":
            return self._authorize(request)
        if path == "/oauth/token":
            return self._token_endpoint(request)
        if path == "/api/v2" or path.startswith("/api/v2/"):
            return self._api(request, path)
        return self._api_response(ApiError(404, "routeNotFound", "Route Not Found",
                                           f"No route matches {request.method} {request.path}."))

    def error_response(self, status: int, message: str) -> Response:
        """Injected faults, in the shape the real endpoint would answer with."""
        path = getattr(self._current, "path", "") or ""
        if path.startswith("/oauth/"):
            if status == 429:
                return Response("Retry later\n", status=429, content_type="text/plain")
            if status in (502, 503, 504):
                return Response("no healthy upstream", status=status, content_type="text/plain")
            return json_response({"error": "server_error", "error_description": message}, status)
        return self._api_response(self._status_error(status, message))

    def _status_error(self, status: int, message: str) -> ApiError:
        if status == 401:
            return self._unauthorized("The access token is invalid")
        if status == 429:
            limit = int(self.config["rate_limit_per_hour"])
            return self._rate_limited(limit, self._window_start() + 3600)
        if status == 503:
            return self._maintenance()
        known = {400: ("badRequest", "Bad Request"), 403: ("unauthorizedRequest", "Unauthorized Request"),
                 404: ("resourceNotFound", "Resource Not Found"), 409: ("conflict", "Conflict"),
                 415: ("unsupportedMediaType", "Unsupported Media Type"),
                 422: ("validationError", "Validation Error"),
                 500: ("internalServerError", "Internal Server Error"), 502: ("badGateway", "Bad Gateway"),
                 504: ("gatewayTimeout", "Gateway Timeout")}
        error_id, title = known.get(status, ("error", "Error"))
        if status == 403:
            message = "You are not authorized to perform that request."
        return ApiError(status, error_id, title, message)

    def _maintenance(self) -> ApiError:
        until = (self.now() + dt.timedelta(seconds=MAINTENANCE_SECONDS)).replace(microsecond=0)
        form = self.config["maintenance_retry_after_format"]
        retry = {"epoch": str(int(until.timestamp())), "delta": str(MAINTENANCE_SECONDS)}.get(
            form, until.strftime("%Y-%m-%dT%H:%M:%SZ"))
        return ApiError(503, "scheduledServerMaintenance", "Scheduled Server Maintenance",
                        "Scheduled server maintenance is under way; please try again at "
                        f"{until.strftime('%Y-%m-%dT%H:%M:%S')}.", headers={"Retry-After": retry})

    @staticmethod
    def _api_response(error: ApiError) -> Response:
        if error.body is None:  # unauthorized_body "empty"
            response = Response(b"", status=error.status)
        else:
            gateway = "error" in error.body  # the gateway's bare {error, description} is plain JSON
            response = Response(json.dumps(error.body), status=error.status,
                                content_type="application/json" if gateway else JSONAPI)
        for name, value in error.headers.items():
            response.headers[name] = str(value)
        return response

    # ============================================================================ OAuth (§1)
    def _authorize(self, request: Request) -> Response:
        if request.method != "GET":
            return json_response({"error": "invalid_request", "error_description": "Use GET."}, 405)
        args = request.args
        client_id, redirect_uri = args.get("client_id"), args.get("redirect_uri")
        if not client_id or not redirect_uri:
            return json_response({"error": "invalid_request",
                                  "error_description": "client_id and redirect_uri are required."}, 400)
        if not _is_http_url(redirect_uri):
            return json_response({"error": "invalid_request",
                                  "error_description": "The redirect uri included is not valid."}, 400)
        mode = self.config["oauth_clients"]
        client = self.clients.get(client_id)
        if mode == "registered" and client is None:
            return json_response({"error": "invalid_client",
                                  "error_description": "Client authentication failed."}, 401)
        if client is None and mode == "any":
            # First sight of this client id: it is registered with this redirect URI (§1.1: an
            # app's redirect URI is fixed; RFC 6749 §3.1.2), its secret with the first token request.
            self.clients[client_id] = client = {"secret": None, "redirect_uris": [redirect_uri]}
        if client is not None and client["redirect_uris"] and redirect_uri not in client["redirect_uris"]:
            # RFC 6749 §4.1.2.1: a mismatching redirect URI is not redirected to
            return json_response({"error": "invalid_request",
                                  "error_description": "The redirect uri included is not valid."}, 400)
        state = args.get("state")
        if args.get("response_type") != "code":
            return _redirect(redirect_uri, error="unsupported_response_type", state=state)
        try:
            scopes = _parse_scopes(args.get("scope", ""))
        except ValueError:
            return _redirect(redirect_uri, error="invalid_scope", state=state)
        if not scopes:
            return _redirect(redirect_uri, error="invalid_scope", state=state)
        user_id = self._approving_user()
        if mode == "deny" or user_id is None:
            return _redirect(redirect_uri, error="access_denied", state=state,
                             error_description="The resource owner or authorization server denied the request.")
        code = secrets.token_urlsafe(32)
        self._codes[code] = {"user_id": user_id, "client_id": client_id, "redirect_uri": redirect_uri,
                             "scopes": scopes, "dead": False,
                             "expires_at": self.now() + dt.timedelta(seconds=self.config["authorization_code_ttl"])}
        return _redirect(redirect_uri, code=code, state=state)

    def _approving_user(self) -> int | None:
        users = self.stores["users"]
        wanted = self.config["authorize_as_user"]
        if wanted is None:
            candidates = [uid for uid in sorted(users) if not users[uid]["attrs"].get("locked")]
            return candidates[0] if candidates else None
        if isinstance(wanted, int) or (isinstance(wanted, str) and wanted.isdigit()):
            found = users.get(int(wanted))
            return found["id"] if found else None
        for key in ("email", "username"):
            ids = self._index_lookup("users", key, wanted)
            if ids:
                return min(ids)
        return None

    def _token_endpoint(self, request: Request) -> Response:
        try:
            if request.method != "POST":
                raise OAuthError(405, "invalid_request", "Use POST.")
            params = _token_params(request)
            client_id = self._authenticate_client(params)
            grant_type = params.get("grant_type")
            if grant_type == "authorization_code":
                user_id, scopes, consume = self._code_grant(params, client_id)
            elif grant_type == "refresh_token":
                user_id, scopes, consume = self._refresh_grant(params, client_id)
            elif not grant_type:
                raise OAuthError(400, "invalid_request", "The request is missing a required parameter: grant_type.")
            else:
                raise OAuthError(400, "unsupported_grant_type",
                                 "The authorization grant type is not supported by the authorization server.")
            if self._mint_throttled(user_id, client_id):
                # The throttle answers before the grant is used, so the client may retry with it.
                return Response("Retry later\n", status=429, content_type="text/plain")
            consume()
            tokens = self._mint(user_id, client_id, scopes, throttle=True)
        except OAuthError as exc:
            return json_response({"error": exc.error, "error_description": exc.description}, exc.status,
                                 headers={"Cache-Control": "no-store"})
        return json_response(tokens, 200, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    def _authenticate_client(self, params: dict) -> str:
        client_id, secret = params.get("client_id"), params.get("client_secret")
        if not isinstance(client_id, str) or not client_id or not isinstance(secret, str) or not secret:
            raise OAuthError(401, "invalid_client", "Client authentication failed due to unknown client, "
                                                    "no client authentication included, or unsupported "
                                                    "authentication method.")
        client = self.clients.get(client_id)
        if self.config["oauth_clients"] != "registered" and (client is None or client["secret"] is None):
            # "any": the first secret seen for a client id is its secret from then on (switch
            # oauth_clients), so a client sending a different one later is refused as in Outreach
            client = self.clients.setdefault(client_id, {"secret": None, "redirect_uris": []})
            client["secret"] = secret
        if client is None or not hmac.compare_digest(client["secret"], secret):
            raise OAuthError(401, "invalid_client", "Client authentication failed due to unknown client, "
                                                    "no client authentication included, or unsupported "
                                                    "authentication method.")
        redirect_uri = params.get("redirect_uri")
        if redirect_uri and client["redirect_uris"] and redirect_uri not in client["redirect_uris"]:
            # A redirect URI other than the client's (e.g. on a refresh): RFC 6749 §5.2 invalid_grant
            raise OAuthError(400, "invalid_grant", INVALID_GRANT)
        return client_id

    def _code_grant(self, params: dict, client_id: str):
        code = params.get("code")
        if not isinstance(code, str) or not code:
            raise OAuthError(400, "invalid_request", "The request is missing a required parameter: code.")
        grant = self._codes.get(code)
        if (grant is None or grant["dead"] or self.now() >= grant["expires_at"]
                or grant["client_id"] != client_id or params.get("redirect_uri") != grant["redirect_uri"]):
            raise OAuthError(400, "invalid_grant", INVALID_GRANT)

        def consume():
            grant["dead"] = True  # codes are single-use
        return grant["user_id"], grant["scopes"], consume

    def _refresh_grant(self, params: dict, client_id: str):
        token = params.get("refresh_token")
        if not isinstance(token, str) or not token:
            raise OAuthError(400, "invalid_request", "The request is missing a required parameter: refresh_token.")
        grant = self._refresh.get(token)
        ttl = dt.timedelta(seconds=self.config["refresh_token_ttl"])
        if (grant is None or grant["dead"] or self.now() >= grant["created_at"] + ttl
                or grant["client_id"] != client_id):
            raise OAuthError(400, "invalid_grant", INVALID_GRANT)
        if self.stores["users"].get(grant["user_id"]) is None:
            raise OAuthError(400, "invalid_grant", INVALID_GRANT)

        def consume():
            if self.config["refresh_token_single_use"]:
                grant["dead"] = True
        return grant["user_id"], grant["scopes"], consume

    def _mint_throttled(self, user_id: int, client_id: str) -> bool:
        interval = float(self.config["token_mint_min_interval"] or 0)
        last = self._last_mint.get((user_id, client_id))
        return bool(interval) and last is not None and (self.now() - last).total_seconds() < interval

    def _mint(self, user_id: int, client_id: str, scopes: tuple[str, ...], throttle: bool) -> dict:
        now = self.now()
        ttl = int(self.config["access_token_ttl"])
        created = int(now.timestamp())
        access = self._jwt({"iss": "outreach-emulator", "sub": user_id, "aud": client_id, "iat": created,
                            "exp": created + ttl, "jti": secrets.token_hex(8), "scopes": list(scopes)})
        self._access[access] = {"user_id": user_id, "client_id": client_id, "scopes": frozenset(scopes),
                                "expires_at": now + dt.timedelta(seconds=ttl), "dead": False}
        refresh = secrets.token_urlsafe(32)
        self._refresh[refresh] = {"user_id": user_id, "client_id": client_id, "scopes": scopes,
                                  "created_at": now, "dead": False}
        line = self._refresh_lines.setdefault((user_id, client_id), [])
        line.append(refresh)
        limit = max(1, int(self.config["max_active_refresh_tokens"]))
        while len(line) > limit:
            # "after 100 more tokens are generated" the oldest refresh token dies (R2.4).
            self._refresh[line.pop(0)]["dead"] = True
        if throttle:
            self._last_mint[(user_id, client_id)] = now
        return {"access_token": access, "token_type": "bearer", "expires_in": ttl, "refresh_token": refresh,
                "scope": self.config["token_scope_separator"].join(scopes), "created_at": created}

    def _jwt(self, payload: dict) -> str:
        header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        body = b64url(json.dumps(payload, separators=(",", ":")).encode())
        signature = hmac.new(self._jwt_secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
        return f"{header}.{body}.{b64url(signature)}"

    def _bearer(self, request: Request) -> dict:
        """The live access grant of the request, or a 401 in the configured shape (§1.4)."""
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise self._unauthorized("The access token is missing")
        grant = self._access.get(token)
        if grant is None or grant["dead"]:
            raise self._unauthorized("The access token is invalid")
        if self.now() >= grant["expires_at"]:
            raise self._unauthorized("The access token expired")
        return grant

    def _unauthorized(self, detail: str) -> ApiError:
        error = ApiError(401, "unauthorized", "Unauthorized", detail)
        shape = self.config["unauthorized_body"]
        if shape == "gateway":
            error.body = {"error": "Invalid JWT token.", "description": "The JWT token could not be decoded."}
        elif shape == "empty":
            error.body = None
        return error

    # ============================================================================ rate limit (§6)
    def _window_start(self) -> int:
        return int(self.now().timestamp()) // 3600 * 3600

    def _count_request(self, user_id: int) -> dict:
        """Counts one request for the user; returns the X-RateLimit-* headers or raises 429."""
        limit = int(self.config["rate_limit_per_hour"])
        window = self._window_start()
        reset = window + 3600
        used = self._rate.get((user_id, window), 0)
        if used >= limit:
            raise self._rate_limited(limit, reset)
        self._rate[(user_id, window)] = used + 1
        day = window // 86400
        daily = self._rate_daily[(user_id, day)] = self._rate_daily.get((user_id, day), 0) + 1
        remaining = str(limit - used - 1)
        if self.config["rate_limit_remaining_two_values"]:
            remaining = f"{remaining}, {max(0, 2 * limit - daily)}"
        return {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": remaining,
                "X-RateLimit-Reset": str(reset)}

    def _rate_limited(self, limit: int, reset: int) -> ApiError:
        when = dt.datetime.fromtimestamp(reset, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        delta = max(0, reset - int(self.now().timestamp()))
        retry = str(delta) if self.config["retry_after_format"] == "delta" else str(reset)
        return ApiError(429, "rateLimitExceeded", "Rate Limit Exceeded",
                        f"You have exceeded your permitted rate limit of {limit:,}; please try again at {when}.",
                        headers={"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": "0",
                                 "X-RateLimit-Reset": str(reset), "Retry-After": retry})

    # ============================================================================ /api/v2 (§2–§6)
    def _api(self, request: Request, path: str) -> Response:
        rate_headers: dict = {}
        try:
            grant = self._bearer(request)
            rate_headers = self._count_request(grant["user_id"])
            response = self._route(request, path, grant)
        except ApiError as error:
            response = self._api_response(error)
        for name, value in rate_headers.items():
            response.headers[name] = value
        return response

    def _route(self, request: Request, path: str, grant: dict) -> Response:
        parts = path.split("/")[3:]  # "", "api", "v2", kind, id
        if not parts:
            if self.config["api_root_shape"] == "opaque":
                return self._ok({"data": {"type": "application", "attributes": {}}})
            return self._ok({"data": {"type": "application", "attributes": {
                "clientId": grant["client_id"], "scopes": sorted(grant["scopes"]), "userId": grant["user_id"]}}})
        kind = parts[0]
        if kind not in KINDS or len(parts) > 2:
            raise ApiError(404, "routeNotFound", "Route Not Found",
                           f"No route matches {request.method} {request.path}.")
        method = request.method
        allowed = ALLOWED[kind] - ({"POST"} if len(parts) == 2 else {"PATCH", "DELETE"})
        if method not in allowed:
            raise ApiError(405, "methodNotAllowed", "Method Not Allowed",
                           f"{method} is not supported on {request.path}.",
                           headers={"Allow": ", ".join(sorted(allowed))})
        self._check_scope(grant, kind, ACTION_OF[method])
        if method != "GET" and kind in READ_ONLY_KINDS:
            raise self._read_only_write()
        if len(parts) == 1:
            if method == "GET":
                return self._list(request, kind)
            return self._create(request, kind, grant)
        record_id = parts[1]
        if method == "GET":
            record = self._find(kind, record_id)
            fields = _sparse_fields(request, kind)
            body: dict[str, Any] = {"data": self.render(kind, record, fields.get(KINDS[kind]))}
            included = self._included(request, kind, [record], fields)
            if included is not None:
                body["included"] = included
            return self._ok(body)
        if method == "PATCH":
            return self._update(request, kind, record_id, grant)
        record = self._find(kind, record_id)
        self.delete(kind, record["id"])
        return Response(b"", status=204, content_type=JSONAPI)

    @staticmethod
    def _ok(body: dict, status: int = 200) -> Response:
        return Response(json.dumps(body, separators=(",", ":")), status=status, content_type=JSONAPI)

    @staticmethod
    def _read_only_write() -> ApiError:
        """A write the OAS has on a receive-side resource, by a token that holds its scope: the
        answer of a governance profile that forbids it (§1.3 [S] `unauthorizedRequest`). The
        emulator serves these resources read-only; people change them through the control surface."""
        return ApiError(403, "unauthorizedRequest", "Unauthorized Request",
                        "You are not authorized to perform that request.")

    @staticmethod
    def _check_scope(grant: dict, kind: str, action: str) -> None:
        scopes = grant["scopes"]
        if f"{kind}.{action}" not in scopes and f"{kind}.all" not in scopes:
            raise ApiError(403, "unauthorizedOauthScope", "Unauthorized OAuth Scope",
                           f"Your authorization does not include the required scope '{kind}.{action}'.")

    def _find(self, kind: str, record_id: Any) -> dict:
        try:
            found = self.stores[kind].get(int(record_id))
        except (TypeError, ValueError):
            found = None
        if found is None:
            raise ApiError(404, "resourceNotFound", "Resource Not Found",
                           f"Could not find '{KINDS[kind]}' with ID '{record_id}'.")
        return found

    # ---------------------------------------------------------------------------- writes
    def _read_document(self, request: Request) -> dict:
        """The request's `data` object, after the media-type check (§2) and envelope check (§5.2)."""
        media = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        accepted = {JSONAPI} if self.config["strict_content_type"] else {JSONAPI, "application/json"}
        if media not in accepted:
            raise ApiError(415, "unsupportedMediaType", "Unsupported Media Type",
                           "Expected Content-Type header to be 'application/vnd.api+json'.",
                           detail_key="details")
        try:
            document = json.loads(request.get_data() or b"")
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "badRequest", "Bad Request", "The request body is not valid JSON.") from None
        if not isinstance(document, dict) or not isinstance(document.get("data"), dict):
            raise validation("The request must have a top-level 'data' object.")
        return document["data"]

    def _check_envelope(self, data: dict, kind: str) -> None:
        if "type" not in data:
            raise validation("Type can't be blank.")
        if data["type"] != KINDS[kind]:
            raise ApiError(409, "conflict", "Conflict",
                           f"The type '{data['type']}' does not match the collection '{kind}'.")
        for key in ("attributes", "relationships"):
            if key in data and not isinstance(data[key], dict):
                raise validation(f"'{key}' must be an object.", f"/data/{key}")

    def _create(self, request: Request, kind: str, grant: dict) -> Response:
        data = self._read_document(request)
        self._check_envelope(data, kind)
        if "id" in data:
            raise ApiError(403, "clientGeneratedIdNotSupported", "Client Generated ID Not Supported",
                           "A new resource cannot be given an id by the client.", "/data/id")
        attrs = self._clean_attributes(kind, data.get("attributes") or {}, creating=True)
        rels = self._clean_relationships(kind, data.get("relationships") or {})
        record = self._add_record(kind, attrs, rels, grant["user_id"])
        return self._ok({"data": self.render(kind, record)}, 201)

    def _add_record(self, kind: str, attrs: dict, rels: dict, actor: int | None, *, check: bool = True) -> dict:
        """A new record from checked attributes, as created by `actor` (the token's user, or the
        rep of a control-surface action): creator and updater are that user (§12)."""
        merged = {**attrs}
        if check:
            self._check_record_rules(kind, merged, attrs, None)
        if kind == "accounts":
            merged.setdefault("named", True)
        if kind in ("prospects", "accounts"):
            merged["externalSource"] = "outreach-api"
        if kind == "prospects":
            self._apply_opt_outs(merged, attrs, {})
        now = truncate_ms(self.now())
        record = {"id": self._claim_id(kind, None), "attrs": merged,
                  "rels": {name: rels.get(name) for name in TO_ONE[kind]},
                  "createdAt": now, "updatedAt": now, "creator": actor, "updater": actor}
        self.stores[kind][record["id"]] = record
        self._index_add(kind, record)
        return record

    def _update(self, request: Request, kind: str, record_id: str, grant: dict) -> Response:
        data = self._read_document(request)
        record = self._find(kind, record_id)
        self._check_envelope(data, kind)
        if "id" not in data or data["id"] is None:
            raise validation("Id can't be blank.")
        if str(data["id"]) != str(record["id"]):
            raise ApiError(409, "conflict", "Conflict",
                           f"The id '{data['id']}' does not match the URL id '{record['id']}'.")
        attrs = self._clean_attributes(kind, data.get("attributes") or {}, creating=False)
        rels = self._clean_relationships(kind, data.get("relationships") or {})
        self._change(kind, record, attrs, rels, grant["user_id"])
        return self._ok({"data": self.render(kind, record)})

    def _change(self, kind: str, record: dict, attrs: dict, rels: dict, actor: int | None,
                *, set_updater: bool = True, check: bool = True) -> bool:
        """Apply checked attributes and relationships. Only a real change moves `updatedAt` (ms,
        never backwards) and makes `actor` the `updater` (§12): re-sending current values is no
        change. False when nothing changed."""
        merged = {**record["attrs"], **attrs}
        if check:
            self._check_record_rules(kind, merged, attrs, record)
        if kind == "prospects":
            self._apply_opt_outs(merged, attrs, record["attrs"])
        new_rels = {**record["rels"], **rels}
        if merged == record["attrs"] and new_rels == record["rels"]:
            return False
        self._index_remove(kind, record)
        record["attrs"], record["rels"] = merged, new_rels
        self._bump(record)
        if set_updater:
            record["updater"] = actor
        self._index_add(kind, record)
        return True

    def _bump(self, record: dict) -> None:
        record["updatedAt"] = max(truncate_ms(self.now()), record["updatedAt"])

    def _apply_opt_outs(self, merged: dict, sent: dict, before: dict) -> None:
        """The opt-out attributes of §12's table, after a write of `sent` onto `before`:
        * `optedOut` true stamps `optedOutAt` with the time of the request; false reverts and
          clears it (OAS wording);
        * `emailOptedOut` / `callOptedOut` set `emailsOptStatus` / `callsOptStatus` ("opted_out" or
          "opted_in") and stamp `emailsOptedAt` / `callsOptedAt`; writing a status does the same
          the other way round. An opt-in stamps its time too (switch granular_opt_in_stamp), so
          a stamp alone never means "opted out";
        * without granular opt-out (switch granular_opt_out false) the three booleans are one:
          "or opted out in general if granular opt-out is not enabled".
        Re-sending the current value is no change: no stamp moves (nor updatedAt)."""
        sent = dict(sent)
        now = iso_ms(truncate_ms(self.now()))
        flags = ("optedOut", "emailOptedOut", "callOptedOut")
        if not self.config["granular_opt_out"]:
            given = [sent[f] for f in flags if sent.get(f) is not None]
            if given:
                for name in flags:
                    sent[name] = merged[name] = given[-1]
        if sent.get("optedOut") is not None and bool(sent["optedOut"]) != bool(before.get("optedOut")):
            merged["optedOutAt"] = now if sent["optedOut"] else None
        for flag, status, stamp in (("emailOptedOut", "emailsOptStatus", "emailsOptedAt"),
                                    ("callOptedOut", "callsOptStatus", "callsOptedAt")):
            if sent.get(flag) is not None:
                wanted = "opted_out" if sent[flag] else "opted_in"
            elif status in sent:
                wanted = sent[status]
            else:
                continue
            merged[flag] = wanted == "opted_out" if wanted in ("opted_in", "opted_out") else before.get(flag)
            merged[status] = wanted
            if wanted == before.get(status):
                merged[stamp] = before.get(stamp)
            elif wanted == "opted_out" or (wanted == "opted_in" and self.config["granular_opt_in_stamp"] == "stamp"):
                merged[stamp] = now
            else:
                merged[stamp] = None

    def _clean_attributes(self, kind: str, attrs: dict, creating: bool) -> dict:
        catalogue = ATTRS[kind]
        for name in attrs:
            attr = catalogue.get(name)
            if attr is None or attr.ro or (kind == "users" and name == "email" and not creating):
                raise ApiError(400, "permittedParams.unknownAttribute", "Unknown Attribute",
                               f"The attribute '{name}' is not permitted for a {KINDS[kind]}.",
                               f"/data/attributes/{name}")
        cleaned = {}
        for name, value in attrs.items():
            cleaned[name] = self._check_value(catalogue[name], value)
        return cleaned

    def _check_value(self, attr: Attr, value: Any) -> Any:
        pointer = f"/data/attributes/{attr.name}"
        label = _humanize(attr.name)
        if value is None:
            return None
        kind = attr.kind
        if kind == "str":
            if not isinstance(value, str):
                raise validation(f"{label} must be a string.", pointer)
            limit = self.config["string_max_length"] if attr.limit == "cfg" else attr.limit
            if limit is not None and len(value) > int(limit):
                raise ApiError(422, "validationDataTooLongError", "Validation Data Too Long Error",
                               "Data provided is too long.")
            return value
        if kind in ("arr", "emails"):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise validation(f"{label} must be a list of strings.", pointer)
            if kind == "emails":
                for email in value:
                    if not EMAIL_RE.match(email) or len(email) > 255:
                        raise validation(f"Email '{email}' is not a valid email address.", pointer)
            return list(value)
        if kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise validation(f"{label} must be an integer.", pointer)
            return value
        if kind == "num":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise validation(f"{label} must be a number.", pointer)
            return value
        if kind == "bool":
            if not isinstance(value, bool):
                raise validation(f"{label} must be true or false.", pointer)
            return value
        if kind == "date":
            if not isinstance(value, str) or not DATE_RE.match(value) or not _valid_date(value):
                raise validation(f"{label} must be a date (YYYY-MM-DD).", pointer)
            return value
        if kind == "datetime":
            if not isinstance(value, str):
                raise validation(f"{label} must be an ISO 8601 date-time.", pointer)
            try:
                return iso_ms(truncate_ms(parse_iso(value)))
            except ValueError:
                raise validation(f"{label} must be an ISO 8601 date-time.", pointer) from None
        return value

    def _clean_relationships(self, kind: str, rels: dict) -> dict[str, int | None]:
        out: dict[str, int | None] = {}
        for name, value in rels.items():
            pointer = f"/data/relationships/{name}"
            if name not in TO_ONE[kind]:
                raise ApiError(400, "permittedParams.unknownAttribute", "Unknown Attribute",
                               f"The relationship '{name}' is not permitted for a {KINDS[kind]}.", pointer)
            if not isinstance(value, dict) or "data" not in value:
                raise validation(f"{_humanize(name)} must have a 'data' member.", pointer)
            ident = value["data"]
            if ident is None:
                out[name] = None
                continue
            target = TO_ONE[kind][name]
            if not isinstance(ident, dict) or ident.get("type") != KINDS[target]:
                raise validation(f"{_humanize(name)} must be a '{KINDS[target]}' resource identifier.", pointer)
            related = self._related_id(target, ident.get("id"))
            if related is None:
                raise validation(f"Could not find '{KINDS[target]}' with ID '{ident.get('id')}'.", pointer)
            out[name] = related
        return out

    def _related_id(self, target: str, raw: Any) -> int | None:
        if isinstance(raw, bool):
            return None
        if isinstance(raw, str) and raw.isdigit():
            raw = int(raw)
        return raw if isinstance(raw, int) and raw in self.stores[target] else None

    def _check_record_rules(self, kind: str, merged: dict, sent: dict, record: dict | None) -> None:
        """Rules across attributes or records (§5.2, R2.6), after every attribute passed its own check."""
        own_id = record["id"] if record else None
        if kind == "accounts" and (record is None or "name" in sent):
            if not isinstance(merged.get("name"), str) or not merged["name"].strip():
                raise validation("Name can't be blank.", "/data/attributes/name")
        if kind == "accounts" and self.config["strict_account_custom_id"] and sent.get("customId"):
            if self._index_lookup("accounts", "customId", sent["customId"]) - {own_id}:
                raise validation("Custom ID has already been taken.", "/data/attributes/customId")
        if kind == "users":
            if record is None and not merged.get("email"):
                raise validation("Email can't be blank.", "/data/attributes/email")
            if record is None and self._index_lookup("users", "email", merged["email"]):
                raise validation("Email has already been taken.", "/data/attributes/email")
        if kind == "prospects" and "emails" in sent and sent["emails"] is not None:
            self._check_emails(sent["emails"], record)

    def _check_emails(self, emails: list[str], record: dict | None) -> None:
        excluded = {d.lower() for d in self.config["excluded_domains"] or []}
        for email in emails:
            if email.rsplit("@", 1)[-1].lower() in excluded:
                raise validation("Contacts contact is using an excluded email address.")
        if record is not None and self.config["patch_unchanged_email_error"]:
            current = {e.lower() for e in record["attrs"].get("emails") or []}
            if current and current == {e.lower() for e in emails}:
                raise ApiError(422, "validationDuplicateValueError", "Validation Duplicate Value Error",
                               "A Contact with this email_hash already exists.")
        if self.config["reject_duplicate_emails"]:
            own = {record["id"]} if record else set()
            for email in emails:
                if self._index_lookup("prospects", "emails", email) - own:
                    raise validation("Contacts email hash has already been taken.")

    # ---------------------------------------------------------------------------- reads (§4)
    def _list(self, request: Request, kind: str) -> Response:
        args = request.args
        fields = _sparse_fields(request, kind)
        filters = self._upper_bound_trap(self._parse_filters(args, kind))
        sort = self._parse_sort(args.get("sort"), kind)
        rows = self._filtered(kind, filters)
        if kind == "accounts" and not any(f[0] == ("named",) for f in filters):
            # OAS: "Only named accounts will show up on the collection index."
            rows = [r for r in rows if r["attrs"].get("named", True) is not False]
        rows = _sort_rows(rows, sort, lambda r, name: self._sort_value(kind, r, name))
        if "page[offset]" in args or "page[limit]" in args:
            page, links = self._offset_page(request, rows)
        else:
            page, links = self._cursor_page(request, kind, rows, sort)
        page = self._unsorted_trap(kind, page, sort)
        body: dict[str, Any] = {"data": [self.render(kind, r, fields.get(KINDS[kind])) for r in page],
                                "links": links, "meta": {}}
        count = args.get("count")
        if count not in (None, "true", "false"):
            raise bad_param("countParameter.invalidValue", "count must be true or false.")
        if count == "true" or (count is None and self.config["count_default"]):
            body["meta"] = {"count": len(rows), "count_truncated": False}
        included = self._included(request, kind, page, fields)
        if included is not None:
            body["included"] = included
        return self._ok(body)

    def _included(self, request: Request, kind: str, rows: list[dict], fields: dict) -> list | None:
        names = request.args.get("include")
        if names is None:
            return None
        wanted = [n for n in names.split(",") if n]
        for name in wanted:
            if name not in TO_ONE[kind]:
                raise bad_param("includeParameter.unknownRelationship",
                                f"'{name}' is not an includable relationship of {KINDS[kind]}.")
        seen: dict[tuple[str, int], dict] = {}
        for row in rows:
            for name in wanted:
                target, rid = TO_ONE[kind][name], row["rels"].get(name)
                if rid in self.stores[target] and (target, rid) not in seen:
                    seen[(target, rid)] = self.render(target, self.stores[target][rid], fields.get(KINDS[target]))
        return list(seen.values())

    # filters: list of (path, op, values) where path is ("attr",) or ("account", "id"), op one of
    # "in", "range", "null", "notnull", "gte", "lte"
    def _parse_filters(self, args, kind: str) -> list[tuple]:
        new_syntax = args.get("newFilterSyntax") == "true"
        grouped: dict[tuple, dict[str, list[str]]] = {}
        for key in args.keys():
            if not key.startswith("filter["):
                continue
            segments = _bracket_segments(key[len("filter"):])
            if segments is None:
                raise bad_param("filterParameter.invalidValue", f"Malformed filter parameter '{key}'.")
            op = "eq"
            if segments and segments[-1] in ("", "gte", "lte", "gt", "lt"):
                if not new_syntax:
                    raise bad_param("filterParameter.invalidValue",
                                    f"'{key}' needs newFilterSyntax=true (bracket operators).")
                op = segments.pop() or "any"
            path = tuple(segments)
            self._filter_attr(kind, path)
            values = args.getlist(key)
            grouped.setdefault(path, {}).setdefault(op, []).extend(values if op == "any" else values[-1:])
        filters = []
        for path, ops in grouped.items():
            attr = self._filter_attr(kind, path)
            for op, values in ops.items():
                filters.append(self._parse_filter_values(path, attr, op, values, new_syntax))
        return filters

    def _filter_attr(self, kind: str, path: tuple) -> Attr:
        name = ".".join(path)
        if len(path) == 1:
            if path[0] == "id":
                return ID_ATTR
            if path[0] == "q" and kind in ("prospects", "accounts"):
                return Attr("q")
            attr = ATTRS[kind].get(path[0])
            if attr is not None and attr.filterable:
                return attr
        elif len(path) == 2 and path[0] in RELATED_FILTERS[kind]:
            target, allowed = RELATED_FILTERS[kind][path[0]]
            if path[1] in allowed:
                return ID_ATTR if path[1] == "id" else ATTRS[target][path[1]]
        raise bad_param("filterParameter.unknownAttribute",
                        f"'{name}' is not a filterable attribute of {KINDS[kind]}.")

    def _parse_filter_values(self, path, attr: Attr, op: str, values: list[str], new_syntax: bool) -> tuple:
        if op in ("gte", "lte", "gt", "lt"):
            return (path, op, [_coerce(attr, values[-1])])
        if op == "any":
            return (path, "in", [_coerce(attr, v) for v in values])
        raw = values[-1]
        if raw in ("__null__", "__notnull__"):
            return (path, raw.strip("_"), [])
        if new_syntax or attr.name == "q":
            return (path, "in", [_coerce(attr, raw)])
        if ".." in raw:
            low, _, high = raw.partition("..")
            low_v = None if low in ("", "neginf") else _coerce(attr, low)
            high_v = None if high in ("", "inf") else _coerce(attr, high)
            return (path, "range", [low_v, high_v])
        return (path, "in", [_coerce(attr, v) for v in raw.split(",")])

    def _filtered(self, kind: str, filters: list[tuple]) -> list[dict]:
        store = self.stores[kind]
        candidates: set[int] | None = None
        for path, op, values in filters:
            hit = self._indexed_candidates(kind, path, op, values)
            if hit is not None:
                candidates = hit if candidates is None else candidates & hit
        rows = store.values() if candidates is None else [store[i] for i in candidates if i in store]
        predicates = [self._predicate(kind, f) for f in filters]
        return [r for r in rows if all(p(r) for p in predicates)]

    def _indexed_candidates(self, kind: str, path: tuple, op: str, values: list) -> set[int] | None:
        if op == "in" and kind == "sequenceStates" and path == ("prospect", "id"):
            return {sid for v in values if isinstance(v, int) for sid in self._states_of_prospect.get(v, ())}
        if op != "in" or len(path) != 1:
            return None
        if path[0] == "id":
            return {v for v in values if isinstance(v, int)}
        if path[0] in INDEXED[kind]:
            found: set[int] = set()
            for value in values:
                found |= self._index_lookup(kind, path[0], value)
            return found
        return None

    def _predicate(self, kind: str, flt: tuple) -> Callable[[dict], bool]:
        path, op, values = flt
        if path == ("q",):
            prefix = str(values[0]).lower()
            keys = ("firstName", "lastName", "emails") if kind == "prospects" else ("name", "domain")
            return lambda r: any(str(v).lower().startswith(prefix)
                                 for k in keys for v in _as_list(r["attrs"].get(k)))
        getter = self._value_getter(kind, path)
        exact_case = path == ("emails",) and not self.config["email_filter_case_insensitive"]
        fold = path == ("emails",) and not exact_case

        def matches_one(value) -> bool:
            if fold and isinstance(value, str):
                value = value.lower()
            if op == "in":
                try:
                    return value in wanted
                except TypeError:  # an unhashable value stored through insert()
                    return False
            if value is None:
                return False
            try:
                if op == "range":
                    return (values[0] is None or value >= values[0]) and (values[1] is None or value <= values[1])
                return {"gte": value >= values[0], "lte": value <= values[0],
                        "gt": value > values[0], "lt": value < values[0]}[op]
            except TypeError:
                return False

        wanted = {v.lower() if fold and isinstance(v, str) else v for v in values} if op == "in" else set()
        if op in ("null", "notnull"):
            want_null = op == "null"
            return lambda r: (not _as_list(getter(r))) == want_null
        if path == ("emails",) and self.config["email_filter_matches"] == "primary":
            # R2.3, §10.7: only the prospect's first (primary) email is searched
            return lambda r: any(matches_one(v) for v in _as_list(getter(r))[:1])
        return lambda r: any(matches_one(v) for v in _as_list(getter(r)))

    # ---------------------------------------------------------------------------- §4/§9 traps
    def _upper_bound_trap(self, filters: list[tuple]) -> list[tuple]:
        """§9 (EST): "The API sometimes ignores the server-side upper-bound filter". A query with an
        upper bound on `updatedAt` (`[lte]`, `[lt]`, `a..b`) loses it with probability
        upper_bound_ignored_rate; the dice are the trap_seed and the number of such queries so
        far, so a run replays identically."""
        bounded = [f for f in filters if f[0] == ("updatedAt",)
                   and (f[1] in ("lte", "lt") or (f[1] == "range" and f[2][1] is not None))]
        if not bounded:
            return filters
        self._bounded_queries += 1
        dice = random.Random(f"{self.config['trap_seed']}:bound:{self._bounded_queries}").random()
        if dice >= float(self.config["upper_bound_ignored_rate"] or 0):
            return filters
        kept = []
        for flt in filters:
            if flt in bounded and flt[1] == "range":
                kept.append((flt[0], "range", [flt[2][0], None]))
            elif flt not in bounded:
                kept.append(flt)
        return kept

    def _unsorted_trap(self, kind: str, page: list[dict], sort: list) -> list[dict]:
        """§9 (EST): "The Outreach API sometimes returns results unsorted within a query". When a
        page is sorted by a date-time first, neighbours whose values are within
        unsorted_window_ms of each other are swapped, each pair with probability 1/2. The page
        holds the same records (the keyset cursor is right) in an order that is wrong; the dice
        are the trap_seed and the page's ids, so the same page comes back the same way."""
        window = float(self.config["unsorted_window_ms"] or 0)
        name = sort[0][0]
        attr = ID_ATTR if name == "id" else ATTRS[kind].get(name)
        if window <= 0 or len(page) < 2 or attr is None or attr.kind != "datetime":
            return page
        rng = random.Random(f"{self.config['trap_seed']}:order:{kind}:{','.join(str(r['id']) for r in page)}")
        values = [self._sort_value(kind, r, name) for r in page]
        out = list(page)
        i = 0
        while i < len(out) - 1:
            a, b = values[i], values[i + 1]
            close = a is not None and b is not None and abs((b - a).total_seconds()) * 1000 <= window
            if close and rng.random() < 0.5:
                out[i], out[i + 1] = out[i + 1], out[i]
                i += 2
            else:
                i += 1
        return out

    def _value_getter(self, kind: str, path: tuple) -> Callable[[dict], Any]:
        if len(path) == 2:
            relation, attr = path
            target = RELATED_FILTERS[kind][relation][0]

            def related(r):
                rid = r["rels"].get(relation)
                if attr == "id" or rid is None:
                    return rid
                other = self.stores[target].get(rid)
                return self._raw_value(target, other, attr) if other else None
            return related
        return lambda r: self._raw_value(kind, r, path[0])

    def _raw_value(self, kind: str, record: dict, name: str) -> Any:
        if name == "id":
            return record["id"]
        if name in ("createdAt", "updatedAt"):
            return record[name]
        value = record["attrs"].get(name)
        if kind == "accounts" and name == "named" and value is None:
            return True
        attr = ATTRS[kind].get(name)
        if attr is not None and attr.kind == "datetime" and isinstance(value, str):
            try:
                return parse_iso(value)
            except ValueError:  # insert() stores unvalidated values; such a value never matches
                return None
        return value

    def _parse_sort(self, text: str | None, kind: str) -> list[tuple[str, bool]]:
        spec: list[tuple[str, bool]] = []
        for part in (text or "").split(","):
            if not part:
                continue
            desc = part.startswith("-")
            name = part.lstrip("+-")
            attr = ID_ATTR if name == "id" else ATTRS[kind].get(name)
            if attr is None or not attr.sortable:
                raise bad_param("sortParameter.unknownAttribute",
                                f"'{name}' is not a sortable attribute of {KINDS[kind]}.")
            spec.append((name, desc))
            if name == "id":
                return spec  # ids are unique: later keys could never order anything
        spec.append(("id", False))  # keyset tie-breaker, as in the real cursor (§4.3)
        return spec

    def _sort_value(self, kind: str, record: dict, name: str) -> Any:
        return self._raw_value(kind, record, name)

    # ---------------------------------------------------------------------------- paging (§4.3)
    def _page_size(self, raw: str | None, default: int) -> int:
        if raw is None:
            return default
        try:
            size = int(raw)
        except ValueError:
            raise bad_param("pageParameter.invalidValue", "page size must be an integer.") from None
        if size < 1:
            raise bad_param("pageParameter.invalidValue", "page size must be at least 1.")
        if size > MAX_PAGE:
            if self.config["page_size_over_max"] == "clamp":
                return MAX_PAGE
            raise bad_param("pageParameter.invalidValue", f"page size must be at most {MAX_PAGE}.")
        return size

    def _cursor_page(self, request: Request, kind: str, rows: list[dict], sort: list) -> tuple[list, dict]:
        args = request.args
        size = self._page_size(args.get("page[size]"), DEFAULT_PAGE)
        keys = [self._row_key(kind, r, sort) for r in rows]
        start, end = 0, min(size, len(rows))
        if "page[after]" in args:
            start = _bisect(keys, self._decode_cursor(args["page[after]"], kind, sort), sort, after=True)
            end = min(start + size, len(rows))
        elif "page[before]" in args:
            end = _bisect(keys, self._decode_cursor(args["page[before]"], kind, sort), sort, after=False)
            start = max(0, end - size)
        page = rows[start:end]
        links = {"first": self._link(request, drop=("page[after]", "page[before]"))}
        if page and start > 0:
            links["prev"] = self._link(request, drop=("page[after]", "page[before]"),
                                       add=("page[before]", self._encode_cursor(kind, sort, keys[start])))
        if page and end < len(rows):
            links["next"] = self._link(request, drop=("page[after]", "page[before]"),
                                       add=("page[after]", self._encode_cursor(kind, sort, keys[end - 1])))
        return page, links

    def _offset_page(self, request: Request, rows: list[dict]) -> tuple[list, dict]:
        args = request.args
        limit = self._page_size(args.get("page[limit]"), DEFAULT_PAGE)
        try:
            offset = int(args.get("page[offset]", "0"))
        except ValueError:
            raise bad_param("pageParameter.invalidValue", "page[offset] must be an integer.") from None
        if offset < 0 or offset > MAX_OFFSET:
            raise bad_param("pageParameter.invalidValue", f"page[offset] must be between 0 and {MAX_OFFSET}.")
        drop = ("page[offset]",)

        def at(position: int) -> str:
            return self._link(request, drop=drop, add=("page[offset]", str(position)))
        links = {"first": at(0)}
        if offset > 0:
            links["prev"] = at(max(0, offset - limit))
        if offset + limit < len(rows) and offset + limit <= MAX_OFFSET:
            links["next"] = at(offset + limit)
        last = max(0, (len(rows) - 1) // limit * limit)
        links["last"] = at(min(last, MAX_OFFSET))
        return rows[offset:offset + limit], links

    def _row_key(self, kind: str, record: dict, sort: list) -> list:
        return [self._sort_value(kind, record, name) for name, _ in sort]

    def _encode_cursor(self, kind: str, sort: list, key: list) -> str:
        values = [iso_ms(v) if isinstance(v, dt.datetime) else v for v in key[:-1]]
        payload = {"cn": CONTROLLERS[kind], "sp": _sort_text(sort), "sv": values, "id": key[-1], "v": 1}
        return base64.b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode()

    def _decode_cursor(self, text: str, kind: str, sort: list) -> list:
        try:
            payload = json.loads(base64.b64decode(text.encode(), validate=True))
            if (not isinstance(payload, dict) or payload.get("cn") != CONTROLLERS[kind]
                    or payload.get("sp") != _sort_text(sort) or not isinstance(payload.get("id"), int)
                    or not isinstance(payload.get("sv"), list) or len(payload["sv"]) != len(sort) - 1):
                raise ValueError("cursor does not fit this request")
            key = []
            for (name, _), value in zip(sort[:-1], payload["sv"]):
                attr = ID_ATTR if name == "id" else ATTRS[kind][name]
                key.append(parse_iso(value) if attr.kind == "datetime" and value is not None else value)
            return key + [payload["id"]]
        except (ValueError, TypeError, UnicodeDecodeError):
            raise bad_param("pageParameter.invalidValue", "The page cursor is invalid.") from None

    def _link(self, request: Request, drop: tuple = (), add: tuple | None = None) -> str:
        pairs = [(k, v) for k, v in urllib.parse.parse_qsl(request.query_string.decode("latin-1"),
                                                            keep_blank_values=True) if k not in drop]
        if add:
            pairs.append(add)
        query = urllib.parse.urlencode(pairs, safe="[]")
        return f"{self.base_url}{request.path}" + (f"?{query}" if query else "")

    # ============================================================================ control routes
    def control(self, request: Request, path: str) -> Response | None:
        body = request.get_json(silent=True) if request.data else None
        body = body if isinstance(body, dict) else {}
        method = request.method
        if path == "users" and method == "POST":
            user_id = self.add_user(body["email"], body["username"], body.get("first_name", ""),
                                    body.get("last_name", ""), bool(body.get("locked", False)))
            return json_response({"id": user_id, "data": self.record("users", user_id)}, 201)
        if path == "clients" and method == "POST":
            self.register_client(body["client_id"], body["client_secret"], body.get("redirect_uris"))
            return json_response({"ok": True}, 201)
        if path == "tokens" and method == "POST":
            kwargs = {k: body[k] for k in ("scopes", "client_id") if k in body}
            return json_response(self.issue_tokens(int(body["user_id"]), **kwargs), 201)
        if path == "revoke" and method == "POST":
            self.revoke(body.get("user_id"))
            return json_response({"ok": True})
        if path == "seed" and method == "POST":
            return json_response(self.seed(body), 201)
        if path == "activity" and method == "POST":
            return json_response({"results": self._control_activity(body)})
        if path == "rate" and method == "GET":
            return json_response({"by_user": {str(k): v for k, v in self.requests_by_user.items()},
                                  "window_reset": self._window_start() + 3600})
        parts = path.split("/")
        if parts[0] == "records" and len(parts) in (2, 3) and parts[1] in KINDS:
            return self._control_records(method, parts, body)
        return None

    def _control_records(self, method: str, parts: list[str], body: dict) -> Response | None:
        kind = parts[1]
        if len(parts) == 2 and method == "GET":
            return json_response({"data": self.records(kind)})
        if len(parts) == 2 and method == "POST":
            return json_response({"data": self.insert(kind, body.get("attributes") or {},
                                                      body.get("relationships"))}, 201)
        if len(parts) == 3 and method == "GET":
            found = self.record(kind, int(parts[2]))
            return json_response({"data": found}, 200 if found else 404)
        if len(parts) == 3 and method == "DELETE":
            return json_response({"deleted": self.delete(kind, int(parts[2]))})
        return None


# ================================================================================ helpers
def _kind(kind: str) -> str:
    kind = TYPE_TO_KIND.get(kind, kind)
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; use one of {sorted(KINDS)}")
    return kind


def _ident(kind: str, record_id: int | None) -> dict | None:
    return None if record_id is None else {"type": KINDS[kind], "id": record_id}


def _parse_scopes(text: Any) -> tuple[str, ...]:
    """Space- or plus-separated scopes (§1.1); each `<plural>.<read|write|delete|all>`."""
    if isinstance(text, (list, tuple)):
        text = " ".join(text)
    scopes = tuple(s for s in re.split(r"[ +]+", str(text or "")) if s)
    for scope in scopes:
        if not SCOPE_RE.match(scope):
            raise ValueError(f"bad scope {scope!r}")
    return tuple(dict.fromkeys(scopes))


def _token_params(request: Request) -> dict:
    """Token request fields from a form or JSON body (§1.1), plus HTTP Basic client credentials."""
    media = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if media == "application/json":
        try:
            params = json.loads(request.get_data() or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise OAuthError(400, "invalid_request", "The request body is not valid JSON.") from None
        if not isinstance(params, dict):
            raise OAuthError(400, "invalid_request", "The request body must be a JSON object.")
    else:
        params = request.form.to_dict()
    auth = request.authorization
    if auth is not None and auth.type == "basic" and "client_id" not in params:
        params["client_id"], params["client_secret"] = auth.username, auth.password
    return params


def _redirect(uri: str, **params: str | None) -> Response:
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    location = uri + ("&" if "?" in uri else "?") + query
    return Response(b"", status=302, headers={"Location": location})


def _is_http_url(uri: str) -> bool:
    parsed = urllib.parse.urlparse(uri)
    return parsed.scheme in ("http", "https") and bool(parsed.netloc)


def _sparse_fields(request: Request, kind: str) -> dict[str, set[str]]:
    """`fields[<type>]=a,b` sparse fieldsets (§2.5); an unknown field is a 400."""
    out: dict[str, set[str]] = {}
    for key, value in request.args.items():
        if not (key.startswith("fields[") and key.endswith("]")):
            continue
        type_name = key[len("fields["):-1]
        target = TYPE_TO_KIND.get(type_name)
        if target is None:
            raise bad_param("fieldsParameter.unknownResourceField", f"'{type_name}' is not a resource type.")
        names = {n for n in value.split(",") if n}
        known = set(ATTRS[target]) | set(TO_ONE[target]) | {"creator", "updater"}
        unknown = sorted(names - known)
        if unknown:
            raise ApiError(400, "fieldsParameter.unknownResourceField", "Unknown Resource Field",
                           f"'{unknown[0]}' is not a field of {type_name}.")
        out[type_name] = names
    return out


def _bracket_segments(text: str) -> list[str] | None:
    """`[account][id]` -> ["account", "id"]; `[name][]` -> ["name", ""]; malformed -> None."""
    segments = re.findall(r"\[([^\[\]]*)\]", text)
    if "".join(f"[{s}]" for s in segments) != text or not segments or not segments[0]:
        return None
    return segments


def _coerce(attr: Attr, raw: str) -> Any:
    """A filter value as the attribute's type; a value that cannot be one is a 400."""
    try:
        if attr.kind == "int":
            return int(raw)
        if attr.kind == "num":
            return float(raw)
        if attr.kind == "bool":
            if raw not in ("true", "false"):
                raise ValueError(raw)
            return raw == "true"
        if attr.kind == "datetime":
            return parse_iso(raw)
    except ValueError:
        raise bad_param("filterParameter.invalidValue",
                        f"'{raw}' is not a valid value for the filter '{attr.name}'.") from None
    return raw


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _sort_text(sort: list[tuple[str, bool]]) -> str:
    return ",".join(("-" if desc else "") + name for name, desc in sort)


def _sort_rows(rows: Iterable[dict], sort: list[tuple[str, bool]], value: Callable[[dict, str], Any]) -> list[dict]:
    """Stable multi-pass sort: nulls last ascending and first descending (PostgreSQL's order); the
    spec always ends with id, so the order is total and matches `_compare` for the cursor."""
    rows = list(rows)
    for name, desc in reversed(sort):
        try:
            rows.sort(key=lambda r: _null_key(value(r, name)), reverse=desc)
        except TypeError:  # mixed types stored through insert(): order them as text, like _compare
            rows.sort(key=lambda r: _null_key(None if value(r, name) is None else str(value(r, name))),
                      reverse=desc)
    return rows


def _null_key(value: Any) -> tuple:
    return (True, 0) if value is None else (False, value)


def _compare(a: list, b: list, sort: list[tuple[str, bool]]) -> int:
    for (_, desc), x, y in zip(sort, a, b):
        if x == y:
            continue
        if x is None:
            result = 1
        elif y is None:
            result = -1
        else:
            try:
                result = -1 if x < y else 1
            except TypeError:  # a stored value of another type than the cursor's
                result = -1 if str(x) < str(y) else 1
        return -result if desc else result
    return 0


def _bisect(keys: list[list], cursor: list, sort: list, after: bool) -> int:
    """Index of the first key after the cursor (after=True) or at/after it (after=False)."""
    lo, hi = 0, len(keys)
    while lo < hi:
        mid = (lo + hi) // 2
        c = _compare(keys[mid], cursor, sort)
        if c < 0 or (after and c == 0):
            lo = mid + 1
        else:
            hi = mid
    return lo


def _humanize(name: str) -> str:
    words = re.sub(r"(?<!^)(?=[A-Z])", " ", name).lower()
    return words[:1].upper() + words[1:]


def _valid_date(text: str) -> bool:
    try:
        dt.date.fromisoformat(text)
        return True
    except ValueError:
        return False
