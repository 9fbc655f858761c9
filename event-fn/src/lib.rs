//! event-fn: the events API (`/events`) and its calendars (`/events.ics`, `/feeds`) as a Spin
//! HTTP component.
//!
//! This file is the route table. `GET /openapi.yaml` (the API's description) and a feed's
//! calendar (`/feeds/{secret}.ics`, the secret is the credential) are public; every other
//! request is authenticated from its headers before its body is read (`http_kit`), then
//! routed. Handlers (`events`, `feeds`) parse input into domain types (`domain`, `schedule`,
//! `pagination`, `request`), call the store once and render the result (`ical` for calendars)
//! or a problem. A change commits its notification with it (`store`); once the client has its
//! answer, the request hands off to notify-fn (`handoff`).

mod domain;
mod events;
mod feeds;
mod handoff;
mod ical;
mod pagination;
mod request;
mod schedule;
mod store;

use std::rc::Rc;
use std::time::Duration;

use handoff::Exchange;
use http_kit::route::{self, Route};
use http_kit::{API_TOKENS, Credentials, Incoming, Problem, variable};
use spin_sdk::http::{IncomingRequest, Method, Response, ResponseOutparam, Router};

/// The app's OpenAPI document, served without a token.
const SPEC: Route = Route::new("/openapi.yaml", "GET, HEAD");
const EVENTS: Route = Route::new("/events", "GET, HEAD, POST, OPTIONS");
const EVENT: Route = Route::new("/events/:id", "GET, HEAD, PUT, PATCH, DELETE, OPTIONS");
const EVENTS_CALENDAR: Route = Route::new("/events.ics", "GET, HEAD");
const FEEDS: Route = Route::new("/feeds", "GET, HEAD, POST");
const FEED: Route = Route::new("/feeds/:id", "DELETE");
/// A feed's calendar: matched before authentication (`feeds::feed_file`), not by the router,
/// so its path is written as openapi.yaml writes it.
const FEED_CALENDAR: Route = Route::new("/feeds/{secret}.ics", "GET, HEAD");

/// Every route this component serves (the end-to-end tests check openapi.yaml against it).
pub const ROUTES: [Route; 7] = [SPEC, EVENTS, EVENT, EVENTS_CALENDAR, FEEDS, FEED, FEED_CALENDAR];

/// The OpenAPI document of the whole app.
const OPENAPI: &str = include_str!("../../openapi.yaml");

/// Spin's entry point. Only for WebAssembly: natively (the e2e tests link this crate for its
/// `ROUTES`, next to notify-fn) it would export the same symbol as notify-fn's.
#[cfg(target_arch = "wasm32")]
#[spin_sdk::http_component]
async fn entry(request: IncomingRequest, out: ResponseOutparam) {
    handle(request, out).await
}

/// Answers one request, then does what its handler left for after the response (the hand-off):
/// the client never waits for it.
pub async fn handle(request: IncomingRequest, out: ResponseOutparam) {
    let (response, exchange) = answer(Incoming::new(request)).await;
    http_kit::send_response(out, response).await;
    if let Some(exchange) = exchange {
        exchange.finish().await;
    }
}

/// The response, and the exchange of a routed request (what it left to do after).
async fn answer(incoming: Incoming) -> (Response, Option<Rc<Exchange>>) {
    if incoming.path() == SPEC.path {
        return (openapi(incoming.method()), None);
    }
    let config = match Config::load() {
        Ok(config) => Rc::new(config),
        Err(error) => {
            eprintln!("event-fn: configuration: {error}");
            return (Problem::misconfigured().into(), None);
        }
    };
    if let Some(file) = feeds::feed_file(incoming.path()) {
        return (
            http_kit::respond(feeds::subscribed(&config, &incoming, file)),
            None,
        );
    }
    let request = match incoming.read_authorized(&config.api).await {
        Ok(request) => request,
        Err(problem) => return (problem.into(), None),
    };
    let exchange = Rc::new(Exchange::new(config.clone()));
    let mut router = Router::new();
    router.any_async(EVENTS.path, route::with(&exchange, events::collection));
    router.any_async(EVENT.path, route::with(&exchange, events::item));
    router.any_async(EVENTS_CALENDAR.path, route::with(&config, feeds::events_calendar));
    router.any_async(FEEDS.path, route::with(&config, feeds::collection));
    router.any_async(FEED.path, route::with(&config, feeds::item));
    router.any("/*", route::unknown_path);
    (router.handle_async(request).await, Some(exchange))
}

/// The spec is public: a deployment describes itself to anyone who asks.
fn openapi(method: &Method) -> Response {
    match method {
        Method::Get | Method::Head => Response::builder()
            .status(200)
            .header("content-type", "application/yaml")
            .body(OPENAPI)
            .build(),
        _ => SPEC.method_not_allowed().into(),
    }
}

/// What the component reads from its Spin variables.
pub struct Config {
    pub db_url: String,
    /// The public API's tokens: `api_token`, `api_token_next` (rotation), `api_read_token`.
    pub api: Credentials,
    /// notify-fn's base URL (scheme://host[:port]).
    pub notify_url: String,
    /// The token event-fn sends to notify-fn.
    pub notify_token: String,
    /// How long a write waits for notify-fn to take the hand-off.
    pub notify_timeout: Duration,
}

impl Config {
    fn load() -> Result<Self, String> {
        let api = Credentials::load("events", API_TOKENS, variable)?;
        let notify_token = variable("notify_token")?;
        http_kit::check_token("notify_token", &notify_token)?;
        let timeout = variable("notify_timeout_ms")?;
        let timeout_ms = timeout
            .parse()
            .map_err(|_| format!("notify_timeout_ms {timeout:?} is not a number of milliseconds"))?;
        Ok(Self {
            db_url: variable("db_url")?,
            api,
            notify_url: variable("notify_url")?,
            notify_token,
            notify_timeout: Duration::from_millis(timeout_ms),
        })
    }
}
