//! The events API (issue 3) through the compiled event-fn on devhost, against PostgreSQL.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use anyhow::{Context, Result, ensure};
use e2e::{App, HttpResponse, Postgres, TOKEN, TestResult, assert_problem};
use serde_json::{Value, json};

#[e2e::test]
fn create_read_update_delete() -> TestResult {
    let app = App::start()?;
    let created = app.post(
        &json!({"title": "Weekly Meeting", "description": "Project discussion", "date": "2024-11-15"}),
    )?;
    assert_eq!(created.status, 201, "{}", created.body);
    let event = created.json()?;
    let id = event["id"].as_i64().context("id")?;
    assert_eq!(created.header("location"), Some(format!("/events/{id}").as_str()));
    let etag = created.header("etag").context("etag")?.to_owned();
    assert_eq!(event["title"], "Weekly Meeting");
    assert_eq!(event["description"], "Project discussion");
    assert_eq!(event["date"], "2024-11-15");
    let created_at = event["created_at"].as_str().context("created_at")?;
    assert!(
        created_at.ends_with('Z') && created_at.contains('T'),
        "{created_at}"
    );
    assert_eq!(event["updated_at"], event["created_at"]);

    let read = app.get(&format!("/events/{id}"))?;
    assert_eq!(read.status, 200);
    assert_eq!(read.json()?, event);
    assert_eq!(read.header("etag"), Some(etag.as_str()));

    let list = app.get("/events")?;
    assert_eq!(list.status, 200);
    assert_eq!(list.json()?, json!([event]));
    assert!(list.header("link").is_none());

    let replaced = app.send(
        "PUT",
        &format!("/events/{id}"),
        &[("content-type", "application/json")],
        Some(r#"{"title": "Renamed", "date": "2024-12-01"}"#),
    )?;
    assert_eq!(replaced.status, 200, "{}", replaced.body);
    let replaced_event = replaced.json()?;
    assert_eq!(replaced_event["title"], "Renamed");
    // PUT replaces: the description it left out is gone.
    assert_eq!(replaced_event["description"], Value::Null);
    assert_eq!(replaced_event["created_at"], event["created_at"]);
    assert_ne!(replaced.header("etag"), Some(etag.as_str()));
    assert_eq!(app.get(&format!("/events/{id}"))?.json()?, replaced_event);

    let deleted = app.send("DELETE", &format!("/events/{id}"), &[], None)?;
    assert_eq!((deleted.status, deleted.body.as_str()), (204, ""));
    assert_problem(&app.get(&format!("/events/{id}"))?, 404, &[])?;
    assert_problem(
        &app.send("DELETE", &format!("/events/{id}"), &[], None)?,
        404,
        &[],
    )?;
    assert_eq!(app.count("events")?, 0);
    Ok(())
}

#[e2e::test]
fn patch_merges_with_either_json_type() -> TestResult {
    let app = App::start()?;
    let event = app
        .post(&json!({"title": "Standup", "description": "daily", "date": "2024-11-15"}))?
        .json()?;
    let path = format!("/events/{}", event["id"]);
    let patched = app.send(
        "PATCH",
        &path,
        &[("content-type", "application/merge-patch+json")],
        Some(r#"{"title": "Sync"}"#),
    )?;
    assert_eq!(patched.status, 200, "{}", patched.body);
    let patched = patched.json()?;
    assert_eq!(
        (
            patched["title"].as_str(),
            patched["description"].as_str(),
            patched["date"].as_str()
        ),
        (Some("Sync"), Some("daily"), Some("2024-11-15"))
    );
    let cleared = app.send(
        "PATCH",
        &path,
        &[("content-type", "application/json")],
        Some(r#"{"description": null, "date": "2025-01-02"}"#),
    )?;
    assert_eq!(cleared.status, 200, "{}", cleared.body);
    let cleared = cleared.json()?;
    assert_eq!(cleared["description"], Value::Null);
    assert_eq!(cleared["date"], "2025-01-02");
    assert_eq!(cleared["title"], "Sync");
    // An empty patch changes nothing.
    let same = app.send(
        "PATCH",
        &path,
        &[("content-type", "application/merge-patch+json")],
        Some("{}"),
    )?;
    assert_eq!(same.status, 200);
    assert_eq!(same.json()?, cleared);
    assert_problem(
        &app.send(
            "PATCH",
            &path,
            &[("content-type", "application/json")],
            Some(r#"{"title": null}"#),
        )?,
        400,
        &["title"],
    )?;
    assert_problem(
        &app.send(
            "PATCH",
            &path,
            &[("content-type", "application/json")],
            Some(r#"{"date": "2024-02-30"}"#),
        )?,
        400,
        &["date"],
    )?;
    assert_problem(
        &app.send(
            "PATCH",
            "/events/999999",
            &[("content-type", "application/json")],
            Some(r#"{"title": "x"}"#),
        )?,
        404,
        &[],
    )?;
    assert_eq!(app.get(&path)?.json()?, cleared);
    Ok(())
}

#[e2e::test]
fn every_validation_rule_is_a_400_naming_the_field() -> TestResult {
    let app = App::start()?;
    let cases: Vec<(Value, &[&str])> = vec![
        (json!({"date": "2024-11-15"}), &["title"]),
        (json!({"title": null, "date": "2024-11-15"}), &["title"]),
        (json!({"title": 42, "date": "2024-11-15"}), &["title"]),
        (json!({"title": ["a"], "date": "2024-11-15"}), &["title"]),
        (json!({"title": "   ", "date": "2024-11-15"}), &["title"]),
        (
            json!({"title": "x".repeat(101), "date": "2024-11-15"}),
            &["title"],
        ),
        (
            json!({"title": "€".repeat(101), "date": "2024-11-15"}),
            &["title"],
        ),
        (
            json!({"title": "t", "description": 5, "date": "2024-11-15"}),
            &["description"],
        ),
        (
            json!({"title": "t", "description": {"a": 1}, "date": "2024-11-15"}),
            &["description"],
        ),
        (
            json!({"title": "t", "description": "d".repeat(5001), "date": "2024-11-15"}),
            &["description"],
        ),
        (json!({"title": "t"}), &["date"]),
        (json!({"title": "t", "date": null}), &["date"]),
        (json!({"title": "t", "date": "2024-02-30"}), &["date"]),
        (json!({"title": "t", "date": "2024-13-01"}), &["date"]),
        (json!({"title": "t", "date": "24-1-1"}), &["date"]),
        (json!({"title": "t", "date": "2024-11-15T10:00:00Z"}), &["date"]),
        (json!({"title": "t", "date": 20241115}), &["date"]),
        (
            json!({"title": "t", "date": "2024-11-15", "location": "here"}),
            &["location"],
        ),
        (
            json!({"title": 1, "description": 2, "date": 3, "x": 4}),
            &["title", "description", "date", "x"],
        ),
        (json!(["title"]), &[""]),
        (json!("just a string"), &[""]),
    ];
    for (body, fields) in &cases {
        let response = app.post(body)?;
        assert_problem(&response, 400, fields).with_context(|| format!("POST {body}"))?;
    }
    // The limits themselves are accepted, counted in characters.
    app.create(&"€".repeat(100), "2024-02-29")?;
    let long = app.post(&json!({"title": "t", "description": "é".repeat(5000), "date": "2024-11-15"}))?;
    assert_eq!(long.status, 201);
    // Nothing invalid was written.
    assert_eq!(app.count("events")?, 2);
    Ok(())
}

#[e2e::test]
fn request_shape_errors() -> TestResult {
    let app = App::start()?;
    let json_type = [("content-type", "application/json")];
    assert_problem(
        &app.send("POST", "/events", &json_type, Some("{\"title\": "))?,
        400,
        &[""],
    )?;
    assert_problem(&app.send("POST", "/events", &json_type, Some(""))?, 400, &[""])?;
    assert_problem(&app.send("POST", "/events", &json_type, None)?, 400, &[""])?;
    let too_big = format!(
        r#"{{"title": "t", "date": "2024-11-15", "description": "{}"}}"#,
        "x".repeat(64 * 1024)
    );
    assert_problem(
        &app.send("POST", "/events", &json_type, Some(&too_big))?,
        413,
        &[],
    )?;
    let valid = r#"{"title": "t", "date": "2024-11-15"}"#;
    assert_problem(
        &app.send("POST", "/events", &[("content-type", "text/plain")], Some(valid))?,
        415,
        &[],
    )?;
    assert_problem(&app.send("POST", "/events", &[], Some(valid))?, 415, &[])?;
    assert_problem(
        &app.send(
            "POST",
            "/events",
            &[("content-type", "application/merge-patch+json")],
            Some(valid),
        )?,
        415,
        &[],
    )?;
    let id = app.create("t", "2024-11-15")?["id"].clone();
    assert_problem(
        &app.send(
            "PUT",
            &format!("/events/{id}"),
            &[("content-type", "application/xml")],
            Some(valid),
        )?,
        415,
        &[],
    )?;
    assert_problem(
        &app.send(
            "PATCH",
            &format!("/events/{id}"),
            &[("content-type", "text/plain")],
            Some(valid),
        )?,
        415,
        &[],
    )?;
    assert_eq!(app.count("events")?, 1);
    Ok(())
}

#[e2e::test]
fn ids_methods_and_query_parameters() -> TestResult {
    let app = App::start()?;
    for path in [
        "/events/abc",
        "/events/0",
        "/events/-1",
        "/events/007",
        "/events/99999999999999999999",
        "/events/1.5",
        "/events/12345",
        "/events/1/more",
    ] {
        assert_problem(&app.get(path)?, 404, &[]).with_context(|| path.to_owned())?;
    }
    let collection = app.send("DELETE", "/events", &[], None)?;
    assert_problem(&collection, 405, &[])?;
    assert_eq!(collection.header("allow"), Some("GET, HEAD, POST, OPTIONS"));
    let id = app.create("t", "2024-11-15")?["id"].clone();
    let item = app.send("POST", &format!("/events/{id}"), &[], None)?;
    assert_problem(&item, 405, &[])?;
    assert_eq!(
        item.header("allow"),
        Some("GET, HEAD, PUT, PATCH, DELETE, OPTIONS")
    );
    let options = app.send("OPTIONS", "/events", &[], None)?;
    assert_eq!(
        (options.status, options.header("allow")),
        (204, Some("GET, HEAD, POST, OPTIONS"))
    );
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=ten", "limit"),
        ("from=2024-02-30", "from"),
        ("to=tomorrow", "to"),
        ("from=2024-05-01&to=2024-04-01", "to"),
        ("cursor=not-a-cursor", "cursor"),
    ] {
        assert_problem(&app.get(&format!("/events?{query}"))?, 400, &[field])
            .with_context(|| query.to_owned())?;
    }
    Ok(())
}

#[e2e::test]
fn conditional_requests() -> TestResult {
    let app = App::start()?;
    let created = app.post(&json!({"title": "t", "date": "2024-11-15"}))?;
    let etag = created.header("etag").context("etag")?.to_owned();
    let id = created.json()?["id"].clone();
    let path = format!("/events/{id}");

    let not_modified = app.send("GET", &path, &[("if-none-match", &etag)], None)?;
    assert_eq!((not_modified.status, not_modified.body.as_str()), (304, ""));
    assert_eq!(not_modified.header("etag"), Some(etag.as_str()));
    assert_eq!(
        app.send("GET", &path, &[("if-none-match", "\"other\"")], None)?
            .status,
        200
    );

    let json_type = ("content-type", "application/json");
    let updated = app.send(
        "PUT",
        &path,
        &[json_type, ("if-match", &etag)],
        Some(r#"{"title": "v2", "date": "2024-11-15"}"#),
    )?;
    assert_eq!(updated.status, 200, "{}", updated.body);
    let new_etag = updated.header("etag").context("etag")?.to_owned();
    // The first ETag is stale now: every conditional write with it fails and changes nothing.
    let stale = [json_type, ("if-match", etag.as_str())];
    assert_problem(
        &app.send(
            "PUT",
            &path,
            &stale,
            Some(r#"{"title": "v3", "date": "2024-11-15"}"#),
        )?,
        412,
        &[],
    )?;
    assert_problem(
        &app.send("PATCH", &path, &stale, Some(r#"{"title": "v3"}"#))?,
        412,
        &[],
    )?;
    assert_problem(&app.send("PATCH", &path, &stale, Some("{}"))?, 412, &[])?;
    assert_problem(
        &app.send("DELETE", &path, &[("if-match", &etag)], None)?,
        412,
        &[],
    )?;
    assert_problem(
        &app.send("DELETE", &path, &[("if-match", &format!("W/{new_etag}"))], None)?,
        412,
        &[],
    )?;
    let current = app.get(&path)?;
    assert_eq!(current.json()?["title"], "v2");
    assert_eq!(current.header("etag"), Some(new_etag.as_str()));
    let patched = app.send(
        "PATCH",
        &path,
        &[json_type, ("if-match", &new_etag)],
        Some(r#"{"title": "v3"}"#),
    )?;
    assert_eq!(patched.status, 200);
    let latest = patched.header("etag").context("etag")?.to_owned();
    assert_eq!(app.send("DELETE", &path, &[("if-match", "*")], None)?.status, 204);
    assert_problem(
        &app.send("DELETE", &path, &[("if-match", &latest)], None)?,
        404,
        &[],
    )?;
    Ok(())
}

#[e2e::test]
fn concurrent_writers_with_one_etag_one_wins() -> TestResult {
    let app = App::start()?;
    let created = app.post(&json!({"title": "t", "date": "2024-11-15"}))?;
    let etag = created.header("etag").context("etag")?.to_owned();
    let path = format!("/events/{}", created.json()?["id"]);
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..12)
            .map(|n| {
                let (app, path, etag) = (&app, &path, &etag);
                scope.spawn(move || {
                    let body = format!(r#"{{"title": "writer {n}", "date": "2024-11-15"}}"#);
                    app.send(
                        "PUT",
                        path,
                        &[("content-type", "application/json"), ("if-match", etag)],
                        Some(&body),
                    )
                    .map(|r| r.status)
                    .unwrap_or(0)
                })
            })
            .collect();
        writers.into_iter().map(|w| w.join().unwrap_or(0)).collect()
    });
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert_eq!(
        statuses.iter().filter(|s| **s == 412).count(),
        statuses.len() - 1,
        "{statuses:?}"
    );
    assert_eq!(app.sql("SELECT version FROM events")?, "2");
    Ok(())
}

#[e2e::test]
fn idempotent_create_sequential() -> TestResult {
    let app = App::start()?;
    let body = r#"{"title": "Once", "date": "2024-11-15"}"#;
    let headers = [("content-type", "application/json"), ("idempotency-key", "key-1")];
    let first = app.send("POST", "/events", &headers, Some(body))?;
    assert_eq!(first.status, 201);
    // The same request again, formatted differently: the first response, nothing new.
    let retry = app.send(
        "POST",
        "/events",
        &headers,
        Some(r#"{"date":"2024-11-15","title":"Once"}"#),
    )?;
    assert_eq!(retry.status, 201);
    assert_eq!(retry.json()?, first.json()?);
    assert_eq!(retry.header("location"), first.header("location"));
    assert_eq!(retry.header("etag"), first.header("etag"));
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    // Still the first response after the event changed.
    let path = first.header("location").context("location")?;
    app.send(
        "PATCH",
        path,
        &[("content-type", "application/json")],
        Some(r#"{"title": "Changed"}"#),
    )?;
    assert_eq!(
        app.send("POST", "/events", &headers, Some(body))?.json()?,
        first.json()?
    );
    // The same key with another body is refused.
    let other = app.send(
        "POST",
        "/events",
        &headers,
        Some(r#"{"title": "Other", "date": "2024-11-15"}"#),
    )?;
    assert_problem(&other, 422, &[])?;
    assert_eq!(app.count("events")?, 1);
    // Another key creates another event; an invalid key is a 400.
    assert_eq!(
        app.send(
            "POST",
            "/events",
            &[headers[0], ("idempotency-key", "key-2")],
            Some(body)
        )?
        .status,
        201
    );
    assert_problem(
        &app.send(
            "POST",
            "/events",
            &[headers[0], ("idempotency-key", "has space")],
            Some(body),
        )?,
        400,
        &["Idempotency-Key"],
    )?;
    assert_eq!(app.count("events")?, 2);
    // Keys are kept for 24 hours: a 23-hour-old key still replays, a 25-hour-old one is free.
    app.sql("UPDATE idempotency_keys SET created_at = created_at - interval '23 hours' WHERE key = 'key-1'")?;
    assert_eq!(
        app.send("POST", "/events", &headers, Some(body))?
            .header("idempotent-replayed"),
        Some("true")
    );
    app.sql("UPDATE idempotency_keys SET created_at = created_at - interval '2 hours' WHERE key = 'key-1'")?;
    let reused = app.send(
        "POST",
        "/events",
        &headers,
        Some(r#"{"title": "Other", "date": "2024-11-15"}"#),
    )?;
    assert_eq!(reused.status, 201);
    assert!(reused.header("idempotent-replayed").is_none());
    assert_eq!(app.count("events")?, 3);
    Ok(())
}

#[e2e::test]
fn idempotent_create_concurrent() -> TestResult {
    let app = App::start()?;
    let responses: Vec<(u16, String)> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..16)
            .map(|_| {
                let app = &app;
                scope.spawn(move || {
                    app.send(
                        "POST",
                        "/events",
                        &[
                            ("content-type", "application/json"),
                            ("idempotency-key", "same-key"),
                        ],
                        Some(r#"{"title": "Race", "date": "2024-11-15"}"#),
                    )
                    .map(|r| (r.status, r.body))
                    .unwrap_or((0, String::new()))
                })
            })
            .collect();
        clients
            .into_iter()
            .map(|c| c.join().unwrap_or((0, String::new())))
            .collect()
    });
    assert!(
        responses.iter().all(|(status, _)| *status == 201),
        "{responses:?}"
    );
    let bodies: HashSet<&String> = responses.iter().map(|(_, body)| body).collect();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert_eq!(app.count("events")?, 1);
    Ok(())
}

#[e2e::test]
fn pagination_walk_while_inserting() -> TestResult {
    let app = App::start()?;
    // 260 events over a few dates, inserted directly: the walk is what is under test.
    app.sql(
        "INSERT INTO events (title, date) SELECT 'seed ' || n, DATE '2024-01-01' + (n % 7) FROM generate_series(1, 260) AS n",
    )?;
    let seeded: HashSet<i64> = app
        .sql("SELECT string_agg(id::text, ',') FROM events")?
        .split(',')
        .map(|s| s.parse())
        .collect::<Result<_, _>>()?;
    // Inserts run concurrently with the walk; before each page the walk waits until at least
    // one more insert has been committed, so every page boundary sees new rows on either side.
    let stop = AtomicBool::new(false);
    let inserted = AtomicUsize::new(0);
    let (seen, pages) = std::thread::scope(|scope| -> Result<(Vec<(String, i64)>, usize)> {
        let inserter = scope.spawn(|| -> Result<()> {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let date = format!("2024-01-0{}", 1 + n % 9);
                app.create(&format!("concurrent {n}"), &date)?;
                inserted.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
            Ok(())
        });
        let walk = || -> Result<(Vec<(String, i64)>, usize)> {
            let mut seen = Vec::new();
            let mut pages = 0;
            let mut next = Some("/events?limit=100".to_owned());
            while let Some(path) = next.take() {
                let before = inserted.load(Ordering::Relaxed);
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                while inserted.load(Ordering::Relaxed) == before {
                    ensure!(std::time::Instant::now() < deadline, "no insert during the walk");
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                let page = app.get(&path)?;
                ensure!(page.status == 200, "{path}: {} {}", page.status, page.body);
                pages += 1;
                for event in page.json()?.as_array().context("array")? {
                    seen.push((
                        event["date"].as_str().context("date")?.to_owned(),
                        event["id"].as_i64().context("id")?,
                    ));
                }
                next = page.header("link").map(|link| {
                    link.trim_start_matches('<')
                        .split('>')
                        .next()
                        .unwrap_or_default()
                        .to_owned()
                });
                ensure!(pages < 100, "the walk does not end");
            }
            Ok((seen, pages))
        };
        let walked = walk();
        stop.store(true, Ordering::Relaxed);
        let inserts = inserter
            .join()
            .map_err(|_| anyhow::anyhow!("the inserter panicked"))?;
        inserts?;
        walked
    })?;
    assert!(pages >= 3, "{pages} pages");
    let ids: Vec<i64> = seen.iter().map(|(_, id)| *id).collect();
    let unique: HashSet<i64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "an event was returned twice");
    assert!(
        seeded.is_subset(&unique),
        "{} seeded events missing",
        seeded.difference(&unique).count()
    );
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "pages are not in (date, id) order");
    Ok(())
}

#[e2e::test]
fn filters() -> TestResult {
    let app = App::start()?;
    for (title, date) in [
        ("Team MEETING", "2024-03-01"),
        ("meeting notes", "2024-03-15"),
        ("Party", "2024-03-20"),
        ("50% off_sale", "2024-04-01"),
    ] {
        app.create(title, date)?;
    }
    let titles = |query: &str| -> Result<Vec<String>> {
        let response = app.get(&format!("/events?{query}"))?;
        ensure!(response.status == 200, "{query}: {}", response.body);
        Ok(response
            .json()?
            .as_array()
            .context("array")?
            .iter()
            .filter_map(|e| e["title"].as_str().map(str::to_owned))
            .collect())
    };
    assert_eq!(titles("q=meeting")?, ["Team MEETING", "meeting notes"]);
    assert_eq!(
        titles("from=2024-03-15")?,
        ["meeting notes", "Party", "50% off_sale"]
    );
    assert_eq!(titles("to=2024-03-15")?, ["Team MEETING", "meeting notes"]);
    assert_eq!(
        titles("from=2024-03-02&to=2024-03-20")?,
        ["meeting notes", "Party"]
    );
    assert_eq!(titles("q=MEET&from=2024-03-02")?, ["meeting notes"]);
    // LIKE wildcards in q are literal.
    assert_eq!(titles("q=%25")?, ["50% off_sale"]);
    assert_eq!(titles("q=f_s")?, ["50% off_sale"]);
    assert!(titles("q=nothing")?.is_empty());
    // The filters carry over to the next page.
    let first = app.get("/events?q=meeting&limit=1")?;
    let link = first.header("link").context("link")?.to_owned();
    assert!(
        link.ends_with("rel=\"next\"") && link.contains("q=meeting"),
        "{link}"
    );
    let next = link.trim_start_matches('<').split('>').next().context("uri")?;
    let second = app.get(next)?.json()?;
    assert_eq!(second[0]["title"], "meeting notes");
    Ok(())
}

#[e2e::test]
fn authentication() -> TestResult {
    let app = App::start()?;
    app.create("secret plans", "2024-11-15")?;
    let anonymous = HttpResponse::send(app.devhost.request("GET", "/events"))?;
    assert_problem(&anonymous, 401, &[])?;
    assert_eq!(
        anonymous.header("www-authenticate"),
        Some(r#"Bearer realm="events""#)
    );
    assert!(!anonymous.body.contains("secret plans"));
    for header in [
        "Bearer wrong".to_owned(),
        format!("Bearer {TOKEN}2"),
        "Basic dGVzdDp0ZXN0".to_owned(),
        TOKEN.to_owned(),
    ] {
        let response = HttpResponse::send(
            app.devhost
                .request("GET", "/events/1")
                .header("authorization", &header),
        )?;
        assert_problem(&response, 401, &[]).with_context(|| header.clone())?;
        assert!(
            response
                .header("www-authenticate")
                .unwrap_or_default()
                .starts_with("Bearer")
        );
    }
    let write = HttpResponse::send(
        app.devhost
            .request("POST", "/events")
            .header("content-type", "application/json")
            .body(r#"{"title": "x", "date": "2024-11-15"}"#),
    )?;
    assert_problem(&write, 401, &[])?;
    assert_eq!(app.count("events")?, 1);
    Ok(())
}

#[e2e::test]
fn database_down_and_back() -> TestResult {
    // A PostgreSQL of this test's own, so stopping it affects no other test.
    let postgres = Postgres::start()?;
    let app = App::start_on(&postgres)?;
    let id = app.create("before", "2024-11-15")?["id"].clone();
    postgres.stop()?;
    for response in [
        app.get("/events")?,
        app.get(&format!("/events/{id}"))?,
        app.post(&json!({"title": "during", "date": "2024-11-15"}))?,
    ] {
        let problem = assert_problem(&response, 503, &[])?;
        assert!(response.header("retry-after").is_some(), "{problem}");
    }
    postgres.restart()?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let back = loop {
        let response = app.get("/events")?;
        if response.status == 200 || std::time::Instant::now() > deadline {
            break response;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(back.status, 200, "{}", back.body);
    let titles: Vec<Value> = back
        .json()?
        .as_array()
        .context("array")?
        .iter()
        .map(|e| e["title"].clone())
        .collect();
    // The write attempted while the database was down left nothing behind.
    assert_eq!(titles, [json!("before")]);
    assert_eq!(app.create("after", "2024-11-16")?["title"], "after");
    Ok(())
}
