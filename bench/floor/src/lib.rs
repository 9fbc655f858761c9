//! The benchmark's floor: the cheapest component that serves the routes the bench loads, on the
//! app's schema, with spin-sdk 5.2 and pg4. Whatever a runtime charges any Spin app (a fresh
//! instance, its Postgres pool, a prepare per statement) the floor pays too, and nothing more:
//! no authentication, no validation beyond parsing, no notifications (but see `outbox` below);
//! one `Connection::open` and one statement per request. app ÷ floor is then what the app adds
//! on top of the runtime.
//!
//! With the variable `outbox` "true" (`bench/run --floor outbox`), each write calls a function
//! of `bench/floor/outbox.sql` instead, which also inserts the change's notification row into
//! the app's outbox (`notifications`) in the same transaction, as the app's write commits it;
//! nothing fans those rows out. app ÷ that floor is what the app adds on top of the runtime and
//! of its transactional outbox.
//!
//!   GET   /events/{id}
//!   GET   /events?limit=N&q=TEXT&cursor=C     (limit 50 by default; C as event-fn issues it)
//!   POST  /events         {"title", "description"?, "date"}: a plain insert
//!   PUT   /events/{id}    {"title", "description"?, "date"}: a plain update of every field
//!   PATCH /events/{id}    {"title"?, "date"?}: a plain update
//!   DELETE /events/{id}   a plain delete (204)
//!   (each write with its notification row too with `outbox`)
//!
//! No query returns zero rows: Spin 4.0.0-4.0.2 never answer one (spinframework/spin issue
//! #3671). Reads, the updates and the delete are anchored on a one-row `VALUES` with a
//! `LEFT JOIN`, so "nothing" is one row of NULLs.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::NaiveDate;
use event_contract::{EventData, rfc3339_utc};
use serde::{Deserialize, Serialize};
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;
use spin_sdk::pg4::{Connection, DbValue, Decode, ParameterValue};
use spin_sdk::variables;

/// One event by id; a missing id is a row of NULLs.
const GET_EVENT: &str = "
    SELECT e.id, e.title, e.description, e.date, e.created_at, e.updated_at
    FROM (VALUES (1)) AS anchor (one)
    LEFT JOIN events AS e ON e.id = $1";

/// A page in (date, id) order after the cursor ($2, $3), titles filtered by the ILIKE pattern
/// $1 when given; an empty page is a row of NULLs.
const LIST_EVENTS: &str = "
    SELECT page.id, page.title, page.description, page.date, page.created_at, page.updated_at
    FROM (VALUES (1)) AS anchor (one)
    LEFT JOIN LATERAL (
        SELECT id, title, description, date, created_at, updated_at FROM events
        WHERE ($1::text IS NULL OR title ILIKE $1)
          AND ($2::date IS NULL OR (date, id) > ($2, $3::int8))
        ORDER BY date, id
        LIMIT $4
    ) AS page ON true";

/// A write's statement without and with its notification row (`outbox`).
struct WriteStatements {
    plain: &'static str,
    /// A function of bench/floor/outbox.sql, which bench/run installs for `--floor outbox`.
    with_notification: &'static str,
}

const CREATE_EVENT: WriteStatements = WriteStatements {
    plain: "
    INSERT INTO events (title, description, date) VALUES ($1::text, $2::text, $3::date)
    RETURNING id, title, description, date, created_at, updated_at",
    with_notification: "
    SELECT id, title, description, date, created_at, updated_at
    FROM floor_create_event($1::text, $2::text, $3::date)",
};

