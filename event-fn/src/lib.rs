//! event-fn: the events API (`/events`) as a Spin HTTP component.
//!
//! Every request is authenticated, then routed; handlers parse input into domain types
//! (`domain`, `pagination`), call the store once and render the result or a problem.

mod domain;
mod events;
mod pagination;
mod problem;
mod request;
mod store;

use std::rc::Rc;

use spin_sdk::http::{Params, Request, Response, Router};
use spin_sdk::http_component;
use spin_sdk::variables;

use crate::problem::Problem;

/// What the component reads from its Spin variables.
pub struct Config {
    pub db_url: String,
    pub api_token: String,
}

impl Config {
    fn load() -> Result<Self, variables::Error> {
        Ok(Self {
            db_url: variables::get("db_url")?,
            api_token: variables::get("api_token")?,
        })
    }
}

#[http_component]
fn handle_events(request: Request) -> Response {
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
    let shared = config.clone();
    router.any("/events", move |request: Request, _: Params| {
        events::collection(&shared, request)
    });
    router.any("/events/:id", move |request: Request, params: Params| {
        events::item(&config, request, params.get("id").unwrap_or_default())
    });
    router.any("/*", |request: Request, _: Params| {
        Response::from(Problem::not_found(format!(
            "{} is not a resource of this API",
            request.path()
        )))
    });
    router.handle(request)
}
