"""The one registry of the kinds of record the plugin syncs: what each is called in Workbooks and
in Outreach, where it lives, how it is matched and what it hangs off. Every module that used to
keep its own table (workbooks.py, manifest.py, mapping.py, fields.py, install.py, runner.py, the
engine) reads this one, so a new kind is a registry entry (plus its catalogue, a mapping section
and its fields), not an edit in the engine's flow.

A kind's behaviour beyond data is named here and looked up where it is implemented (the singer-sdk
`get_sink_class` idea): `resolver` names how an unlinked record is found in Outreach
(plugin/sync/send/resolve.py). `parent` is the relation a child record carries to its parent
(Person → Organisation, as the Outreach `account` relationship).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Relation:
    """A child record's link to its parent kind."""
    parent: str                 # the parent kind's name ("organisation")
    link_column: str            # the child's Workbooks column holding the parent's id ("employer_link")
    outreach_relationship: str  # the child's Outreach relationship to the parent's record ("account")
    label: str                  # what Workbooks calls the parent on the child ("Employer")
    # Parent attributes a child's mapping copies (a person's `employer_name` → `company` is the
    # Employer's name): when one changes, the children must be looked at again although their
    # own `updated_at` did not move.
    copied_attributes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Kind:
    name: str               # "person": mapping section, state keys, log lines
    label: str              # plural for the summary line ("people")
    words: str              # plural as the administrator reads it ("People")
    endpoint: str           # Workbooks controller
    resource_type: str      # Workbooks record class
    queue_endpoint: str     # Workbooks queues behind "Assigned To"
    outreach_type: str      # JSON:API type ("prospect")
    outreach_plural: str    # collection path ("prospects")
    web_path: str           # path segment of the Outreach web URL
    marker_attribute: str   # where the Workbooks id is stamped, to recognise our own records
    # Whether Outreach can filter on the marker (outreach-api.md §3: account `customId` yes,
    # prospect `externalId` no). Without it, a create whose answer was lost can only be found
    # again by its match key, so the creates whose outcome is unknown are noted in state.
    marker_filterable: bool
    match_keys: tuple[str, ...]   # mapping `match_key` choices; the first is the default
    resolver: str           # how an unlinked record is found in Outreach (see module docstring)
    reading_order: int      # position in the summary line and the installer's messages
    parent: Relation | None = None
    # What the receive side brings back for this kind besides its mapped fields, by name
    # (plugin/sync/receive/): "opt_outs" (a prospect's opt-outs onto No Email / No Call),
    # "sequence_states" (the prospect's sequence state onto the record).
    receives: tuple[str, ...] = ()

    def marker(self, database_id, record_id) -> str:
        return f"workbooks:{database_id}:{self.name}:{record_id}"

    @property
    def default_match_key(self) -> str:
        return self.match_keys[0]


ORGANISATION = Kind(
    name="organisation", label="organisations", words="Organisations", endpoint="crm/organisations",
    resource_type="Private::Crm::Organisation", queue_endpoint="crm/organisation_queues",
    outreach_type="account", outreach_plural="accounts", web_path="accounts", marker_attribute="customId",
    marker_filterable=True, match_keys=("name", "domain", "customId"), resolver="account", reading_order=2)

PERSON = Kind(
    name="person", label="people", words="People", endpoint="crm/people",
    resource_type="Private::Crm::Person", queue_endpoint="crm/person_queues",
    outreach_type="prospect", outreach_plural="prospects", web_path="prospects", marker_attribute="externalId",
    marker_filterable=False, match_keys=("emails",), resolver="prospect", reading_order=1,
    parent=Relation(parent="organisation", link_column="employer_link", outreach_relationship="account",
                    label="Employer", copied_attributes=("name",)),
    receives=("opt_outs", "sequence_states"))

#: In sync order: a parent before the kinds that hang off it.
KINDS: tuple[Kind, ...] = (ORGANISATION, PERSON)
NAMES: tuple[str, ...] = tuple(k.name for k in KINDS)


def by_name(name: str) -> Kind:
    for kind in KINDS:
        if kind.name == name:
            return kind
    raise KeyError(f"unknown record kind {name!r}: expected one of {', '.join(NAMES)}")


def by_outreach_type(outreach_type: str) -> Kind:
    for kind in KINDS:
        if kind.outreach_type == outreach_type:
            return kind
    raise KeyError(f"no record kind syncs to Outreach {outreach_type!r}")


def children_of(kind: Kind) -> tuple[Kind, ...]:
    """The kinds whose records hang off `kind`'s (Organisation → People)."""
    return tuple(k for k in KINDS if k.parent is not None and k.parent.parent == kind.name)


def in_reading_order() -> tuple[Kind, ...]:
    """The order an administrator reads the kinds in: the summary line, the installer's messages."""
    return tuple(sorted(KINDS, key=lambda k: k.reading_order))
