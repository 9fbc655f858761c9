//! The `/events` handlers: each reads like the API it serves.

use std::rc::Rc;

use event_contract::{EventData, EventTimes, rfc3339_utc};
use http_kit::page::{self, Page};
use http_kit::{Problem, Reply, json_response, route};
use spin_sdk::http::{Method, Params, Request, Response};

use crate::domain::{EventInput, EventPatch};
use crate::handoff::{AfterResponse, Exchange};
use crate::pagination::{Cursor, ListQuery};
use crate::request::{self, Accepts};
use crate::store::{CreateOutcome, Event, Store, WriteOutcome};
use crate::{Config, EVENT, EVENTS};

pub async fn collection(exchange: Rc<Exchange>, request: Request, _: Params) -> Reply {
    let config = &exchange.config;
    match request.method() {
        Method::Get | Method::Head => list(config, &request),
        Method::Post => create(&exchange, &request),
        Method::Options => Ok(options(EVENTS.allow)),
        _ => Err(EVENTS.method_not_allowed()),
    }
}

pub async fn item(exchange: Rc<Exchange>, request: Request, params: Params) -> Reply {
    let id = route::id(&params, "event")?;
    let config = &exchange.config;
    match request.method() {
        Method::Get | Method::Head => get(config, &request, id),
        Method::Put => replace(&exchange, &request, id),
        Method::Patch => patch(&exchange, &request, id),
        Method::Delete => delete(&exchange, &request, id),
        Method::Options => item_options(config, id),
        _ => Err(EVENT.method_not_allowed()),
    }
}

fn list(config: &Config, request: &Request) -> Reply {
    let query = ListQuery::parse(request.query())
        .map_err(|errors| Problem::invalid("the query parameters are not valid", errors))?;
    let Page { items: events, more } = open(config)?.list(&query)?;
    let body: Vec<EventData> = events.iter().map(event_data).collect();
    let mut response = json_response(200, &body);
    if let (true, Some(last)) = (more, events.last()) {
        let cursor = Cursor {
            date: last.date,
            id: last.id,
        };
        response.set_header(
            "link",
            page::next_link(EVENTS.path, &query.filters(), query.limit, &cursor.encode()),
        );
    }
    Ok(response)
}

fn create(exchange: &Exchange, request: &Request) -> Reply {
    let key = request::idempotency_key(request)?;
    let input = EventInput::parse(&request::json(request, Accepts::Json)?)
        .map_err(|errors| Problem::invalid("the event is not valid", errors))?;
    match open(&exchange.config)?.create(&input, key.as_deref())? {
        CreateOutcome::Created(event, dispatcher) => {
            exchange.then(AfterResponse::after_change(dispatcher));
            Ok(created(&event, false))
        }
        CreateOutcome::Replayed(event) => Ok(created(&event, true)),
        CreateOutcome::KeyReused => Err(idempotency_key_reused()),
    }
}

fn get(config: &Config, request: &Request, id: i64) -> Reply {
    let event = open(config)?.get(id)?.ok_or_else(|| no_event(id))?;
    if request::if_none_match(request, id, event.version) {
        return Ok(Response::builder()
            .status(304)
            .header("etag", request::etag(id, event.version))
            .build());
    }
    Ok(event_response(200, &event))
}

/// The methods of an event that exists: a deleted (or never created) event has none.
fn item_options(config: &Config, id: i64) -> Reply {
    open(config)?.get(id)?.ok_or_else(|| no_event(id))?;
    Ok(options(EVENT.allow))
}

fn replace(exchange: &Exchange, request: &Request, id: i64) -> Reply {
    let input = EventInput::parse(&request::json(request, Accepts::Json)?)
        .map_err(|errors| Problem::invalid("the event is not valid", errors))?;
    let if_match = request::if_match(request, id);
    let outcome = open(&exchange.config)?.replace(id, &input, if_match.as_deref())?;
    written(exchange, id, outcome)
}

fn patch(exchange: &Exchange, request: &Request, id: i64) -> Reply {
    let patch = EventPatch::parse(&request::json(request, Accepts::JsonOrMergePatch)?)
        .map_err(|errors| Problem::invalid("the patch is not valid", errors))?;
    let if_match = request::if_match(request, id);
    let store = open(&exchange.config)?;
    if patch.moves() {
        let outcome = move_event(&store, id, &patch, if_match.as_deref())?;
        return written(exchange, id, outcome);
    }
    if patch.is_empty() {
        // An empty merge patch changes nothing: answer with the event as it is.
        let event = store.get(id)?.ok_or_else(|| no_event(id))?;
        if if_match.is_some_and(|versions| !versions.contains(&event.version)) {
            return Err(precondition_failed());
        }
        return Ok(event_response(200, &event));
    }
    let outcome = store.patch_text(id, &patch, if_match.as_deref())?;
    written(exchange, id, outcome)
}

