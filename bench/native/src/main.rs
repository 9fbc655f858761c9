//! The benchmark's native baseline: what event-fn's `GET /events/{id}`, `GET /events` (first
//! page, cursor pages and title search `q`) and plain `POST /events` cost as an ordinary pooled Rust service on
//! the same schema. Same JSON shape, same Bearer check, same SQL per request; a deadpool pool of
//! 64 (Spin's size) with fast recycling and cached prepared statements, which is what a native
//! service would use.
//!
//!   DATABASE_URL=postgres://... API_TOKEN=... bench-native [--listen 127.0.0.1:0]
//!
//! Prints `Serving http://ADDR` once it listens.

use std::str::FromStr;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{NaiveDate, NaiveDateTime};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use event_contract::{EventData, rfc3339_utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::{NoTls, Row};

const COLUMNS: &str = "id, title, description, date, created_at, updated_at, version";

struct AppState {
    pool: Pool,
    bearer: String,
    /// Spin's pool policy (for profiling): clean recycling and a fresh prepare per statement.
    spin_pool: bool,
}

type Shared = Arc<AppState>;

#[derive(Deserialize)]
struct EventInput {
    title: String,
    description: Option<String>,
    date: String,
}

fn main() -> Result<()> {
    let mut listen = "127.0.0.1:0".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next().context("--listen needs an address")?,
            other => anyhow::bail!("unknown argument {other:?}; usage: bench-native [--listen ADDR]"),
        }
    }
    let url = std::env::var("DATABASE_URL").context("set DATABASE_URL")?;
    let token = std::env::var("API_TOKEN").context("set API_TOKEN")?;
    // BENCH_NATIVE_POOL=spin: Spin 3.6's policy (RecyclingMethod::Clean, no statement cache),
    // to tell the pool policy's cost apart from WebAssembly's.
    let spin_pool = std::env::var("BENCH_NATIVE_POOL").is_ok_and(|v| v == "spin");
    let manager = Manager::from_config(
        tokio_postgres::Config::from_str(&url)?,
        NoTls,
        ManagerConfig {
            recycling_method: if spin_pool {
                RecyclingMethod::Clean
            } else {
                RecyclingMethod::Fast
            },
        },
    );
    let pool = Pool::builder(manager).max_size(64).build()?;
    let state = Arc::new(AppState {
        pool,
        bearer: format!("Bearer {token}"),
        spin_pool,
    });
    let app = Router::new()
        .route("/events", get(list).post(create))
        .route("/events/{id}", get(get_event))
        .with_state(state);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let listener = tokio::net::TcpListener::bind(&listen).await?;
            println!("Serving http://{}", listener.local_addr()?);
            axum::serve(listener, app).await?;
            Ok(())
        })
}

fn authorized(state: &AppState, headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .is_some_and(|value| value.as_bytes() == state.bearer.as_bytes())
}

fn problem(status: StatusCode, detail: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        serde_json::json!({"status": status.as_u16(), "detail": detail}).to_string(),
    )
        .into_response()
}

fn unavailable(error: impl std::fmt::Display) -> Response {
    eprintln!("bench-native: database error: {error}");
    problem(StatusCode::SERVICE_UNAVAILABLE, "the database is unavailable")
}

/// A pooled client and `sql` prepared on it, by the pool policy in use; any failure is the
/// 503 answer.
async fn prepared(
    state: &AppState,
    sql: &str,
) -> Result<(deadpool_postgres::Object, tokio_postgres::Statement), Response> {
    let client = state.pool.get().await.map_err(unavailable)?;
    let statement = if state.spin_pool {
        client.prepare(sql).await
    } else {
        client.prepare_cached(sql).await
    };
    Ok((client, statement.map_err(unavailable)?))
}

fn body_of(row: &Row) -> (EventData, i64) {
    let date: NaiveDate = row.get(3);
    (
        EventData {
            id: row.get(0),
            title: row.get(1),
            description: row.get(2),
            date: date.to_string(),
            // All-day events only: the time fields (issue 15) are null, as event-fn shows them.
            times: Default::default(),
            created_at: rfc3339_utc(row.get(4)),
            updated_at: rfc3339_utc(row.get(5)),
        },
        row.get(6),
    )
}

fn json_response(status: StatusCode, body: &impl Serialize) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(body).unwrap_or_default(),
    )
        .into_response()
}