/// Sets the given fields; a missing id is a row of NULLs.
const PATCH_EVENT: WriteStatements = WriteStatements {
    plain: "
    WITH patched AS (
        UPDATE events
        SET title = COALESCE($2::text, title), date = COALESCE($3::date, date),
            updated_at = (now() AT TIME ZONE 'utc'), version = version + 1
        WHERE id = $1
        RETURNING id, title, description, date, created_at, updated_at
    )
    SELECT p.id, p.title, p.description, p.date, p.created_at, p.updated_at
    FROM (VALUES (1)) AS anchor (one)
    LEFT JOIN patched AS p ON true",
    with_notification: "
    SELECT id, title, description, date, created_at, updated_at
    FROM floor_patch_event($1, $2::text, $3::date)",
};

/// Sets every field; a missing id is a row of NULLs.
const REPLACE_EVENT: WriteStatements = WriteStatements {
    plain: "
    WITH replaced AS (
        UPDATE events
        SET title = $2::text, description = $3::text, date = $4::date,
            start_time = NULL, end_time = NULL, time_zone = NULL, end_date = NULL,
            updated_at = (now() AT TIME ZONE 'utc'), version = version + 1
        WHERE id = $1
        RETURNING id, title, description, date, created_at, updated_at
    )
    SELECT r.id, r.title, r.description, r.date, r.created_at, r.updated_at
    FROM (VALUES (1)) AS anchor (one)
    LEFT JOIN replaced AS r ON true",
    with_notification: "
    SELECT id, title, description, date, created_at, updated_at
    FROM floor_replace_event($1, $2::text, $3::text, $4::date)",
};

/// Deletes the event; a missing id is a row of NULLs.
const DELETE_EVENT: WriteStatements = WriteStatements {
    plain: "
    WITH deleted AS (DELETE FROM events WHERE id = $1 RETURNING id)
    SELECT d.id
    FROM (VALUES (1)) AS anchor (one)
    LEFT JOIN deleted AS d ON true",
    with_notification: "
    SELECT id
    FROM floor_delete_event($1)",
};

const DEFAULT_LIMIT: i64 = 50;

/// Why a request gets no event: the status says it all (the floor has no problem bodies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    BadRequest,
    NotFound,
    MethodNotAllowed,
    Unavailable,
}

impl Refusal {
    fn status(self) -> u16 {
        match self {
            Refusal::BadRequest => 400,
            Refusal::NotFound => 404,
            Refusal::MethodNotAllowed => 405,
            Refusal::Unavailable => 503,
        }
    }
}

type Reply = Result<Response, Refusal>;

impl WriteStatements {
    /// The statement the variable `outbox` chooses ("true" or "false"), read by writes only.
    fn statement(&self) -> Result<&'static str, Refusal> {
        let outbox = variables::get("outbox").map_err(|error| unavailable(&error))?;
        self.chosen_by(&outbox).map_err(|error| unavailable(&error))
    }

    fn chosen_by(&self, outbox: &str) -> Result<&'static str, String> {
        match outbox {
            "false" => Ok(self.plain),
            "true" => Ok(self.with_notification),
            other => Err(format!("variable outbox is {other:?}, not true or false")),
        }
    }
}

#[derive(Deserialize)]
struct NewEvent {
    title: String,
    description: Option<String>,
    date: String,
}

#[derive(Deserialize)]
struct EventPatch {
    title: Option<String>,
    date: Option<String>,
}

/// `GET /events` parameters.
#[derive(Debug, PartialEq, Eq)]
struct ListQuery {
    title_pattern: Option<String>,
    after: Option<(NaiveDate, i64)>,
    limit: i64,
}

#[http_component]
fn handle_floor(request: Request) -> Response {
    route(&request).unwrap_or_else(|refusal| Response::new(refusal.status(), ()))
}

fn route(request: &Request) -> Reply {
    let Some(rest) = request.path().strip_prefix("/events") else {
        return Err(Refusal::NotFound);
    };
    if rest.is_empty() {
        return match request.method() {
            Method::Get => list(&ListQuery::parse(request.query())?),
            Method::Post => create(&parse_body(request)?),
            _ => Err(Refusal::MethodNotAllowed),
        };
    }
    let id = rest
        .strip_prefix('/')
        .and_then(|id| id.parse::<i64>().ok())
        .ok_or(Refusal::NotFound)?;
    match request.method() {
        Method::Get => get(id),
        Method::Put => replace(id, &parse_body(request)?),
        Method::Patch => patch(id, &parse_body(request)?),
        Method::Delete => delete(id),
        _ => Err(Refusal::MethodNotAllowed),
    }
}

