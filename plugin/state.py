"""`StateStore`: everything that must outlive a run, as JSON values in Workbooks API Data
(`automation/api_data`) under the key `<prefix>.<key>` (DESIGN §4). The keys are named in one
place, the vocabulary below (`watermark_key`, `run_keys`, …): the runner's prefetch is derived
from it, so a key a run reads cannot be left out of the one request that reads them all.
Existing names (`watermark.person`, …) are production data in every installed database: they
never change.

Writes are upserts guarded by `lock_version`: a value is updated with the lock_version we last
read, so a concurrent writer turns our write into a `TransientError` instead of a silent
overwrite. Workbooks does not make `key` unique, so a key may briefly have two rows after two
writers created it at once; the lowest id is the one that counts, everywhere.

`dry_run=True` reads but never writes: `put`/`delete` only change what later `get`s in this
process return, and the run lock is not taken (a dry run changes nothing it could race over).

The run lock (`acquire_lock`) is one API Data row holding `{"owner", "ttl", …}`:
  * free / expired / already ours → update it with the lock_version just read; of two runners
    racing, Workbooks accepts exactly one update (the other gets "updated elsewhere");
  * no row yet → create one, re-read every row with the key, and the lowest id wins; a loser
    deletes its own row;
  * expiry is the row's `updated_at` (Workbooks' clock) + ttl, the holder's own word for when
    it is provably gone (the runner's `_lock_ttl`). When the local clock says a
    foreign lock has expired, we confirm against Workbooks' clock before taking it over, by
    touching a `clock` row and reading the `updated_at` Workbooks stamps on it. A lagging local
    clock only makes us wait longer; a fast one can never steal a live lock.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from .errors import TransientError, WorkbooksError
from .workbooks import WorkbooksClient, decode_json_value, parse_datetime

ENDPOINT = "automation/api_data"
COLUMNS = ["id", "lock_version", "key", "value", "updated_at"]
# Writes that must not be lost to one fault (release_lock, put_until_saved): tries, the longest
# wait between two, and the time a try needs before the run's deadline (a read and a write;
# plugin.http starts none with < 0.5 s left).
RETRY_ATTEMPTS = 8
RETRY_BACKOFF_CAP = 4.0
RETRY_MIN_SECONDS = 1.0


# --- the key vocabulary ----------------------------------------------------------------------------
INSTALL = "install"                  # what the installer made (plugin/install.py)
TOKENS = "tokens"                    # the Outreach authorisation (plugin/oauth.py)
LOCK = "lock"                        # the run lock (below)
CLOCK = "clock"                      # a row touched to learn Workbooks' clock (server_now)
OAUTH_STATE = "oauth_state"          # authorisations in progress (plugin/authorise.py)
BUDGET = "outreach_budget"           # the Outreach budget tally before run_history held it (read only)
RUN_HISTORY = "run_history"          # the last 24 h of runs and the budget tally (plugin/history.py)
CAPABILITIES = "capabilities"        # what this database's Workbooks was proven to do


def watermark_key(kind: str) -> str:
    """Where the send scan of `kind` starts next run."""
    return f"watermark.{kind}"


def unconfirmed_key(kind: str) -> str:
    """Creates of `kind` whose outcome is unknown (plugin/sync/send/unconfirmed.py)."""
    return f"unconfirmed.{kind}"


SEQUENCE_STATES_FEED = "sequenceStates"
SEQUENCE_NAMES = "receive.sequence_names"   # sequence id → its name, read once (receive/states.py)


def receive_key(feed: str) -> str:
    """Where the receive side's read of one Outreach change feed (`prospects`, `accounts`,
    `sequenceStates`) starts next run."""
    return f"receive.{feed}"


def receive_keys(kinds: Iterable) -> list[str]:
    """The receive side's keys for these kinds: a feed per kind, the sequence-state feed and its
    names for a kind that receives sequence states."""
    kinds = list(kinds)
    keys = [receive_key(kind.outreach_plural) for kind in kinds]
    if any("sequence_states" in kind.receives for kind in kinds):
        keys += [receive_key(SEQUENCE_STATES_FEED), SEQUENCE_NAMES]
    return keys


def run_keys(kinds: Iterable) -> list[str]:
    """Every key a run of the sync reads, for the one prefetch at its start. `kinds` are
    plugin.kinds.Kind entries."""
    kinds = list(kinds)
    keys = [INSTALL, TOKENS, LOCK, RUN_HISTORY, BUDGET, CAPABILITIES]
    for kind in kinds:
        keys += [watermark_key(kind.name), unconfirmed_key(kind.name)]
    return keys + receive_keys(kinds)


@dataclass
class _Row:
    id: int
    lock_version: int
    value: Any
    text: str | None
    updated_at: dt.datetime | None


def _encode(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class StateStore:
    def __init__(self, workbooks: WorkbooksClient, *, dry_run: bool = False, prefix: str = "outreach_sync",
                 clock: Callable[[], float] = time.time) -> None:
        self.workbooks = workbooks
        self.dry_run = dry_run
        self.prefix = prefix
        self._clock = clock
        # key → the row we last read or wrote (None: known to be absent)
        self._cache: dict[str, _Row | None] = {}

    def full_key(self, key: str) -> str:
        return f"{self.prefix}.{key}"

    # --- reading -----------------------------------------------------------------------------------
    def _rows(self, key: str) -> list[_Row]:
        rows = self.workbooks.get_all(ENDPOINT, filters=[("key", "eq", self.full_key(key))],
                                      columns=COLUMNS, sort="id")
        return [self._row(r) for r in rows if r.get("key") in (None, self.full_key(key))]

    @staticmethod
    def _row(raw: dict) -> _Row:
        try:
            updated = parse_datetime(raw.get("updated_at"))
        except ValueError:
            updated = None
        text = raw.get("value")
        return _Row(int(raw["id"]), int(raw.get("lock_version") or 0),
                    None if text is None else decode_json_value(text),
                    None if text is None else str(text), updated)

    def _load(self, key: str, fresh: bool = False) -> _Row | None:
        if fresh or key not in self._cache:
            rows = self._rows(key)
            self._cache[key] = rows[0] if rows else None
        return self._cache[key]

    def get(self, key: str, default: Any = None, *, fresh: bool = False) -> Any:
        """The JSON value at `key`, or `default`. Cached after the first read (and after our own
        writes); `fresh=True` reads Workbooks again."""
        row = self._load(key, fresh)
        return default if row is None or row.value is None else row.value

    def prefetch(self, keys: Iterable[str]) -> None:
        """Read several keys in one request (an IN filter) to save requests at start-up."""
        keys = [k for k in keys]
        if not keys:
            return
        full = {self.full_key(k): k for k in keys}
        found: dict[str, _Row] = {}
        for raw in self.workbooks.get_all(ENDPOINT, filters=[("key", "eq", list(full))], columns=COLUMNS,
                                          sort="id"):
            key = full.get(raw.get("key"))
            if key is not None and key not in found:
                found[key] = self._row(raw)
        for key in keys:
            self._cache[key] = found.get(key)

    # --- writing -----------------------------------------------------------------------------------
    def put(self, key: str, value: Any, *, essential: bool = False) -> None:
        """Upsert. Raises TransientError when someone else changed the value since we read it
        (our cached lock_version is stale); the cache is dropped so a retry reads afresh.
        `essential=True` writes even in a dry run: only for a rotated Outreach refresh token,
        which would otherwise be lost (see plugin.oauth)."""
        text = _encode(value)
        if self.dry_run and not essential:
            self._cache[key] = _Row(0, 0, json.loads(text), text, None)
            return
        row = self._load(key)
        if row is not None and row.text == text:
            return  # unchanged: Workbooks would not bump lock_version anyway; save a request
        try:
            if row is None:
                result = self.workbooks.batch(ENDPOINT, [{"__method": "POST", "key": self.full_key(key),
                                                          "value": text}])[0]
            else:
                result = self.workbooks.batch(ENDPOINT, [{"__method": "PUT", "id": row.id,
                                                          "lock_version": row.lock_version, "value": text}])[0]
        except TransientError:
            self._cache.pop(key, None)      # it may have landed: the next put reads the row afresh
            raise
        if not result.ok:
            self._cache.pop(key, None)
            if result.stale:
                raise TransientError(f"state {key!r} was changed by another run meanwhile; try again")
            raise WorkbooksError(f"could not save state {key!r}: {'; '.join(result.errors)}")
        self._cache[key] = _Row(result.id or (row.id if row else 0),
                                result.lock_version if result.lock_version is not None
                                else (row.lock_version + 1 if row else 0),
                                json.loads(text), text, self._updated_at(result.affected))

    def put_until_saved(self, key: str, value: Any, *, attempts: int = RETRY_ATTEMPTS) -> None:
        """`put` for a value whose loss costs more than requests (the note of creates whose
        outcome is unknown): a transient failure is tried again (see _retrying). Safe to repeat:
        a failed `put` forgets the row, so the next try reads it afresh and stops there if the
        write whose answer was lost did land."""
        self._retrying(lambda: self.put(key, value), attempts)

    def _retrying(self, attempt_once: Callable[[], None], attempts: int) -> None:
        """Call `attempt_once` until it does not raise TransientError: with backoff (0.25 s
        doubling to 4 s, at most `attempts` tries) while the run's deadline leaves room for a
        read and a write. The deadline alone decides, not a fixed reserve: a run that stopped
        for time has only its stop margin left, and every request is clipped to the deadline
        anyway (plugin.http), with the exit reserve beyond it."""
        deadline = getattr(getattr(self.workbooks, "http", None), "deadline", None)
        for attempt in range(attempts):
            try:
                attempt_once()
                return
            except TransientError:
                wait = min(RETRY_BACKOFF_CAP, 0.25 * 2 ** attempt)
                left = deadline.remaining() if deadline is not None else math.inf
                if attempt + 1 >= attempts or left - wait < RETRY_MIN_SECONDS:
                    raise
                time.sleep(wait)

    def delete(self, key: str) -> None:
        """Remove every row of `key` (there may be leftovers of a create race)."""
        if self.dry_run:
            self._cache[key] = None
            return
        rows = self._rows(key)
        if rows:
            results = self.workbooks.delete(ENDPOINT, [{"id": r.id, "lock_version": r.lock_version} for r in rows])
            failed = [r for r in results if not r.ok]
            if failed:
                self._cache.pop(key, None)
                raise TransientError(f"could not delete state {key!r}: "
                                     f"{'; '.join(e for r in failed for e in r.errors)}")
        self._cache[key] = None

    @staticmethod
    def _updated_at(affected: dict) -> dt.datetime | None:
        try:
            return parse_datetime(affected.get("updated_at")) if affected else None
        except ValueError:
            return None

    def latest_stamp(self) -> dt.datetime | None:
        """The latest `updated_at` Workbooks stamped on a state row this process read or wrote
        (the run lock's, when held): its clock has reached at least this."""
        stamps = [row.updated_at for row in self._cache.values() if row is not None and row.updated_at]
        return max(stamps, default=None)

    # --- the run lock ------------------------------------------------------------------------------
    def acquire_lock(self, owner: str, ttl_seconds: int) -> bool:
        """Take the run lock for `ttl_seconds` (calling it again as the owner extends it).
        True when we hold it; False when another live owner does or won the race."""
        if self.dry_run:
            return True
        value = {"owner": owner, "ttl": int(ttl_seconds),
                 "acquired_at": dt.datetime.fromtimestamp(self._clock(), dt.timezone.utc).isoformat(),
                 "expires_at": int(self._clock() + ttl_seconds)}
        text = _encode(value)
        rows = self._rows(LOCK)
        if not rows:
            created = self.workbooks.batch(ENDPOINT, [{"__method": "POST", "key": self.full_key(LOCK),
                                                       "value": text}])[0]
            if not created.ok or not created.id:
                raise TransientError("could not create the run lock: " + "; ".join(created.errors))
            rows = self._rows(LOCK)
            if rows and rows[0].id == created.id:
                self._cache[LOCK] = rows[0]
                return True
            # Lost the create race: the lowest id belongs to someone else. Remove ours.
            mine = [r for r in rows if r.id == created.id]
            if mine:
                self._quiet_delete(mine)
            self._cache.pop(LOCK, None)
            return False

        row, extra = rows[0], rows[1:]
        current = row.value if isinstance(row.value, dict) else {}
        holder = current.get("owner")
        if holder and holder != owner and not self._expired(row, current):
            self._cache[LOCK] = row
            return False
        result = self.workbooks.batch(ENDPOINT, [{"__method": "PUT", "id": row.id,
                                                  "lock_version": row.lock_version, "value": text}])[0]
        if result.ok:
            self._cache[LOCK] = _Row(row.id, result.lock_version if result.lock_version is not None
                                       else row.lock_version + 1, value, text,
                                       self._updated_at(result.affected))
            # Leftover rows of an old create race whose loser crashed before deleting its row.
            self._quiet_delete(extra)
            return True
        self._cache.pop(LOCK, None)
        if result.stale:
            return False
        raise TransientError("could not take the run lock: " + "; ".join(result.errors))

    def release_lock(self, owner: str, *, attempts: int = RETRY_ATTEMPTS) -> None:
        """Free the lock if (and only if) `owner` holds it. A conflict means someone took over
        an expired lock meanwhile: theirs now, nothing to release.

        A lock left behind blocks every run until its TTL, so a fault must not cost that: tried
        again (_retrying). A release whose answer was lost is found done on the re-read; one
        that never arrived is sent again."""
        if self.dry_run:
            return
        self._retrying(lambda: self._release_once(owner), attempts)

    def _release_once(self, owner: str) -> None:
        rows = self._rows(LOCK)
        if not rows:
            return
        row = rows[0]
        current = row.value if isinstance(row.value, dict) else {}
        if current.get("owner") != owner:
            return
        released = {"owner": None, "released_by": owner,
                    "released_at": dt.datetime.fromtimestamp(self._clock(), dt.timezone.utc).isoformat()}
        result = self.workbooks.batch(ENDPOINT, [{"__method": "PUT", "id": row.id,
                                                  "lock_version": row.lock_version, "value": _encode(released)}])[0]
        self._cache.pop(LOCK, None)
        if not result.ok and not result.stale:
            raise TransientError("could not release the run lock: " + "; ".join(result.errors))

    def lock_holder(self) -> dict | None:
        """The current lock value (owner, ttl, …) or None when free; for status pages and logs."""
        rows = self._rows(LOCK)
        if not rows or not isinstance(rows[0].value, dict) or not rows[0].value.get("owner"):
            return None
        return rows[0].value

    def _expired(self, row: _Row, current: dict) -> bool:
        ttl = current.get("ttl")
        if row.updated_at is not None and isinstance(ttl, (int, float)):
            expires = row.updated_at.timestamp() + ttl
        elif isinstance(current.get("expires_at"), (int, float)):
            expires = float(current["expires_at"])
        else:
            return True  # a lock nobody can interpret is not worth waiting for
        if self._clock() < expires:
            return False
        server_now = self.server_now()
        return server_now is None or server_now >= expires

    def server_now(self) -> float | None:
        """Workbooks' current time (epoch), read from the `updated_at` it stamps on a tiny
        `clock` row we touch; None when it cannot be learned (then local time decides)."""
        if self.dry_run:
            return None
        for _attempt in range(2):  # a second runner probing at the same moment makes one stale
            try:
                self.put(CLOCK, {"probe": self._clock()})
                break
            except TransientError:
                continue
            except WorkbooksError:
                return None
        else:
            return None
        row = self._cache.get(CLOCK)
        if row is not None and row.updated_at is None:
            fresh = self._load(CLOCK, fresh=True)
            return fresh.updated_at.timestamp() if fresh and fresh.updated_at else None
        return row.updated_at.timestamp() if row and row.updated_at else None

    def _quiet_delete(self, rows: list[_Row]) -> None:
        if not rows:
            return
        try:
            self.workbooks.delete(ENDPOINT, [{"id": r.id, "lock_version": r.lock_version} for r in rows])
        except (TransientError, WorkbooksError):
            pass  # harmless leftovers: the lowest id is what counts
