"""What happened to each case the demo seeded, judged from the final records it read back from
both emulators and from what each run printed and cost (tools/demo.py prints these verdicts).

`verdicts(cases, imported, final, cycles)` → [(passed, line)]. `final` is the demo report's
"final" section (trimmed Workbooks and Outreach records), `cycles` its per-run records.
tests/test_demo.py judges the same raw records independently; this is the demo's own account.
"""
from __future__ import annotations

from dataclasses import dataclass

HOW_OWNERS_MATCH = {"username": "Outreach user name = login", "email": "Outreach email = login",
                    None: "no Outreach seat"}


@dataclass
class Final:
    """Look-ups over the final records."""
    people: dict[str, dict]            # email (lower) -> Workbooks person
    prospects: dict[str, list[dict]]   # email (lower) -> Outreach prospects having it
    accounts: set[str]                 # Outreach account names
    users: dict[int, dict]             # Outreach user id -> user
    user_ids: dict[str, int]           # Outreach user email -> id
    reps: dict[str, dict]              # rep key -> Workbooks user (with how Outreach knows them)

    @classmethod
    def of(cls, final: dict) -> "Final":
        prospects: dict[str, list[dict]] = {}
        for prospect in final["outreach"]["prospects"]:
            for email in prospect["emails"]:
                prospects.setdefault(email.lower(), []).append(prospect)
        return cls(people={str(p["main_location[email]"] or "").lower(): p for p in final["workbooks"]["people"]},
                   prospects=prospects, accounts={a["name"] for a in final["outreach"]["accounts"]},
                   users={u["id"]: u for u in final["outreach"]["users"]},
                   user_ids={u["email"]: u["id"] for u in final["outreach"]["users"]},
                   reps={r["key"]: r for r in final["workbooks"]["users"]})

    def prospect(self, email: str) -> dict:
        return (self.prospects.get(email.lower()) or [{}])[0]


def verdicts(cases: dict, imported: list[str], final: dict, cycles: list[dict]) -> list[tuple[bool, str]]:
    state = Final.of(final)
    found = [collision(cases, state), excluded(cases, state), malformed(cases, state, cycles),
             unicode_names(cases, state), no_employer(cases, state), unticked(cases, state)]
    found += owners(cases, state)
    found += [reassigned(cases, state), edited(cases, state)]
    found += received(cases, state, cycles)
    found += [economy(cycles), imported_once(imported, state)]
    return [(bool(ok), f"{label:<12}{text}") for label, ok, text in found]


def collision(cases: dict, s: Final):
    email = cases["collision"]
    person = s.people[email.lower()]
    ok = person["duplicate"] and not person["outreach_id"] and len(s.prospects.get(email.lower(), [])) == 1
    return ("collision", ok, f"{email}: Outreach Duplicate ticked, nothing created — "
                             f"\"{shorten(person['error_message'] or '', 90)}\"")


def excluded(cases: dict, s: Final):
    person = s.people[cases["excluded"].lower()]
    ok = person["sync_error"] and "excluded" in (person["error_message"] or "") and not person["outreach_id"]
    return ("excluded", ok, f"{cases['excluded']}: Outreach Sync Error — "
                            f"\"{shorten(person['error_message'] or '', 90)}\"")


def malformed(cases: dict, s: Final, cycles: list[dict]):
    bad, good = cases["malformed"]["bad"], cases["malformed"]["fixed"]
    first = next(c for c in cycles if c["key"] == "first")
    flagged = any(bad in line and "Sync Error" in line for line in first["problems"])
    person = s.people.get(good.lower(), {})
    ok = flagged and person.get("outreach_id") and not person.get("sync_error") and not person.get("error_message")
    return ("malformed", ok, f"{bad}: Sync Error in run {first['number']}, then fixed and the flag reset "
                             f"→ prospect {person.get('outreach_id')}")


def unicode_names(cases: dict, s: Final):
    people = cases["unicode_people"]
    intact = [p for p in people
              if (s.prospect(p["email"]).get("firstName"), s.prospect(p["email"]).get("lastName")) == (p["first"], p["last"])]
    orgs = set(cases["unicode_organisations"]) & s.accounts
    ok = len(intact) == len(people) and len(orgs) == len(cases["unicode_organisations"])
    examples = ", ".join(f"{p['first']} {p['last']}" for p in people[3:8:2])
    return ("unicode", ok, f"{len(intact)}/{len(people)} names intact in Outreach ({examples}), "
                           f"{len(orgs)}/{len(cases['unicode_organisations'])} accounts (e.g. 株式会社さくら精機)")


