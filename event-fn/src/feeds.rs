//! Calendars (issue 15): `GET /events.ics` for API clients, and feeds for calendar apps, which
//! cannot send a token: `POST /feeds` issues a URL with a long random secret (shown once, kept
//! only as its SHA-256), `GET /feeds` lists them without secrets, `DELETE /feeds/{id}` revokes
//! one at once, and `GET /feeds/{secret}.ics` is the calendar, without a token.
//!
//! A calendar holds the events `GET /events` would list with the same filters, from
//! `WINDOW_DAYS` before today when no `from` is set, and at most `MAX_EVENTS` of them (the
//! first in date order); a cut calendar says so (`Feed-Truncated: true` and the calendar
//! property `ical::TRUNCATED_PROPERTY`). Its ETag is a digest of its bytes, so a poll of an
//! unchanged calendar is a `304`.

use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::DateTime;
use event_contract::rfc3339_utc;
use http_kit::{Incoming, Problem, Reply, json_response, route};
use serde::Serialize;
use sha2::{Digest, Sha256};
use spin_sdk::http::{Method, Params, Request, Response};

use crate::domain::{CalendarFilter, EventDate};
use crate::pagination::ListQuery;
use crate::request::{self, Accepts};
use crate::store::{Calendar, Feed, Store};
use crate::{Config, EVENTS_CALENDAR, FEED, FEED_CALENDAR, FEEDS, ical};

/// The most events one calendar holds.
pub const MAX_EVENTS: usize = 1000;

/// Without `from`, a calendar starts this many days before today (UTC).
pub const WINDOW_DAYS: i64 = 365;

/// Random bytes in a feed secret: 256 bits, 43 characters of base64url.
const SECRET_BYTES: u64 = 32;

/// `GET /events.ics`: the events of `GET /events` with the same filters, as a calendar.
pub async fn events_calendar(config: Rc<Config>, request: Request, _: Params) -> Reply {
    if !matches!(request.method(), Method::Get | Method::Head) {
        return Err(EVENTS_CALENDAR.method_not_allowed());
    }
    let query = ListQuery::parse(request.query())
        .map_err(|errors| Problem::invalid("the query parameters are not valid", errors))?;
    let filter = CalendarFilter {
        from: query.from,
        to: query.to,
        title_contains: query.title_contains,
    };
    let calendar = open(&config)?.calendar(&filter, window_start(), MAX_EVENTS)?;
    let if_none_match = request.header("if-none-match").and_then(|h| h.as_str());
    Ok(calendar_response(&calendar, if_none_match))
}

/// `/feeds`: list (`GET`) or create (`POST`).
pub async fn collection(config: Rc<Config>, request: Request, _: Params) -> Reply {
    match request.method() {
        Method::Get | Method::Head => {
            let feeds = open(&config)?.feeds()?;
            let body: Vec<FeedBody> = feeds.iter().map(|feed| FeedBody::of(feed, None)).collect();
            Ok(json_response(200, &body))
        }
        Method::Post => create(&config, &request),
        _ => Err(FEEDS.method_not_allowed()),
    }
}

/// `/feeds/{id}`: revoke (`DELETE`).
pub async fn item(config: Rc<Config>, request: Request, params: Params) -> Reply {
    let id = route::id(&params, "feed")?;
    if *request.method() != Method::Delete {
        return Err(FEED.method_not_allowed());
    }
    if open(&config)?.delete_feed(id)? {
        Ok(Response::builder().status(204).build())
    } else {
        Err(Problem::not_found(format!("there is no feed {id}")))
    }
}

fn create(config: &Config, request: &Request) -> Reply {
    let filter = CalendarFilter::parse(&request::json(request, Accepts::Json)?)
        .map_err(|errors| Problem::invalid("the feed is not valid", errors))?;
    let secret = URL_SAFE_NO_PAD.encode(wasi::random::random::get_random_bytes(SECRET_BYTES));
    let feed = open(config)?.create_feed(&digest(&secret), &filter)?;
    Ok(json_response(201, &FeedBody::of(&feed, Some(feed_path(&secret)))))
}

