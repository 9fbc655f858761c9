"""Reads an iCalendar object on stdin with the `icalendar` package and prints what it found as
JSON, for tests/tests/e2e/calendar.rs to check: the calendar's properties, and per VEVENT its
properties with dates and date-times told apart. Exits non-zero when the parser refuses the
input or reports errors in any component."""

import datetime
import json
import sys

import icalendar


def value(prop):
    """A property's value as JSON: dates and date-times with their kind, text as text."""
    if isinstance(prop, icalendar.prop.vDDDTypes):
        dt = prop.dt
        if isinstance(dt, datetime.datetime):
            utc = dt.tzinfo is not None and dt.utcoffset() == datetime.timedelta(0)
            return {"kind": "date-time", "utc": utc, "value": dt.strftime("%Y-%m-%dT%H:%M:%S")}
        if isinstance(dt, datetime.date):
            return {"kind": "date", "value": dt.isoformat()}
        return prop.to_ical().decode()
    if isinstance(prop, icalendar.prop.vInt):
        return int(prop)
    return str(prop)


def properties(component):
    out = {}
    for name, prop in component.property_items(recursive=False):
        if name in ("BEGIN", "END"):
            continue
        out[name] = value(component.get(name))
    # Each value parameter as the parser read it (e.g. DTSTART;VALUE=DATE).
    for name in ("DTSTART", "DTEND"):
        if name in component:
            out[name + ";VALUE"] = component[name].params.get("VALUE")
    return out


def main():
    raw = sys.stdin.buffer.read()
    calendar = icalendar.Calendar.from_ical(raw)
    errors = [(c.name, e) for c in calendar.walk() for e in getattr(c, "errors", [])]
    if errors:
        print(f"the parser reported errors: {errors}", file=sys.stderr)
        return 1
    events = [properties(e) for e in calendar.walk("VEVENT")]
    print(json.dumps({"calendar": properties(calendar), "events": events}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
