//! Calendars (issue 15) through the compiled event-fn on devhost: the time fields of events
//! (every validation rule, daylight-saving edges in two zones, round trips through create, GET,
//! PUT, PATCH, the notification and the feed) and the iCalendar calendars (`GET /events.ics`,
//! feeds behind a secret URL), read back with a real iCalendar parser: Python's `icalendar`,
//! pinned in tests/calendar/requirements.txt and installed into target/calendar-venv on first
//! use.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use anyhow::{Context, Result, anyhow, ensure};
use e2e::{App, HttpResponse, TestResult, assert_problem};
use serde_json::{Value, json};

const JSON: [(&str, &str); 1] = [("content-type", "application/json")];

/// The Python of a venv with the pinned parser, installed once per test run (again when
/// requirements.txt changes).
fn parser_python() -> Result<PathBuf> {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PYTHON
        .get_or_init(|| install_parser().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!("installing the iCalendar parser: {e}"))
}

fn install_parser() -> Result<PathBuf> {
    let root = e2e::workspace_root();
    let requirements = root.join("tests/calendar/requirements.txt");
    let venv = root.join("target/calendar-venv");
    let python = venv.join("bin/python");
    let installed = venv.join("requirements.txt");
    let wanted = std::fs::read(&requirements)?;
    if python.exists() && std::fs::read(&installed).ok().as_ref() == Some(&wanted) {
        return Ok(python);
    }
    let _ = std::fs::remove_dir_all(&venv);
    run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    run(Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(&requirements))?;
    std::fs::write(&installed, wanted)?;
    Ok(python)
}

fn run(command: &mut Command) -> Result<()> {
    let output = command.output().with_context(|| format!("{command:?}"))?;
    ensure!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// The calendar as `icalendar` reads it: `{"calendar": {...}, "events": [{...}]}`.
fn parse(ics: &str) -> Result<Value> {
    let script = e2e::workspace_root().join("tests/calendar/parse_ics.py");
    let mut child = Command::new(parser_python()?)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    std::io::Write::write_all(child.stdin.as_mut().context("stdin")?, ics.as_bytes())?;
    drop(child.stdin.take());
    let output = child.wait_with_output()?;
    ensure!(
        output.status.success(),
        "icalendar refused the calendar: {}\n{ics}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(serde_json::from_slice(&output.stdout)?)
}

/// What RFC 5545 asks of the text itself, whichever parser reads it: CRLF only, no physical
/// line over 75 octets, continuation lines starting with a space.
fn assert_content_lines(ics: &str) -> Result<()> {
    let body = ics
        .strip_suffix("\r\n")
        .context("the calendar does not end with CRLF")?;
    ensure!(
        !body.replace("\r\n", "").contains(['\r', '\n']),
        "a bare CR or LF"
    );
    for line in body.split("\r\n") {
        ensure!(line.len() <= 75, "{} octets: {line:?}", line.len());
    }
    Ok(())
}

/// The one event of a parsed calendar with `uid`.
fn event_of<'a>(calendar: &'a Value, uid: &str) -> Result<&'a Value> {
    calendar["events"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["UID"] == uid)
        .with_context(|| format!("no event {uid} in {calendar}"))
}

fn uid(event: &Value) -> String {
    format!("event-{}@event-management", event["id"])
}

