"""The small company `make demo` seeds into the two emulators (tools/demo.py drives it).

Deterministic (a fixed random seed), so every demo run tells the same story and the demo test
can name each seeded case. Nothing here talks to a server: it only builds the records, in the
Python-API form the emulators' `/_emulator/seed` routes take, with owners given as a rep's key
(the seeder turns it into that rep's queue id once the Workbooks users exist).

The cases the demo shows, each one record or group of records named in `Company.cases`:
  collision        a Workbooks Person whose email an Outreach prospect already has → Outreach Duplicate
  excluded         an email at a domain Outreach excludes (emulator switch)       → Outreach Sync Error
  malformed        an email with no top-level domain                               → Outreach Sync Error,
                   then fixed and its error flag reset between cycles                → synced
  unicode          accents, CJK and emoji in names                                   → intact in Outreach
  no_employer      People without an Employer                                        → Prospects without account
  unflagged orgs   Organisations without "Sync to Outreach"                          → not in Outreach; their
                   people still sync, without the account relation
  owners           reps with an Outreach seat (matched by username or by email) and reps without one
"""
from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass, field

SEED = 20240611
SELLER_DOMAIN = "northwind.example"          # the company running Workbooks (its reps' logins)
EXCLUDED_DOMAIN = "rivalsoft.example"        # on Outreach's excluded list: a competitor
ORGANISATIONS = 50
UNFLAGGED_ORGANISATIONS = 8
LATER_FLAGGED = 60                           # People ticked for sync only in a later cycle
NO_EMPLOYER = 20

# Workbooks users (sales reps). `outreach` says how Outreach knows them, if at all.
REPS = (
    # key,    login (email),                      person name,     Outreach seat
    ("alice", f"alice.martin@{SELLER_DOMAIN}", "Alice Martin", "username"),   # username = login
    ("bruno", f"bruno.costa@{SELLER_DOMAIN}", "Bruno Costa", "username"),
    ("chloe", f"chloe.dubois@{SELLER_DOMAIN}", "Chloé Dubois", "email"),      # only the email matches
    ("dev", f"dev.anand@{SELLER_DOMAIN}", "Dev Anand", None),                 # no Outreach seat
    ("emma", f"emma.schulz@{SELLER_DOMAIN}", "Emma Schulz", None),
)
# The Outreach user who authorises the plugin; no Workbooks counterpart, so it owns nothing.
CONNECTION_USER = {"email": f"revops@{SELLER_DOMAIN}", "username": "revops", "first_name": "Rev",
                   "last_name": "Ops"}

FIRST_NAMES = ("Olivia", "Liam", "Amelia", "Noah", "Isla", "Oliver", "Ava", "Elijah", "Mia", "James",
               "Sofia", "Lucas", "Grace", "Mateo", "Hannah", "Arjun", "Fatima", "Kenji", "Ingrid",
               "Tomás", "Chiara", "Kwame", "Maya", "Henrik", "Leila", "Diego", "Anya", "Rohan",
               "Elena", "Samuel", "Nora", "Ibrahim", "Freya", "Marco", "Aisha", "Jonas")
LAST_NAMES = ("Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Patel",
              "Wright", "Walker", "Thompson", "Hughes", "Edwards", "Green", "Novak", "Rossi", "Okafor",
              "Larsen", "Fischer", "Haddad", "Kowalski", "Mensah", "Silva", "Ivanova", "Tanaka",
              "Berg", "Moreau", "Khan", "O'Neill", "Lindqvist", "Costa", "Murphy", "Bauer")
TITLES = ("Head of Sales", "Sales Director", "Operations Manager", "CFO", "CTO", "Procurement Lead",
          "Marketing Manager", "IT Manager", "Finance Director", "Account Executive", "COO",
          "Head of Customer Success", "Product Manager", "Office Manager", "Managing Director")