fn with_etag(mut response: Response, id: i64, version: i64) -> Response {
    if let Ok(value) = HeaderValue::from_str(&format!("\"{id}-{version}\"")) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

async fn get_event(State(state): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if !authorized(&state, &headers) {
        return problem(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
    }
    let Some(id) = id.parse::<i64>().ok().filter(|id| *id > 0) else {
        return problem(StatusCode::NOT_FOUND, "there is no such event");
    };
    let sql = format!("SELECT {COLUMNS} FROM events WHERE id = $1");
    let (client, statement) = match prepared(&state, &sql).await {
        Ok(prepared) => prepared,
        Err(response) => return response,
    };
    match client.query_opt(&statement, &[&id]).await {
        Ok(Some(row)) => {
            let (body, version) = body_of(&row);
            with_etag(json_response(StatusCode::OK, &body), id, version)
        }
        Ok(None) => problem(StatusCode::NOT_FOUND, "there is no such event"),
        Err(e) => unavailable(e),
    }
}

fn decode_cursor(text: &str) -> Option<(NaiveDate, i64)> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(text).ok()?).ok()?;
    let (date, id) = text.split_once('|')?;
    Some((
        NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?,
        id.parse().ok()?,
    ))
}

async fn list(State(state): State<Shared>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    if !authorized(&state, &headers) {
        return problem(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
    }
    let mut limit: i64 = 50;
    let mut cursor = None;
    let mut title_pattern = None;
    for (name, value) in form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes()) {
        match name.as_ref() {
            "limit" => match value.parse::<i64>() {
                Ok(value) if (1..=200).contains(&value) => limit = value,
                _ => return problem(StatusCode::UNPROCESSABLE_ENTITY, "limit must be 1 to 200"),
            },
            "cursor" => match decode_cursor(&value) {
                Some(position) => cursor = Some(position),
                None => return problem(StatusCode::UNPROCESSABLE_ENTITY, "not a cursor"),
            },
            // The bench searches for plain words: no LIKE wildcards to escape (event-fn does).
            "q" if !value.is_empty() => title_pattern = Some(format!("%{value}%")),
            _ => {}
        }
    }
    // The same statement event-fn runs (its date filters are NULL here).
    let sql = format!(
        "SELECT {COLUMNS} FROM events
         WHERE ($1::date IS NULL OR date >= $1)
           AND ($2::date IS NULL OR date <= $2)
           AND ($3::text IS NULL OR title ILIKE $3)
           AND ($4::date IS NULL OR (date, id) > ($4, $5::int8))
         ORDER BY date, id
         LIMIT $6"
    );
    let (client, statement) = match prepared(&state, &sql).await {
        Ok(prepared) => prepared,
        Err(response) => return response,
    };
    let none_date: Option<NaiveDate> = None;
    let (after_date, after_id) = match cursor {
        Some((date, id)) => (Some(date), Some(id)),
        None => (None, None),
    };
    let rows = match client
        .query(
            &statement,
            &[
                &none_date,
                &none_date,
                &title_pattern,
                &after_date,
                &after_id,
                &(limit + 1),
            ],
        )
        .await
    {
        Ok(rows) => rows,
        Err(e) => return unavailable(e),
    };
    let more = rows.len() as i64 > limit;
    let events: Vec<EventData> = rows
        .iter()
        .take(limit as usize)
        .map(|row| body_of(row).0)
        .collect();
    let mut response = json_response(StatusCode::OK, &events);
    if let (true, Some(last)) = (more, events.last()) {
        let next = URL_SAFE_NO_PAD.encode(format!("{}|{}", last.date, last.id));
        if let Ok(value) =
            HeaderValue::from_str(&format!("</events?limit={limit}&cursor={next}>; rel=\"next\""))
        {
            response.headers_mut().insert(header::LINK, value);
        }
    }
    response
}

async fn create(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&state, &headers) {
        return problem(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
    }
    let Ok(input) = serde_json::from_slice::<EventInput>(&body) else {
        return problem(StatusCode::UNPROCESSABLE_ENTITY, "the event is not valid");
    };
    let title = input.title.trim().to_owned();
    let Ok(date) = NaiveDate::parse_from_str(&input.date, "%Y-%m-%d") else {
        return problem(StatusCode::UNPROCESSABLE_ENTITY, "date must be YYYY-MM-DD");
    };
    if title.is_empty() || title.chars().count() > 100 {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "title must be 1 to 100 characters",
        );
    }
    let sql = "INSERT INTO events (title, description, date) VALUES ($1, $2, $3) RETURNING id, created_at";
    let (client, statement) = match prepared(&state, sql).await {
        Ok(prepared) => prepared,
        Err(response) => return response,
    };
    match client
        .query_one(&statement, &[&title, &input.description, &date])
        .await
    {
        Ok(row) => {
            let id: i64 = row.get(0);
            let at: NaiveDateTime = row.get(1);
            let body = EventData {
                id,
                title,
                description: input.description,
                date: input.date,
                times: Default::default(),
                created_at: rfc3339_utc(at),
                updated_at: rfc3339_utc(at),
            };
            let mut response = with_etag(json_response(StatusCode::CREATED, &body), id, 1);
            if let Ok(value) = HeaderValue::from_str(&format!("/events/{id}")) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            response
        }
        Err(e) => unavailable(e),
    }
}