fn get(id: i64) -> Reply {
    let rows = query(GET_EVENT, &[id.into()])?;
    one_event(&rows, 200)
}

fn list(list: &ListQuery) -> Reply {
    let (after_date, after_id) = list.after.unzip();
    let rows = query(
        LIST_EVENTS,
        &[
            list.title_pattern.clone().into(),
            after_date.into(),
            after_id.into(),
            list.limit.into(),
        ],
    )?;
    let events = rows.iter().map(|row| event(row)).collect::<Result<Vec<_>, _>>()?;
    Ok(json(200, &events.into_iter().flatten().collect::<Vec<_>>()))
}

fn create(new: &NewEvent) -> Reply {
    let rows = query(
        CREATE_EVENT.statement()?,
        &[
            new.title.clone().into(),
            new.description.clone().into(),
            parse_date(&new.date)?.into(),
        ],
    )?;
    one_event(&rows, 201)
}

fn replace(id: i64, new: &NewEvent) -> Reply {
    let rows = query(
        REPLACE_EVENT.statement()?,
        &[
            id.into(),
            new.title.clone().into(),
            new.description.clone().into(),
            parse_date(&new.date)?.into(),
        ],
    )?;
    one_event(&rows, 200)
}

fn patch(id: i64, patch: &EventPatch) -> Reply {
    let date = patch.date.as_deref().map(parse_date).transpose()?;
    let rows = query(
        PATCH_EVENT.statement()?,
        &[id.into(), patch.title.clone().into(), date.into()],
    )?;
    one_event(&rows, 200)
}

fn delete(id: i64) -> Reply {
    let rows = query(DELETE_EVENT.statement()?, &[id.into()])?;
    let row = rows.first().ok_or(Refusal::Unavailable)?;
    column::<Option<i64>>(row, 0)?.ok_or(Refusal::NotFound)?;
    Ok(Response::new(204, ()))
}

/// Runs one statement on a connection of its own, as every request does.
fn query(statement: &str, params: &[ParameterValue]) -> Result<Vec<Vec<DbValue>>, Refusal> {
    let url = variables::get("db_url").map_err(|error| unavailable(&error))?;
    let connection = Connection::open(&url).map_err(|error| unavailable(&error))?;
    let rows = connection
        .query(statement, params)
        .map_err(|error| unavailable(&error))?;
    Ok(rows.rows)
}

fn unavailable(error: &dyn std::fmt::Debug) -> Refusal {
    eprintln!("floor: {error:?}");
    Refusal::Unavailable
}

/// The event of an anchored statement's one row, or 404 for its row of NULLs.
fn one_event(rows: &[Vec<DbValue>], status: u16) -> Reply {
    let row = rows.first().ok_or(Refusal::Unavailable)?;
    let event = event(row)?.ok_or(Refusal::NotFound)?;
    Ok(json(status, &event))
}

/// An event as event-fn renders it, from the columns id, title, description, date, created_at,
/// updated_at; `None` for the row of NULLs an anchored statement answers when it found nothing.
fn event(row: &[DbValue]) -> Result<Option<EventData>, Refusal> {
    let Some(id) = column::<Option<i64>>(row, 0)? else {
        return Ok(None);
    };
    Ok(Some(EventData {
        id,
        title: column(row, 1)?,
        description: column(row, 2)?,
        date: column::<NaiveDate>(row, 3)?.to_string(),
        // All-day events only: the time fields (issue 15) are null, as event-fn shows them.
        times: Default::default(),
        created_at: rfc3339_utc(column(row, 4)?),
        updated_at: rfc3339_utc(column(row, 5)?),
    }))
}

