//! event-fn: the events API (`/events`) as a Spin HTTP component.
//!
//! `GET /openapi.yaml` (the API's description, public) is answered first; every other request
//! is authenticated, then routed; handlers parse input into domain types
//! (`domain`, `pagination`), call the store once and render the result or a problem. A change
//! commits its notification with it (`store`) and then hands off to notify-fn (`handoff`).

mod domain;
mod events;
mod handoff;
mod pagination;
mod problem;
mod request;
mod store;

use std::rc::Rc;
use std::time::Duration;

use spin_sdk::http::{Method, Params, Request, Response, Router};
use spin_sdk::http_component;
use spin_sdk::variables;

use crate::problem::Problem;

/// The OpenAPI document of the whole app, served at `/openapi.yaml` without a token.
const OPENAPI: &str = include_str!("../../openapi.yaml");
const OPENAPI_PATH: &str = "/openapi.yaml";

/// What the component reads from its Spin variables.
pub struct Config {
    pub db_url: String,
    pub api_token: String,
    /// notify-fn's base URL (scheme://host[:port]).
    pub notify_url: String,
    pub notify_token: String,
    /// How long a write waits for notify-fn to take the hand-off.
    pub notify_timeout: Duration,
}

impl Config {
    fn load() -> Result<Self, String> {
        let get = |name: &str| variables::get(name).map_err(|e| format!("variable {name}: {e}"));
        let timeout = get("notify_timeout_ms")?;
        let timeout_ms = timeout
            .parse()
            .map_err(|_| format!("notify_timeout_ms {timeout:?} is not a number of milliseconds"))?;
        Ok(Self {
            db_url: get("db_url")?,
            api_token: get("api_token")?,
            notify_url: get("notify_url")?,
            notify_token: get("notify_token")?,
            notify_timeout: Duration::from_millis(timeout_ms),
        })
    }
}

#[http_component]
async fn handle_events(request: Request) -> Response {
    if request.path() == OPENAPI_PATH {
        return openapi(&request);
    }
    let config = match Config::load() {
        Ok(config) => Rc::new(config),
        Err(error) => {
            eprintln!("event-fn: configuration: {error}");
            return Problem::misconfigured().into();
        }
    };
    if let Err(problem) = request::authenticate(&request, &config.api_token) {
        return problem.into();
    }
    let mut router = Router::new();
    let for_items = config.clone();
    router.any_async("/events", move |request: Request, _: Params| {
        let config = config.clone();
        async move { events::collection(&config, request).await }
    });
    router.any_async("/events/:id", move |request: Request, params: Params| {
        let config = for_items.clone();
        async move { events::item(&config, request, params.get("id").unwrap_or_default()).await }
    });
    router.any("/*", |request: Request, _: Params| {
        Response::from(Problem::not_found(format!(
            "{} is not a resource of this API",
            request.path()
        )))
    });
    router.handle_async(request).await
}

/// The spec is public: a deployment describes itself to anyone who asks.
fn openapi(request: &Request) -> Response {
    match request.method() {
        Method::Get | Method::Head => Response::builder()
            .status(200)
            .header("content-type", "application/yaml")
            .body(OPENAPI)
            .build(),
        _ => Problem::method_not_allowed("GET, HEAD").into(),
    }
}