INDUSTRIES = ("Manufacturing", "Software", "Logistics", "Healthcare", "Retail", "Financial Services",
              "Energy", "Education", "Construction", "Hospitality")
TOWNS = (("London", "United Kingdom"), ("Manchester", "United Kingdom"), ("Leeds", "United Kingdom"),
         ("Dublin", "Ireland"), ("Berlin", "Germany"), ("Lyon", "France"), ("Madrid", "Spain"),
         ("Milan", "Italy"), ("Amsterdam", "Netherlands"), ("Stockholm", "Sweden"),
         ("Tokyo", "Japan"), ("Toronto", "Canada"))
ORG_WORDS_A = ("Blue", "North", "Bright", "Silver", "Iron", "Green", "Red", "Oak", "Summit", "Harbour",
               "Cedar", "Falcon", "Granite", "Maple", "Nova", "Pioneer", "Quantum", "River", "Stone",
               "Vertex")
ORG_WORDS_B = ("Analytics", "Logistics", "Foods", "Systems", "Energy", "Health", "Robotics",
               "Textiles", "Labs", "Partners", "Engineering", "Media", "Retail", "Freight")
ORG_SUFFIXES = ("Ltd", "plc", "GmbH", "SA", "Inc", "BV", "AB", "LLP")

# Organisations whose names are not plain ASCII (names are Outreach's account match key), with
# the web domain each uses.
UNICODE_ORGS = {"Müller & Söhne GmbH": "mueller-soehne", "株式会社さくら精機": "sakura-seiki",
                "Café Olé ☕ SARL": "cafe-ole", "Škoda Díly s.r.o.": "skoda-dily"}
# (first, last, email local part): accents, CJK, Cyrillic, Vietnamese, emoji.
UNICODE_PEOPLE = (
    ("Zoë", "Ångström", "zoe.angstrom"),
    ("José", "Müller-Lüdenscheidt", "jose.muller"),
    ("Siobhán", "Ó Briain", "siobhan.obriain"),
    ("小龙", "李", "xiaolong.li"),
    ("さくら", "山田", "sakura.yamada"),
    ("Дмитрий", "Иванов", "dmitry.ivanov"),
    ("Ngọc", "Nguyễn", "ngoc.nguyen"),
    ("Priya", "Patel 🚀", "priya.patel"),
)


@dataclass
class Company:
    reps: list[dict]                    # Workbooks users: key, login_name, person_name, outreach
    outreach_users: list[dict]          # Outreach users: email, username, first_name, last_name
    organisations: list[dict]           # Workbooks seed rows (explicit ids) + "_flag", "_owner"
    people: list[dict]                  # Workbooks seed rows + "_flag" ("now" | "later"), "_owner"
    outreach_prospects: list[dict]      # prospects already in Outreach before the plugin arrives,
                                        # "_owner" the rep key of the Outreach user who owns it
    cases: dict = field(default_factory=dict)