/// The path of a feed's `.ics` file: `feed_file` without the `/feeds/` prefix is its file.
pub fn feed_file(path: &str) -> Option<&str> {
    path.strip_prefix("/feeds/")
        .filter(|file| file.ends_with(".ics") && !file.contains('/'))
}

/// `GET /feeds/{secret}.ics`, without a token: the secret in the URL is the credential.
pub fn subscribed(config: &Config, incoming: &Incoming, file: &str) -> Reply {
    if !matches!(incoming.method(), Method::Get | Method::Head) {
        return Err(FEED_CALENDAR.method_not_allowed());
    }
    let no_feed = || Problem::not_found("there is no such feed: it was revoked, or never issued");
    let secret = file
        .strip_suffix(".ics")
        .filter(|s| is_secret(s))
        .ok_or_else(no_feed)?;
    let calendar = open(config)?
        .feed_calendar(&digest(secret), window_start(), MAX_EVENTS)?
        .ok_or_else(no_feed)?;
    Ok(calendar_response(
        &calendar,
        incoming.header("if-none-match").as_deref(),
    ))
}

/// The shape of a secret this API issues (so that no other string costs a query).
fn is_secret(text: &str) -> bool {
    text.len() == 43
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// How a secret is kept: its SHA-256, hex. A 256-bit random secret needs no slow hash.
fn digest(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn feed_path(secret: &str) -> String {
    format!("/feeds/{secret}.ics")
}

/// The calendar with its ETag, or `304` when `If-None-Match` names it.
fn calendar_response(calendar: &Calendar, if_none_match: Option<&str>) -> Response {
    let body = ical::calendar("Events", &calendar.events, calendar.truncated);
    let etag = format!("\"{}\"", &hex(&Sha256::digest(body.as_bytes()))[..32]);
    // Calendars are private (a feed URL is a credential): no shared cache keeps one, and a
    // client revalidates with the ETag.
    let mut builder = Response::builder();
    builder
        .header("etag", &etag)
        .header("cache-control", "private, no-cache");
    if request::none_match(if_none_match, &etag) {
        return builder.status(304).build();
    }
    builder
        .status(200)
        .header("content-type", "text/calendar; charset=utf-8");
    if calendar.truncated {
        builder.header("feed-truncated", "true");
    }
    builder.body(body).build()
}

/// Where a calendar without `from` starts: `WINDOW_DAYS` before today (UTC).
fn window_start() -> EventDate {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| i64::try_from(since.as_secs()).unwrap_or(i64::MAX));
    let today = DateTime::from_timestamp(now, 0).unwrap_or_default().date_naive();
    EventDate::from_date(today - chrono::Duration::days(WINDOW_DAYS))
}

fn open(config: &Config) -> Result<Store, Problem> {
    Ok(Store::open(&config.db_url)?)
}

/// A feed as `/feeds` shows it; `url` only in the answer to its creation.
#[derive(Serialize)]
struct FeedBody {
    id: i64,
    q: Option<String>,
    from: Option<String>,
    to: Option<String>,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
}

impl FeedBody {
    fn of(feed: &Feed, url: Option<String>) -> Self {
        Self {
            id: feed.id,
            q: feed.filter.title_contains.clone(),
            from: feed.filter.from.map(|d| d.to_string()),
            to: feed.filter.to.map(|d| d.to_string()),
            created_at: rfc3339_utc(feed.created_at),
            url,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_files() {
        assert_eq!(feed_file("/feeds/abc.ics"), Some("abc.ics"));
        assert_eq!(feed_file("/feeds/1"), None);
        assert_eq!(feed_file("/feeds"), None);
        assert_eq!(feed_file("/feeds/a/b.ics"), None);
        assert_eq!(feed_file("/events.ics"), None);
    }

    #[test]
    fn secrets() {
        let secret = URL_SAFE_NO_PAD.encode([7u8; 32]);
        assert!(is_secret(&secret));
        assert!(!is_secret(&secret[1..]));
        assert!(!is_secret(&format!("{}+", &secret[1..])));
        assert_eq!(digest("x").len(), 64);
        assert_ne!(digest("x"), digest("y"));
    }
}