fn uids(calendar: &Value) -> Vec<String> {
    calendar["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["UID"].as_str().map(str::to_owned))
        .collect()
}

fn created(app: &App, body: Value) -> Result<Value> {
    let response = app.post(&body)?;
    ensure!(response.status == 201, "{} {}", response.status, response.body);
    response.json()
}

fn write(app: &App, method: &str, event: &Value, body: Value) -> Result<HttpResponse> {
    app.send(
        method,
        &format!("/events/{}", event["id"]),
        &JSON,
        Some(&body.to_string()),
    )
}

/// Creates a feed with `filter`: its id and the path of its calendar.
fn feed(app: &App, filter: Value) -> Result<(i64, String)> {
    let response = app.send("POST", "/feeds", &JSON, Some(&filter.to_string()))?;
    ensure!(response.status == 201, "{} {}", response.status, response.body);
    let feed = response.json()?;
    let url = feed["url"].as_str().context("url")?.to_owned();
    Ok((feed["id"].as_i64().context("id")?, url))
}

/// A feed's calendar, fetched as a calendar app does: without a token.
fn subscribe(app: &App, path: &str, if_none_match: Option<&str>) -> Result<HttpResponse> {
    let mut request = app.devhost.request("GET", path);
    if let Some(tag) = if_none_match {
        request = request.header("if-none-match", tag);
    }
    HttpResponse::send(request)
}

fn calendar_of(response: &HttpResponse) -> Result<Value> {
    ensure!(response.status == 200, "{} {}", response.status, response.body);
    ensure!(
        response.header("content-type") == Some("text/calendar; charset=utf-8"),
        "content type {:?}",
        response.header("content-type")
    );
    assert_content_lines(&response.body)?;
    parse(&response.body)
}

#[e2e::test]
fn every_time_rule_is_a_400_naming_the_field() -> TestResult {
    let app = App::start()?;
    let at = |fields: Value| {
        let mut body = json!({"title": "t", "date": "2025-06-02"});
        body.as_object_mut()
            .into_iter()
            .for_each(|b| b.extend(fields.as_object().cloned().unwrap_or_default()));
        body
    };
    let berlin = |start: &str| json!({"start_time": start, "time_zone": "Europe/Berlin"});
    let cases: Vec<(Value, &str)> = vec![
        // Each field on its own.
        (
            at(json!({"start_time": "25:00", "time_zone": "UTC"})),
            "start_time",
        ),
        (
            at(json!({"start_time": "12:60", "time_zone": "UTC"})),
            "start_time",
        ),
        (
            at(json!({"start_time": "12:00:60", "time_zone": "UTC"})),
            "start_time",
        ),
        (at(json!({"start_time": "9am", "time_zone": "UTC"})), "start_time"),
        (at(json!({"start_time": 900, "time_zone": "UTC"})), "start_time"),
        (
            at(json!({"start_time": "09:00", "end_time": "24:00", "time_zone": "UTC"})),
            "end_time",
        ),
        (
            at(json!({"start_time": "09:00", "time_zone": "Mars/Olympus_Mons"})),
            "time_zone",
        ),
        (
            at(json!({"start_time": "09:00", "time_zone": "CET-1CEST,M3.5.0,M10.5.0/3"})),
            "time_zone",
        ),
        (at(json!({"end_date": "2025-06-31"})), "end_date"),
        // The rules between them.
        (at(json!({"start_time": "09:00"})), "time_zone"),
        (at(json!({"time_zone": "Europe/Berlin"})), "time_zone"),
        (at(json!({"end_time": "10:00"})), "end_time"),
        (
            at(json!({"start_time": "10:00", "end_time": "09:00", "time_zone": "UTC"})),
            "end_time",
        ),
        (
            at(json!({"start_time": "10:00", "end_time": "10:00", "time_zone": "UTC"})),
            "end_time",
        ),
        (at(json!({"end_date": "2025-06-01"})), "end_date"),
        (
            at(json!({"start_time": "10:00", "time_zone": "UTC", "end_date": "2025-06-03"})),
            "end_time",
        ),
        // A local time the clocks skip.
        (
            json!({"title": "t", "date": "2025-03-30", "start_time": "02:30", "time_zone": "Europe/Berlin"}),
            "start_time",
        ),
        (
            json!({"title": "t", "date": "2025-03-09", "start_time": "01:00", "end_time": "02:15",
                   "time_zone": "America/New_York"}),
            "end_time",
        ),
    ];
    let existing = created(&app, at(berlin("09:00")))?;
    for (body, field) in &cases {
        let problem =
            assert_problem(&app.post(body)?, 400, &[field]).with_context(|| format!("POST {body}"))?;
        ensure!(
            problem["errors"][0]["detail"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{problem}"
        );
        // PUT checks the same way.
        assert_problem(&write(&app, "PUT", &existing, body.clone())?, 400, &[field])
            .with_context(|| format!("PUT {body}"))?;
    }
    let skipped =
        json!({"title": "t", "date": "2025-03-30", "start_time": "02:30", "time_zone": "Europe/Berlin"});
    let skipped = assert_problem(&app.post(&skipped)?, 400, &["start_time"])?;
    let reason = skipped["errors"][0]["detail"].as_str().unwrap_or_default();
    ensure!(
        reason.contains("does not exist") && reason.contains("Europe/Berlin"),
        "{reason}"
    );
    // PATCH checks the event it makes: each field valid alone, the merge not.
    let patches: Vec<(Value, &str)> = vec![
        (json!({"time_zone": null}), "time_zone"),
        (json!({"start_time": null}), "time_zone"),
        (json!({"end_time": "08:00"}), "end_time"),
        (json!({"end_date": "2025-06-01"}), "end_date"),
        (json!({"date": "2025-03-30", "start_time": "02:00"}), "start_time"),
        (json!({"start_time": "31:00"}), "start_time"),
        (json!({"time_zone": "Europe/Nowhere"}), "time_zone"),
    ];
    for (body, field) in &patches {
        assert_problem(&write(&app, "PATCH", &existing, body.clone())?, 400, &[field])
            .with_context(|| format!("PATCH {body}"))?;
    }
    // A moved date checks the kept time: 02:30 exists on 2025-06-02, not on 2025-03-30.
    write(&app, "PATCH", &existing, json!({"start_time": "02:30"}))?;
    assert_problem(
        &write(&app, "PATCH", &existing, json!({"date": "2025-03-30"}))?,
        400,
        &["start_time"],
    )?;
    assert_eq!(app.count("events")?, 1);
    let kept = app.get(&format!("/events/{}", existing["id"]))?.json()?;
    assert_eq!(
        (&kept["date"], &kept["start_time"], &kept["time_zone"]),
        (&json!("2025-06-02"), &json!("02:30"), &json!("Europe/Berlin"))
    );
    Ok(())
}

#[e2e::test]
fn daylight_saving_edges_in_two_zones() -> TestResult {
    let app = App::start()?;
    let event = |date: &str, start: &str, end: Option<&str>, zone: &str| {
        let mut body = json!({"title": format!("{zone} {date} {start}"), "date": date,
                              "start_time": start, "time_zone": zone});
        if let Some(end) = end {
            body["end_time"] = json!(end);
        }
        app.post(&body)
    };
    // Skipped hours: Berlin 02:00-03:00 on 2025-03-30, New York 02:00-03:00 on 2025-03-09.
    for (date, zone) in [
        ("2025-03-30", "Europe/Berlin"),
        ("2025-03-09", "America/New_York"),
    ] {
        for start in ["02:00", "02:30", "02:59:59"] {
            assert_problem(&event(date, start, None, zone)?, 400, &["start_time"])
                .with_context(|| format!("{zone} {date} {start}"))?;
        }
        // Either side of the gap exists.
        for start in ["01:59:59", "03:00"] {
            let response = event(date, start, None, zone)?;
            ensure!(response.status == 201, "{zone} {start}: {}", response.body);
        }
    }
    // Repeated hours take the earlier instant: Berlin 02:30 on 2025-10-26 is 00:30Z (CEST),
    // not 01:30Z; New York 01:30 on 2025-11-02 is 05:30Z (EDT), not 06:30Z.
    let berlin = event("2025-10-26", "02:30", Some("03:30"), "Europe/Berlin")?.json()?;
    let new_york = event("2025-11-02", "01:30", Some("01:45"), "America/New_York")?.json()?;
    assert_eq!(berlin["start_time"], "02:30");
    let (_, path) = feed(&app, json!({"from": "2025-01-01"}))?;
    let calendar = calendar_of(&subscribe(&app, &path, None)?)?;
    let instants = |event: &Value| -> Result<(Value, Value)> {
        let parsed = event_of(&calendar, &uid(event))?;
        Ok((parsed["DTSTART"].clone(), parsed["DTEND"].clone()))
    };
    let utc = |at: &str| json!({"kind": "date-time", "utc": true, "value": at});
    assert_eq!(
        instants(&berlin)?,
        (utc("2025-10-26T00:30:00"), utc("2025-10-26T02:30:00"))
    );
    assert_eq!(
        instants(&new_york)?,
        (utc("2025-11-02T05:30:00"), utc("2025-11-02T05:45:00"))
    );
    // The instants just after each gap.
    let after_gap = |title: &str| -> Result<Value> {
        let event = calendar["events"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["SUMMARY"] == title)
            .with_context(|| format!("no {title}"))?;
        Ok(event["DTSTART"].clone())
    };
    assert_eq!(
        after_gap("Europe/Berlin 2025-03-30 03:00")?,
        utc("2025-03-30T01:00:00")
    );
    assert_eq!(
        after_gap("America/New_York 2025-03-09 03:00")?,
        utc("2025-03-09T07:00:00")
    );
    Ok(())
}

#[e2e::test]
fn all_day_and_timed_events_round_trip() -> TestResult {
    let app = App::start()?;
    let all_day = created(
        &app,
        json!({"title": "Offsite", "date": "2026-05-04", "end_date": "2026-05-06"}),
    )?;
    let timed = created(
        &app,
        json!({"title": "Weekly Meeting", "date": "2026-05-04", "start_time": "09:30",
               "end_time": "10:15:30", "time_zone": "Europe/Berlin"}),
    )?;
    let plain = created(&app, json!({"title": "Plain", "date": "2026-05-05"}))?;
    assert_eq!(
        (
            &all_day["start_time"],
            &all_day["time_zone"],
            &all_day["end_date"]
        ),
        (&Value::Null, &Value::Null, &json!("2026-05-06"))
    );
    assert_eq!(
        (
            &timed["start_time"],
            &timed["end_time"],
            &timed["time_zone"],
            &timed["end_date"]
        ),
        (
            &json!("09:30"),
            &json!("10:15:30"),
            &json!("Europe/Berlin"),
            &Value::Null
        )
    );
    for member in ["start_time", "end_time", "time_zone", "end_date"] {
        ensure!(
            plain.get(member) == Some(&Value::Null),
            "{member} of an all-day event: {plain}"
        );
    }
    for event in [&all_day, &timed] {
        assert_eq!(&app.get(&format!("/events/{}", event["id"]))?.json()?, event);
    }
    // The list shows them, and its date filters still work on date.
    let listed = app.get("/events?from=2026-05-04&to=2026-05-04")?.json()?;
    assert_eq!(listed, json!([all_day, timed]));

    // Every state of the timed event, in order: what its notifications must carry.
    let mut states = vec![timed.clone()];
    let mut change = |method: &str, body: Value| -> Result<Value> {
        let response = write(&app, method, &timed, body.clone())?;
        ensure!(
            response.status == 200,
            "{method} {body}: {} {}",
            response.status,
            response.body
        );
        let event = response.json()?;
        states.push(event.clone());
        Ok(event)
    };
    // PUT replaces: the time fields it leaves out are gone, those it sends are set.
    let replaced = change("PUT", json!({"title": "Weekly Meeting", "date": "2026-05-11"}))?;
    assert_eq!(
        (
            &replaced["start_time"],
            &replaced["end_time"],
            &replaced["time_zone"]
        ),
        (&Value::Null, &Value::Null, &Value::Null)
    );
    let replaced = change(
        "PUT",
        json!({"title": "Night shift", "date": "2026-05-11", "start_time": "22:00",
               "end_time": "06:00", "end_date": "2026-05-12", "time_zone": "America/New_York"}),
    )?;
    assert_eq!(replaced["end_date"], "2026-05-12");
    // PATCH merges: absent fields stay, null clears, the merge is checked as a whole.
    let patched = change("PATCH", json!({"time_zone": "Asia/Tokyo"}))?;
    assert_eq!(
        (
            &patched["start_time"],
            &patched["end_date"],
            &patched["time_zone"]
        ),
        (&json!("22:00"), &json!("2026-05-12"), &json!("Asia/Tokyo"))
    );
    let patched = change("PATCH", json!({"end_time": null, "end_date": null}))?;
    assert_eq!(
        (&patched["end_time"], &patched["end_date"]),
        (&Value::Null, &Value::Null)
    );
    let all_day_again = change(
        "PATCH",
        json!({"start_time": null, "time_zone": null, "title": "Back to all day"}),
    )?;
    assert_eq!(
        (
            &all_day_again["start_time"],
            &all_day_again["time_zone"],
            &all_day_again["title"]
        ),
        (&Value::Null, &Value::Null, &json!("Back to all day"))
    );
    let timed = change(
        "PATCH",
        json!({"start_time": "18:00", "end_time": "19:00", "time_zone": "Europe/Berlin"}),
    )?;
    assert_eq!(timed["date"], "2026-05-11");
    assert_eq!(app.get(&format!("/events/{}", timed["id"]))?.json()?, timed);
    // A title-only patch keeps the times.
    let all_day = write(&app, "PATCH", &all_day, json!({"title": "Offsite 2026"}))?.json()?;
    assert_eq!(all_day["end_date"], "2026-05-06");

    // The notifications carry the event as the API showed it after each change.
    let notifications = app
        .get(&format!("/notifications?event_id={}", timed["id"]))?
        .json()?;
    let data: Vec<Value> = notifications
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| n["data"].clone())
        .collect();
    assert_eq!(data, states);

    // And the feed shows both as a calendar app should.
    let (_, path) = feed(&app, json!({}))?;
    let calendar = calendar_of(&subscribe(&app, &path, None)?)?;
    let day = |at: &str| json!({"kind": "date", "value": at});
    let utc = |at: &str| json!({"kind": "date-time", "utc": true, "value": at});
    let parsed = event_of(&calendar, &uid(&all_day))?;
    assert_eq!(
        (
            &parsed["DTSTART"],
            &parsed["DTEND"],
            &parsed["DTSTART;VALUE"],
            &parsed["DTEND;VALUE"]
        ),
        (
            &day("2026-05-04"),
            &day("2026-05-07"),
            &json!("DATE"),
            &json!("DATE")
        )
    );
    assert_eq!(parsed["SUMMARY"], "Offsite 2026");
    let parsed = event_of(&calendar, &uid(&timed))?;
    assert_eq!(
        (&parsed["DTSTART"], &parsed["DTEND"]),
        (&utc("2026-05-11T16:00:00"), &utc("2026-05-11T17:00:00"))
    );
    assert_eq!(parsed["SEQUENCE"], 6);
    let parsed = event_of(&calendar, &uid(&plain))?;
    assert_eq!(
        (&parsed["DTSTART"], &parsed["DTEND"]),
        (&day("2026-05-05"), &day("2026-05-06"))
    );
    Ok(())
}

#[e2e::test]
fn a_feed_is_rfc_5545_as_a_parser_reads_it() -> TestResult {
    let app = App::start()?;
    // 100 four-byte characters: 400 octets of title, folded many times.
    let long_title: String = "😀é€".repeat(34).chars().take(100).collect();
    let tricky = "a; b, c\\ d\nsecond line\r\nthird";
    let long = created(&app, json!({"title": long_title, "date": "2026-03-01"}))?;
    let escaped = created(
        &app,
        json!({"title": "Semi; colon, comma \\ backslash", "description": tricky, "date": "2026-03-02",
               "start_time": "09:00", "end_time": "10:00", "time_zone": "Europe/Berlin"}),
    )?;
    let doomed = created(&app, json!({"title": "Doomed", "date": "2026-03-03"}))?;

    let created_feed = app.send("POST", "/feeds", &JSON, Some(r#"{"from": "2026-01-01"}"#))?;
    assert_eq!(created_feed.status, 201, "{}", created_feed.body);
    let body = created_feed.json()?;
    let path = body["url"].as_str().context("url")?.to_owned();
    let secret = path
        .strip_prefix("/feeds/")
        .and_then(|p| p.strip_suffix(".ics"))
        .context("url shape")?
        .to_owned();
    // At least 128 bits: 43 base64url characters are 256.
    ensure!(
        secret.len() >= 22
            && secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{secret}"
    );
    assert_eq!(body["from"], "2026-01-01");
    // Stored hashed: the table has its SHA-256, never the secret.
    assert_eq!(
        app.sql(&format!(
            "SELECT count(*) FROM feeds WHERE secret_sha256 = encode(sha256(convert_to('{secret}', 'UTF8')), 'hex')"
        ))?,
        "1"
    );
    assert_eq!(
        app.sql(&format!(
            "SELECT count(*) FROM feeds f WHERE row_to_json(f)::text LIKE '%{secret}%'"
        ))?,
        "0"
    );
    // Listed without the secret.
    let listed = app.get("/feeds")?.json()?;
    ensure!(!listed.to_string().contains(&secret), "{listed}");
    assert_eq!(listed[0]["id"], body["id"]);
    ensure!(listed[0].get("url").is_none(), "{listed}");

    let first = subscribe(&app, &path, None)?;
    let etag = first.header("etag").context("etag")?.to_owned();
    let calendar = calendar_of(&first)?;
    let head = &calendar["calendar"];
    assert_eq!(head["VERSION"], "2.0");
    ensure!(head["PRODID"].as_str().is_some_and(|p| !p.is_empty()), "{head}");
    assert_eq!(head["CALSCALE"], "GREGORIAN");
    assert_eq!(head["METHOD"], "PUBLISH");
    ensure!(
        head["X-WR-CALNAME"].as_str().is_some_and(|n| !n.is_empty()),
        "{head}"
    );
    ensure!(head["NAME"].as_str().is_some_and(|n| !n.is_empty()), "{head}");
    ensure!(head.get("X-EVENT-MANAGEMENT-TRUNCATED").is_none(), "{head}");
    assert_eq!(uids(&calendar), [uid(&long), uid(&escaped), uid(&doomed)]);
    let utc_of = |rfc3339: &Value| -> Value {
        let text = rfc3339.as_str().unwrap_or_default();
        json!({"kind": "date-time", "utc": true, "value": &text[..19]})
    };
    for (event, parsed) in [&long, &escaped, &doomed]
        .into_iter()
        .map(|e| (e, event_of(&calendar, &uid(e))))
    {
        let parsed = parsed?;
        assert_eq!(parsed["SUMMARY"], event["title"]);
        assert_eq!(parsed["CREATED"], utc_of(&event["created_at"]));
        assert_eq!(parsed["LAST-MODIFIED"], utc_of(&event["updated_at"]));
        assert_eq!(parsed["DTSTAMP"], utc_of(&event["updated_at"]));
        assert_eq!(parsed["SEQUENCE"], 0);
    }
    // Escaping: the parser gives back exactly what was sent (its line breaks as \n).
    let parsed = event_of(&calendar, &uid(&escaped))?;
    assert_eq!(parsed["DESCRIPTION"], "a; b, c\\ d\nsecond line\nthird");
    ensure!(
        first
            .body
            .contains("SUMMARY:Semi\\; colon\\, comma \\\\ backslash\r\n"),
        "{}",
        first.body
    );
    ensure!(first.body.contains("\\nsecond line\\nthird"), "{}", first.body);
    // Folding: the long title spans several physical lines, none splits a character (the body
    // is a Rust string, so valid UTF-8 line by line), and the parser joins them again.
    let summary_lines = first
        .body
        .split("\r\n")
        .skip_while(|l| !l.starts_with(&format!("SUMMARY:{}", &long_title[..4])))
        .take_while(|l| l.starts_with("SUMMARY:") || l.starts_with(' '))
        .count();
    let octets = "SUMMARY:".len() + long_title.len();
    ensure!(
        summary_lines > octets / 75,
        "{summary_lines} lines for {octets} octets"
    );

    // Unchanged: the same ETag, and 304 on If-None-Match.
    let again = subscribe(&app, &path, Some(&etag))?;
    assert_eq!((again.status, again.body.as_str()), (304, ""));
    assert_eq!(again.header("etag"), Some(etag.as_str()));
    assert_eq!(subscribe(&app, &path, None)?.body, first.body);

    // An update: SEQUENCE goes up, LAST-MODIFIED follows, the ETag changes.
    let updated = write(&app, "PATCH", &escaped, json!({"start_time": "09:30"}))?.json()?;
    write(&app, "PATCH", &escaped, json!({"title": "Renamed"}))?;
    let changed = subscribe(&app, &path, Some(&etag))?;
    ensure!(
        changed.header("etag") != Some(etag.as_str()),
        "the ETag did not change"
    );
    let calendar = calendar_of(&changed)?;
    let parsed = event_of(&calendar, &uid(&escaped))?;
    assert_eq!(parsed["SEQUENCE"], 2);
    assert_eq!(parsed["SUMMARY"], "Renamed");
    assert_eq!(parsed["DTSTART"]["value"], "2026-03-02T08:30:00");
    assert_eq!(parsed["CREATED"], utc_of(&escaped["created_at"]));
    ensure!(parsed["LAST-MODIFIED"]["value"].as_str() >= utc_of(&updated["updated_at"])["value"].as_str());

    // A deleted event is gone.
    let deleted = app.send("DELETE", &format!("/events/{}", doomed["id"]), &[], None)?;
    assert_eq!(deleted.status, 204);
    let calendar = calendar_of(&subscribe(&app, &path, None)?)?;
    assert_eq!(uids(&calendar), [uid(&long), uid(&escaped)]);

    // Revoked: 404 at once; an unknown secret too, and the feed path takes no other method.
    let revoked = app.send("DELETE", &format!("/feeds/{}", body["id"]), &[], None)?;
    assert_eq!(revoked.status, 204);
    assert_problem(&subscribe(&app, &path, None)?, 404, &[])?;
    assert_problem(
        &app.send("DELETE", &format!("/feeds/{}", body["id"]), &[], None)?,
        404,
        &[],
    )?;
    let unknown = format!("/feeds/{}.ics", "A".repeat(43));
    assert_problem(&subscribe(&app, &unknown, None)?, 404, &[])?;
    assert_problem(&subscribe(&app, "/feeds/short.ics", None)?, 404, &[])?;
    let post = HttpResponse::send(app.devhost.request("POST", &unknown))?;
    assert_problem(&post, 405, &[])?;
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    assert_eq!(app.get("/feeds")?.json()?, json!([]));
    Ok(())
}

#[e2e::test]
fn events_ics_takes_the_filters_of_events() -> TestResult {
    let app = App::start()?;
    let standup = created(&app, json!({"title": "Standup", "date": "2026-04-01"}))?;
    let review = created(&app, json!({"title": "Review", "date": "2026-04-02"}))?;
    let later = created(&app, json!({"title": "Standup again", "date": "2026-05-01"}))?;
    // Like the rest of the API: a token is needed.
    let anonymous = HttpResponse::send(app.devhost.request("GET", "/events.ics"))?;
    assert_problem(&anonymous, 401, &[])?;
    let all = calendar_of(&app.get("/events.ics")?)?;
    assert_eq!(uids(&all), [uid(&standup), uid(&review), uid(&later)]);
    let filtered = calendar_of(&app.get("/events.ics?q=standup&from=2026-04-01&to=2026-04-30")?)?;
    assert_eq!(uids(&filtered), [uid(&standup)]);
    let listed = app
        .get("/events?q=standup&from=2026-04-01&to=2026-04-30")?
        .json()?;
    assert_eq!(listed, json!([standup]));
    assert_problem(&app.get("/events.ics?from=2026-02-30")?, 400, &["from"])?;
    assert_problem(
        &app.get("/events.ics?from=2026-05-01&to=2026-04-01")?,
        400,
        &["to"],
    )?;
    let etag = app.get("/events.ics")?.header("etag").context("etag")?.to_owned();
    let unchanged = app.send("GET", "/events.ics", &[("if-none-match", &etag)], None)?;
    assert_eq!(unchanged.status, 304);
    let post = app.send("POST", "/events.ics", &[], None)?;
    assert_problem(&post, 405, &[])?;
    // A feed's filters are checked like the list's, each its own 400.
    for (body, field) in [
        (json!({"from": "2026-02-30"}), "from"),
        (json!({"to": 20260101}), "to"),
        (json!({"from": "2026-05-01", "to": "2026-04-01"}), "to"),
        (json!({"q": "x".repeat(101)}), "q"),
        (json!({"colour": "red"}), "colour"),
    ] {
        let response = app.send("POST", "/feeds", &JSON, Some(&body.to_string()))?;
        assert_problem(&response, 400, &[field]).with_context(|| body.to_string())?;
    }
    let (_, path) = feed(&app, json!({"q": "STANDUP", "to": "2026-04-30"}))?;
    assert_eq!(
        uids(&calendar_of(&subscribe(&app, &path, None)?)?),
        [uid(&standup)]
    );
    Ok(())
}

#[e2e::test]
fn a_calendar_is_bounded_and_says_when_it_was_cut() -> TestResult {
    let app = App::start()?;
    // 1,001 events from 30 days ago on, one a day; and one 400 days ago.
    app.sql(
        "INSERT INTO events (title, date)
         SELECT 'bulk ' || n, (now() AT TIME ZONE 'utc')::date - 30 + n FROM generate_series(0, 1000) AS n;
         INSERT INTO events (title, date) VALUES ('old', (now() AT TIME ZONE 'utc')::date - 400)",
    )?;
    let (_, path) = feed(&app, json!({}))?;
    let response = subscribe(&app, &path, None)?;
    assert_eq!(response.header("feed-truncated"), Some("true"));
    let calendar = calendar_of(&response)?;
    assert_eq!(calendar["calendar"]["X-EVENT-MANAGEMENT-TRUNCATED"], "TRUE");
    let events = calendar["events"].as_array().context("events")?;
    assert_eq!(events.len(), 1000);
    // The window starts 365 days back: the old event is out, the nearest 1,000 are in.
    assert_eq!(events[0]["SUMMARY"], "bulk 0");
    assert_eq!(events[999]["SUMMARY"], "bulk 999");
    // A narrower selection fits: not cut.
    let (_, path) = feed(&app, json!({"q": "bulk 1"}))?;
    let response = subscribe(&app, &path, None)?;
    ensure!(response.header("feed-truncated").is_none());
    let calendar = calendar_of(&response)?;
    ensure!(calendar["calendar"].get("X-EVENT-MANAGEMENT-TRUNCATED").is_none());
    // An explicit from reaches further back than the window.
    let old = calendar_of(&app.get("/events.ics?q=old&from=2000-01-01")?)?;
    assert_eq!(old["events"].as_array().map(Vec::len), Some(1));
    let windowed = calendar_of(&app.get("/events.ics?q=old")?)?;
    assert_eq!(windowed["events"].as_array().map(Vec::len), Some(0));
    Ok(())
}
