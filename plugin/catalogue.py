"""The Outreach attribute catalogue the mapping validator checks targets against.

Built only from reference/outreach-api.md §3 (Outreach's published OpenAPI, plus the few
attributes that reference marks as server-set). For each attribute: its type, its maximum
length when Outreach states one, and whether the API lets us write it.

Types are the small vocabulary the mapping's type checks speak:
    string, list (a list of strings), integer, number, boolean, date (YYYY-MM-DD),
    datetime (ISO 8601).
"""
from __future__ import annotations

from dataclasses import dataclass

STRING, LIST, INTEGER, NUMBER, BOOLEAN, DATE, DATETIME = (
    "string", "list", "integer", "number", "boolean", "date", "datetime")
TYPES = (STRING, LIST, INTEGER, NUMBER, BOOLEAN, DATE, DATETIME)

CUSTOM_FIELD_COUNT = 150          # custom1 … custom150 on prospects and accounts
CUSTOM_FIELD_MAX_LENGTH = 32000


@dataclass(frozen=True)
class Attribute:
    name: str
    type: str
    max_length: int | None = None
    writable: bool = True
    note: str = ""


def _add(table: dict[str, Attribute], names: str, type_: str, max_length: int | None = None,
         *, writable: bool = True, note: str = "") -> None:
    for name in names.split():
        table[name] = Attribute(name, type_, max_length, writable, note)


def _prospect() -> dict[str, Attribute]:
    t: dict[str, Attribute] = {}
    _add(t, "firstName lastName middleName nickname", STRING, 255)
    _add(t, "name", STRING, writable=False, note="full name, computed by Outreach")
    _add(t, "emails", LIST, note="email addresses; the first is the primary one")
    _add(t, "title occupation", STRING, 255)
    _add(t, "company", STRING, note="the account's name when the prospect has an account")
    _add(t, "workPhones mobilePhones homePhones otherPhones voipPhones", LIST)
    _add(t, "addressStreet addressStreet2 addressCity addressState addressZip addressCountry",
         STRING, 255)
    _add(t, "websiteUrl1 websiteUrl2 websiteUrl3", STRING, 65535)
    _add(t, "linkedInUrl", STRING, 1000)
    _add(t, "linkedInId", STRING)
    _add(t, "linkedInSlug", STRING, writable=False)
    _add(t, "linkedInConnections", INTEGER)
    _add(t, "twitterUrl twitterUsername facebookUrl githubUrl githubUsername angelListUrl "
            "quoraUrl googlePlusUrl stackOverflowUrl stackOverflowId", STRING)
    _add(t, "tags", LIST)
    _add(t, "externalId", STRING, 255, note="written by the plugin: the Workbooks id")
    _add(t, "externalOwner", STRING, 255)
    _add(t, "externalSource", STRING, 255, writable=False, note="set by Outreach")
    _add(t, "optedOut emailOptedOut callOptedOut", BOOLEAN)
    _add(t, "emailsOptStatus callsOptStatus", STRING, 255)
    _add(t, "optedOutAt emailsOptedAt callsOptedAt", DATETIME, writable=False)
    _add(t, "source campaignName eventName region preferredContact degree school gender",
         STRING, 255)
    _add(t, "personalNote1 personalNote2 specialties", STRING, 65535)
    _add(t, "score", NUMBER)
    _add(t, "dateOfBirth graduationDate jobStartDate", DATE)
    _add(t, "addedAt availableAt", DATETIME)
    _add(t, "timeZone", STRING, 255)
    _add(t, "timeZoneIana timeZoneInferred", STRING, writable=False)
    _add(t, "engagedAt touchedAt", DATETIME, writable=False)
    _add(t, "engagedScore", NUMBER, writable=False)
    _add(t, "openCount clickCount replyCount", INTEGER, writable=False)
    _add(t, "contactHistogram", LIST, writable=False)
    _add(t, "createdAt updatedAt", DATETIME, writable=False)
    _add(t, "trashedAt", DATETIME)
    _add(t, "sharingTeamId", STRING, 255)
    _add_custom(t)
    return t


def _account() -> dict[str, Attribute]:
    t: dict[str, Attribute] = {}
    _add(t, "name naturalName domain websiteUrl industry", STRING, 255)
    _add(t, "numberOfEmployees linkedInEmployees followers", INTEGER)
    _add(t, "customId", STRING, 255, note="written by the plugin: the Workbooks id")
    _add(t, "externalSource", STRING, 255, writable=False, note="set by Outreach")
    _add(t, "description", STRING, 65535)
    _add(t, "companyType locality tickerSymbol annualRevenueRange", STRING)
    _add(t, "linkedInUrl", STRING, 1000)
    _add(t, "naicsCodes sicCodes tags", LIST)
    _add(t, "foundedAt", DATETIME)
    _add(t, "buyerIntentScore", NUMBER)
    _add(t, "named", BOOLEAN, note="only named accounts appear in Outreach's account list")
    _add(t, "createdAt updatedAt touchedAt", DATETIME, writable=False)
    _add(t, "sharingTeamId", STRING)
    _add_custom(t)
    return t


def _user() -> dict[str, Attribute]:
    # Users are only read (to find owners); nothing here is a mapping target.
    t: dict[str, Attribute] = {}
    _add(t, "email username firstName lastName title", STRING, 255, writable=False)
    _add(t, "name userGuid phoneNumber phoneCountryCode phoneType scimExternalId scimSource",
         STRING, writable=False)
    _add(t, "locked", BOOLEAN, writable=False)
    _add(t, " ".join(f"custom{n}" for n in range(1, 6)), STRING, 225, writable=False)
    _add(t, "createdAt updatedAt currentSignInAt lastSignInAt passwordExpiresAt", DATETIME,
         writable=False)
    return t


def _add_custom(table: dict[str, Attribute]) -> None:
    _add(table, " ".join(f"custom{n}" for n in range(1, CUSTOM_FIELD_COUNT + 1)),
         STRING, CUSTOM_FIELD_MAX_LENGTH)


CATALOGUE: dict[str, dict[str, Attribute]] = {
    "prospect": _prospect(),
    "account": _account(),
    "user": _user(),
}

# Attributes the plugin writes itself: the Workbooks id marker that lets a rerun recognise the
# records it created (crash recovery). A mapping must not overwrite them.
RESERVED: dict[str, dict[str, str]] = {
    "prospect": {"externalId": "the plugin writes the Workbooks id into `externalId` to "
                               "recognise the prospects it created"},
    "account": {"customId": "the plugin writes the Workbooks id into `customId` to "
                            "recognise the accounts it created"},
}


# Attributes a mapping should send although Outreach does not insist: the validator warns without them.
RECOMMENDED: dict[str, dict[str, str]] = {
    "account": {"name": "accounts without a name are hidden in Outreach"},
}


def attribute(object_type: str, name: str) -> Attribute | None:
    return CATALOGUE.get(object_type, {}).get(name)


def names(object_type: str) -> list[str]:
    return list(CATALOGUE.get(object_type, {}))


def writable_names(object_type: str) -> list[str]:
    """Attributes a mapping may target: writable and not reserved by the plugin."""
    reserved = RESERVED.get(object_type, {})
    return [a.name for a in CATALOGUE.get(object_type, {}).values()
            if a.writable and a.name not in reserved]