def no_employer(cases: dict, s: Final):
    emails = cases["no_employer"]
    lone = [e for e in emails if s.prospect(e).get("id") and s.prospect(e)["account"] is None]
    return ("no employer", len(lone) == len(emails),
            f"{len(lone)}/{len(emails)} People without an Employer are prospects without an account")


def unticked(cases: dict, s: Final):
    orgs, people = cases["unflagged_organisations"], cases["unflagged_employer"]
    absent = [n for n in orgs if n not in s.accounts]
    unrelated = [e for e in people if s.prospect(e).get("id") and s.prospect(e)["account"] is None]
    return ("unticked", len(absent) == len(orgs) and len(unrelated) == len(people),
            f"{len(absent)}/{len(orgs)} Organisations not ticked are not in Outreach; "
            f"{len(unrelated)}/{len(people)} of their People are, without the account")


def owners(cases: dict, s: Final):
    found = []
    for key, email in cases["owners"].items():
        rep = s.reps[key]
        owner = s.prospect(email).get("owner")
        expected = s.user_ids.get(rep["login_name"]) if rep["outreach"] else None
        shown = f"user {owner} ({s.users[owner]['username']})" if owner in s.users else "empty"
        found.append(("owner", owner == expected,
                      f"{rep['person_name']} ({HOW_OWNERS_MATCH[rep['outreach']]}) → Outreach owner {shown}"))
    return found


def reassigned(cases: dict, s: Final):
    owner = s.prospect(cases["reassign"]).get("owner")
    return ("reassigned", owner == s.user_ids.get(s.reps["alice"]["login_name"]),
            f"{cases['reassign']}: Dev Anand → Alice Martin; Outreach owner now user {owner}")


def edited(cases: dict, s: Final):
    title = s.prospect(cases["title_edit"]).get("title")
    return ("edited", title == "VP Sales", f"{cases['title_edit']}: title in Outreach is \"{title}\"")


def received(cases: dict, s: Final, cycles: list[dict]):
    """What a rep did in Outreach arrived in Workbooks, and cost no write back to Outreach."""
    case = cases.get("received")
    if not case:
        return [("received", False, "the demo did no Outreach activity")]
    run = next(c for c in cycles if c["key"] == "outreach")
    title = s.people[case["title"]["email"].lower()]
    opted = s.people[case["opt_out"].lower()]
    seq = s.people[case["sequence"]["email"].lower()]
    sent = sum(n for route, n in run["outreach_by_route"].items() if not route.startswith("GET "))
    return [("received", title["person_job_title"] == case["title"]["title"] and sent == 0,
             f"{case['title']['email']}: a rep's title \"{case['title']['title']}\" is on the Person "
             f"(run {run['number']}, {sent} requests sent back)"),
            ("opt-out", opted["no_email_soliciting"] is True and opted["sequence_state"] == "Opted Out"
             and bool(opted["opted_out_at"]),
             f"{case['opt_out']}: unsubscribed in Outreach → No Email ticked, Sequence State "
             f"\"{opted['sequence_state']}\""),
            ("sequence", (seq["sequence_state"], seq["sequence_name"]) == (case["sequence"]["state"], case["sequence"]["name"]),
             f"{case['sequence']['email']}: Sequence State \"{seq['sequence_state']}\" in \"{seq['sequence_name']}\"")]


def economy(cycles: list[dict]):
    edits = next(c for c in cycles if c["key"] == "edits")
    patches = sum(n for route, n in edits["outreach_by_route"].items() if route.startswith("PATCH "))
    idle = [c for c in cycles if c["key"] in ("idle", "steady")]
    quiet = all(all(route.startswith("GET ") for route in c["outreach_by_route"]) and c["outreach_requests"] <= 3
                for c in idle)
    ok = patches == 2 and quiet
    return ("economy", ok, f"run {edits['number']}: {patches} PATCHes for 3 edits (the salutation is not "
                           f"mapped: no request); idle runs {', '.join(str(c['number']) for c in idle)}: "
                           "nothing sent, at most 3 polls of Outreach")


def imported_once(imported: list[str], s: Final):
    once = [e for e in imported if len(s.prospects.get(e, [])) == 1
            and s.people[e]["outreach_id"] == str(s.prospects[e][0]["id"])]
    return ("import", len(once) == len(imported),
            f"{len(once):,}/{len(imported):,} imported People linked, each to exactly one prospect")


def shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"