/// How often a patch that moves an event is tried again when a concurrent write changed the
/// event between its read and its write.
const MOVE_ATTEMPTS: usize = 3;

/// A patch of the date or the time fields: whether the merged times exist in the zone (and end
/// after they start) depends on the fields it leaves as they are, so the event is read, merged
/// and checked here, then replaced on the condition that it is still the version read.
fn move_event(
    store: &Store,
    id: i64,
    patch: &EventPatch,
    if_match: Option<&[i64]>,
) -> Result<WriteOutcome<Event>, Problem> {
    for _ in 0..MOVE_ATTEMPTS {
        let current = store.get(id)?.ok_or_else(|| no_event(id))?;
        if if_match.is_some_and(|versions| !versions.contains(&current.version)) {
            return Err(precondition_failed());
        }
        let merged = patch
            .merged(&current.input())
            .map_err(|errors| Problem::invalid("the patch is not valid", errors))?;
        match store.replace(id, &merged, Some(&[current.version]))? {
            // Changed since it was read: read it again (a named If-Match now fails above).
            WriteOutcome::PreconditionFailed => continue,
            outcome => return Ok(outcome),
        }
    }
    eprintln!("event-fn: event {id} changed under {MOVE_ATTEMPTS} patches in a row");
    Err(Problem::unavailable())
}

fn delete(exchange: &Exchange, request: &Request, id: i64) -> Reply {
    let if_match = request::if_match(request, id);
    match open(&exchange.config)?.delete(id, if_match.as_deref())? {
        WriteOutcome::Done((), dispatcher) => {
            exchange.then(AfterResponse::after_change(dispatcher));
            Ok(Response::builder().status(204).build())
        }
        WriteOutcome::NotFound => Err(no_event(id)),
        WriteOutcome::PreconditionFailed => Err(precondition_failed()),
    }
}

/// The answer to a conditional update; a change hands off to notify-fn after it unless a
/// dispatcher is running.
fn written(exchange: &Exchange, id: i64, outcome: WriteOutcome<Event>) -> Reply {
    match outcome {
        WriteOutcome::Done(event, dispatcher) => {
            exchange.then(AfterResponse::after_change(dispatcher));
            Ok(event_response(200, &event))
        }
        WriteOutcome::NotFound => Err(no_event(id)),
        WriteOutcome::PreconditionFailed => Err(precondition_failed()),
    }
}

fn open(config: &Config) -> Result<Store, Problem> {
    Ok(Store::open(&config.db_url)?)
}

fn no_event(id: i64) -> Problem {
    Problem::not_found(format!("there is no event {id}"))
}

fn precondition_failed() -> Problem {
    Problem::new(
        412,
        "Precondition Failed",
        "the event has changed since the ETag in If-Match was issued: fetch it again",
    )
}

fn idempotency_key_reused() -> Problem {
    Problem::new(
        422,
        "Idempotency-Key reused",
        "this Idempotency-Key was already used with a different request body",
    )
    .with_type("/problems/idempotency-key-reused")
}

fn options(allow: &str) -> Response {
    Response::builder().status(204).header("allow", allow).build()
}

fn created(event: &Event, replayed: bool) -> Response {
    let mut response = event_response(201, event);
    response.set_header("location", format!("/events/{}", event.id));
    if replayed {
        response.set_header("idempotent-replayed", "true");
    }
    response
}

fn event_response(status: u16, event: &Event) -> Response {
    let mut response = json_response(status, &event_data(event));
    response.set_header("etag", request::etag(event.id, event.version));
    response
}

/// An event as the API (and a notification) shows it.
fn event_data(event: &Event) -> EventData {
    EventData {
        id: event.id,
        title: event.title.as_str().to_owned(),
        description: event.description.as_ref().map(|d| d.as_str().to_owned()),
        date: event.date.to_string(),
        times: {
            let times = event.schedule.fields();
            EventTimes {
                start_time: times.start_time.map(|t| t.to_string()),
                end_time: times.end_time.map(|t| t.to_string()),
                time_zone: times.time_zone.map(|z| z.name().to_owned()),
                end_date: times.end_date.map(|d| d.to_string()),
            }
        },
        created_at: rfc3339_utc(event.created_at),
        updated_at: rfc3339_utc(event.updated_at),
    }
}