def build(people: int = 300, seed: int = SEED) -> Company:
    """A company of `people` People (at least 60) across 50 Organisations, with every case."""
    rng = random.Random(seed)
    orgs = _organisations(rng)
    flagged_orgs = [o for o in orgs if o["_flag"]]
    emails: set[str] = set()
    rows = _special_people(rng, orgs, emails)
    while len(rows) < max(people, 60):
        n = len(rows)
        employer = None if n % (max(people, 60) // NO_EMPLOYER) == 0 else rng.choice(orgs)
        rows.append(_person(rng, employer, emails))
    _choose_later(rng, rows)
    cases = _cases(rows, orgs)
    prospects = [_existing_prospect(rows)]
    return Company(reps=[{"key": k, "login_name": login, "person_name": name, "outreach": seat}
                         for k, login, name, seat in REPS],
                   outreach_users=_outreach_users(), organisations=orgs, people=rows,
                   outreach_prospects=prospects, cases=cases | {"flagged_organisations": len(flagged_orgs)})


def bulk_import(count: int, orgs: list[dict], taken: set[str], seed: int = SEED + 1) -> list[dict]:
    """`count` People as a CSV import would bring them in, "Sync to Outreach" ticked, spread over
    the synced Organisations (a few without an Employer)."""
    rng = random.Random(seed)
    synced = [o for o in orgs if o["_flag"]]
    rows = []
    for n in range(count):
        employer = None if n % 25 == 0 else rng.choice(synced)
        row = _person(rng, employer, taken, tag="import")
        row["imported"] = True
        row["_flag"] = "now"
        rows.append(row)
    return rows


# --- organisations ---------------------------------------------------------------------------------

def _organisations(rng: random.Random) -> list[dict]:
    names: list[str] = list(UNICODE_ORGS)
    stems: set[str] = set()
    while len(names) < ORGANISATIONS:
        stem = f"{rng.choice(ORG_WORDS_A)} {rng.choice(ORG_WORDS_B)}"
        if stem not in stems:           # one web domain per company
            stems.add(stem)
            names.append(f"{stem} {rng.choice(ORG_SUFFIXES)}")
    rng.shuffle(names)
    unflagged = set(rng.sample(range(ORGANISATIONS), UNFLAGGED_ORGANISATIONS))
    for i, name in enumerate(names):   # the Unicode names are always synced, to show them intact
        if name in UNICODE_ORGS and i in unflagged:
            unflagged.discard(i)
            unflagged.add(next(j for j in range(ORGANISATIONS) if j not in unflagged
                                and names[j] not in UNICODE_ORGS))
    orgs = []
    for i, name in enumerate(names):
        town, country = rng.choice(TOWNS)
        orgs.append({"id": i + 1, "name": name, "website": f"https://www.{_slug(name)}.example",
                     "industry": rng.choice(INDUSTRIES), "main_location[town]": town,
                     "main_location[country]": country,
                     "organisation_num_employees": str(rng.choice((12, 45, 120, 480, 2300))),
                     "_flag": i not in unflagged, "_owner": rng.choice(REPS)[0]})
    return orgs


# --- people ----------------------------------------------------------------------------------------

def _person(rng: random.Random, employer: dict | None, taken: set[str], *, first: str | None = None,
            last: str | None = None, local: str | None = None, domain: str | None = None,
            tag: str = "") -> dict:
    first = first or rng.choice(FIRST_NAMES)
    last = last or rng.choice(LAST_NAMES)
    domain = domain or (_slug(employer["name"]) + ".example" if employer else "mailbox.example")
    base = local or f"{_ascii(first)}.{_ascii(last)}".lower().replace("'", "")
    email, n = f"{base}@{domain}", 1
    while email.lower() in taken:
        n += 1
        email = f"{base}{n}@{domain}"
    taken.add(email.lower())
    row = {"person_first_name": first, "person_last_name": last, "name": f"{first} {last}",
           "person_job_title": rng.choice(TITLES), "main_location[email]": email,
           "main_location[telephone]": f"+44 20 7946 {rng.randrange(1000):04d}",
           "_flag": "now", "_owner": rng.choice(REPS)[0], "_tag": tag}
    if employer:
        row["employer_link"] = employer["id"]
        row["main_location[town]"] = employer["main_location[town]"]
        row["main_location[country]"] = employer["main_location[country]"]
    return row


def _special_people(rng: random.Random, orgs: list[dict], taken: set[str]) -> list[dict]:
    synced = [o for o in orgs if o["_flag"]]
    unflagged = [o for o in orgs if not o["_flag"]]
    rows = []

    def add(tag: str, employer: dict | None, **kw) -> dict:
        row = _person(rng, employer, taken, tag=tag, **kw)
        rows.append(row)
        return row

    add("collision", synced[0], first="Jordan", last="Reyes")
    add("excluded", None, first="Morgan", last="Blake", domain=EXCLUDED_DOMAIN)
    bad = add("malformed", synced[1], first="Sam", last="Oduya")
    good_email = bad["main_location[email]"]
    # A typo in the domain: no top-level domain. The demo fixes it between cycles.
    bad["main_location[email]"] = good_email.rsplit(".", 1)[0]
    bad["_fixed_email"] = good_email
    for i, (first, last, local) in enumerate(UNICODE_PEOPLE):
        add("unicode", synced[2 + i], first=first, last=last, local=local)
    for org in unflagged[:3]:
        add("unflagged_employer", org)
    for rep_key in ("alice", "chloe", "dev"):       # one person per owner case, pinned
        add(f"owner:{rep_key}", synced[12])["_owner"] = rep_key
    add("title_edit", synced[13])["person_job_title"] = "Sales Manager"
    add("reassign", synced[14])["_owner"] = "dev"
    add("unmapped_edit", synced[15])
    return rows


def _choose_later(rng: random.Random, rows: list[dict]) -> None:
    """Leave some ordinary People unticked: marketing ticks them in a later cycle."""
    ordinary = [r for r in rows if not r["_tag"]]
    for row in rng.sample(ordinary, min(LATER_FLAGGED, len(ordinary) // 3)):
        row["_flag"] = "later"
        row["_tag"] = "later"


def _existing_prospect(rows: list[dict]) -> dict:
    """The prospect a rep created in Outreach by hand, before the plugin: same email as the
    collision case, in different capitals (Outreach matches emails case-insensitively)."""
    person = next(r for r in rows if r["_tag"] == "collision")
    local, domain = person["main_location[email]"].split("@")
    return {"emails": [f"{local.title()}@{domain}"], "firstName": "Jordan", "lastName": "Reyes",
            "title": "Buyer (added by hand in Outreach)", "_owner": "bruno"}


def _outreach_users() -> list[dict]:
    users = [dict(CONNECTION_USER)]
    for key, login, name, seat in REPS:
        first, last = name.split(" ", 1)
        if seat == "username":
            users.append({"email": login, "username": login, "first_name": first, "last_name": last})
        elif seat == "email":
            users.append({"email": login, "username": key, "first_name": first, "last_name": last})
    return users


def _cases(rows: list[dict], orgs: list[dict]) -> dict:
    def emails(tag: str) -> list[str]:
        return [r["main_location[email]"] for r in rows if r["_tag"] == tag]

    malformed = next(r for r in rows if r["_tag"] == "malformed")
    return {
        "collision": emails("collision")[0],
        "excluded": emails("excluded")[0],
        "malformed": {"bad": malformed["main_location[email]"], "fixed": malformed["_fixed_email"]},
        "unicode_people": [{"email": r["main_location[email]"], "first": r["person_first_name"],
                            "last": r["person_last_name"]} for r in rows if r["_tag"] == "unicode"],
        "unicode_organisations": list(UNICODE_ORGS),
        "no_employer": [r["main_location[email]"] for r in rows
                        if "employer_link" not in r and r["_tag"] != "excluded"],
        "unflagged_organisations": [o["name"] for o in orgs if not o["_flag"]],
        "unflagged_employer": emails("unflagged_employer"),
        "owners": {rep: emails(f"owner:{rep}")[0] for rep in ("alice", "chloe", "dev")},
        "title_edit": emails("title_edit")[0],
        "reassign": emails("reassign")[0],
        "unmapped_edit": emails("unmapped_edit")[0],
        "later": emails("later"),
    }


def _slug(name: str) -> str:
    if name in UNICODE_ORGS:
        return UNICODE_ORGS[name]
    words = name.split()
    if len(words) > 1 and words[-1] in ORG_SUFFIXES:
        words = words[:-1]           # "Blue Health AB" -> blue-health.example
    text = _ascii(" ".join(words)).lower()
    slug = "".join(c if c.isalnum() else "-" for c in text).strip("-")
    while "--" in slug:
        slug = slug.replace("--", "-")
    return slug or "org"


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().strip()
