"""The scenarios: what wrk sends (bench/wrk/scenario.lua), on which database, and which
native scenario each one is compared with. The floor serves every scenario itself."""

from __future__ import annotations

from dataclasses import dataclass

# A title search no seeded or benchmark-created event matches (titles are "Event N", "Bench
# event N", "Patched N", "Replaced N", "Counted N", "Notified N", "Doomed N"): the list comes back
# empty.
NO_MATCH = "no-event-has-this-title"


@dataclass(frozen=True)
class Scenario:
    name: str
    # wrk mode: get (GET /events/{random id}), list (GET path), post, put and patch (random ids),
    # delete (each id of a pool seeded for the run once), mix (80% get, 20% post).
    mode: str
    # The request path of list scenarios (list_deep_scale's is found at run time).
    path: str | None
    # "mix": the 10,000-event database each server has a copy of; "scale": the shared
    # 1,000,000-event database (read only).
    database: str
    # The native scenario for app ÷ native, None when native has no counterpart.
    native: str | None
    description: str

    @property
    def deletes(self) -> bool:
        """Each request deletes an event of a pool seeded for the run (bench/driver/seed.py)."""
        return self.mode == "delete"

    @property
    def writes(self) -> bool:
        return self.mode in ("post", "put", "patch", "delete", "mix")

    @property
    def shown_path(self) -> str:
        return self.path or ("/events/{id}" if self.mode in ("get", "put", "patch", "delete") else "/events")


SCENARIOS = {s.name: s for s in (
    Scenario("get_by_id", "get", None, "mix", "get_by_id", "GET /events/{id}, random ids of the seeded events"),
    Scenario("list_first", "list", "/events?limit=50", "mix", "list_first", "GET /events?limit=50, the first page"),
    Scenario("list_empty", "list", f"/events?limit=50&q={NO_MATCH}", "mix", "list_empty",
             "GET /events?limit=50&q=..., a title search that matches nothing (an empty list)"),
    Scenario("post", "post", None, "mix", "post",
             "POST /events (app: one webhook subscriber when notify-fn offers subscriptions; floor: a plain "
             "insert, with --floor outbox and its notification row; native: a plain insert)"),
    Scenario("put", "put", None, "mix", "post",
             "PUT /events/{id}, every field, random ids (floor: a plain update of every field, with --floor "
             "outbox and its notification row; native has no PUT: ratio to its plain insert)"),
    Scenario("patch", "patch", None, "mix", "post",
             "PATCH /events/{id}, merge patch of the title, random ids (floor: a plain update, with --floor "
             "outbox and its notification row; native has no PATCH: ratio to its plain insert)"),
    Scenario("delete", "delete", None, "mix", "post",
             "DELETE /events/{id}, each of a pool of events seeded for the run (dated 2099, so no list "
             "sees them) deleted once (floor: a plain delete, with --floor outbox and its notification row; "
             "native has no DELETE: ratio to its plain insert)"),
    Scenario("mix_80_20", "mix", None, "mix", "mix_80_20", "80% GET /events/{id}, 20% POST /events"),
    Scenario("list_first_scale", "list", "/events?limit=50", "scale", "list_first_scale",
             "GET /events?limit=50, first page of the scale database"),
    Scenario("list_deep_scale", "list", None, "scale", "list_deep_scale",
             "GET /events?limit=50&cursor=..., a page at the end of the scale database (real cursor from a "
             "Link header)"),
)}

# How the results name the floor each `--floor` runs (the chart's title, the targets' names).
FLOOR_NAMES = {"plain": "floor", "outbox": "floor with outbox"}

MIX = [name for name, s in SCENARIOS.items() if s.database == "mix"]
SCALE = [name for name, s in SCENARIOS.items() if s.database == "scale"]
# What bench/native serves: no PATCH.
NATIVE_MIX = [name for name in MIX if SCENARIOS[name].native == name]
# Native with Spin's pool policy (full runs): a read and a write are enough to split the cost.
NATIVE_SPINPOOL = ["get_by_id", "post"]

# Not a load scenario: "one bad endpoint among N" (bench/driver/isolation.py), run on an app of
# its own; `--scenarios isolation` runs it (alone or with others).
ISOLATION = "isolation"