fn column<T: Decode>(row: &[DbValue], index: usize) -> Result<T, Refusal> {
    let value = row.get(index).ok_or(Refusal::Unavailable)?;
    T::decode(value).map_err(|error| unavailable(&error))
}

fn json(status: u16, body: &impl Serialize) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(body).unwrap_or_default())
        .build()
}

fn parse_body<T: for<'de> Deserialize<'de>>(request: &Request) -> Result<T, Refusal> {
    serde_json::from_slice(request.body()).map_err(|_| Refusal::BadRequest)
}

fn parse_date(text: &str) -> Result<NaiveDate, Refusal> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| Refusal::BadRequest)
}

impl ListQuery {
    fn parse(query: &str) -> Result<Self, Refusal> {
        let mut list = ListQuery {
            title_pattern: None,
            after: None,
            limit: DEFAULT_LIMIT,
        };
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            match name.as_ref() {
                "limit" => list.limit = value.parse().map_err(|_| Refusal::BadRequest)?,
                // Plain words only: no LIKE wildcards escaped (event-fn does).
                "q" if !value.is_empty() => list.title_pattern = Some(format!("%{value}%")),
                "cursor" => list.after = Some(decode_cursor(&value).ok_or(Refusal::BadRequest)?),
                _ => {}
            }
        }
        Ok(list)
    }
}

/// event-fn's cursor: base64url (no padding) of `date|id`.
fn decode_cursor(text: &str) -> Option<(NaiveDate, i64)> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(text).ok()?).ok()?;
    let (date, id) = text.split_once('|')?;
    Some((parse_date(date).ok()?, id.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_write_with_the_outbox_commits_a_notification() {
        let functions = include_str!("../outbox.sql");
        for write in [CREATE_EVENT, REPLACE_EVENT, PATCH_EVENT, DELETE_EVENT] {
            assert!(!write.plain.contains("notifications"), "{}", write.plain);
            let function = write
                .with_notification
                .split_once("FROM ")
                .and_then(|(_, call)| call.split_once('('))
                .map(|(name, _)| name)
                .expect("a function call");
            assert!(
                functions.contains(&format!("CREATE OR REPLACE FUNCTION {function}(")),
                "{function} is not in outbox.sql"
            );
        }
    }

    #[test]
    fn the_variable_outbox_is_true_or_false_and_nothing_else() {
        assert_eq!(CREATE_EVENT.chosen_by("false"), Ok(CREATE_EVENT.plain));
        assert_eq!(CREATE_EVENT.chosen_by("true"), Ok(CREATE_EVENT.with_notification));
        for other in ["", "TRUE", "1", "yes"] {
            let error = CREATE_EVENT.chosen_by(other).unwrap_err();
            assert!(error.contains(&format!("{other:?}")), "{error}");
        }
    }

    #[test]
    fn list_query_reads_limit_search_and_cursor() {
        let cursor = URL_SAFE_NO_PAD.encode("2024-05-06|42");
        assert_eq!(
            ListQuery::parse(&format!("limit=7&q=two%20words&cursor={cursor}")),
            Ok(ListQuery {
                title_pattern: Some("%two words%".to_owned()),
                after: Some((NaiveDate::from_ymd_opt(2024, 5, 6).unwrap(), 42)),
                limit: 7,
            })
        );
        assert_eq!(
            ListQuery::parse("q="),
            Ok(ListQuery {
                title_pattern: None,
                after: None,
                limit: DEFAULT_LIMIT,
            })
        );
    }

    #[test]
    fn list_query_refuses_what_does_not_parse() {
        assert_eq!(ListQuery::parse("limit=many"), Err(Refusal::BadRequest));
        assert_eq!(
            ListQuery::parse("cursor=bm90LWEtY3Vyc29y"),
            Err(Refusal::BadRequest)
        );
    }
}
