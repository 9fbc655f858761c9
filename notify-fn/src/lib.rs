//! notify-fn: notifications as a Spin HTTP component.
//!
//! This file is the route table. The public API (`api`: `/subscriptions`, `/notifications`)
//! takes the API's tokens. The internal `POST /notifications/dispatch` (event-fn's hand-off and
//! a periodic trigger) takes `notify_token`: it answers 202 at once, then delivers what is due
//! (`dispatch`). Every request is authenticated from its headers before its body is read
//! (`http_kit`).

mod api;
mod destination;
mod dispatch;
mod model;
mod store;
mod subscription;
mod webhook;

use std::rc::Rc;
use std::time::Duration;

use http_kit::route::{self, Route};
use http_kit::{API_TOKENS, Credentials, Incoming, Problem, TokenVariable, send_response, variable};
use model::DisablePolicy;
use spin_sdk::http::{IncomingRequest, Method, Response, ResponseOutparam, Router};

const SUBSCRIPTIONS: Route = Route::new("/subscriptions", "GET, POST");
const SUBSCRIPTION: Route = Route::new("/subscriptions/:id", "GET, DELETE");
const ENABLE: Route = Route::new("/subscriptions/:id/enable", "POST");
const ROTATE_SECRET: Route = Route::new("/subscriptions/:id/rotate-secret", "POST");
const NOTIFICATIONS: Route = Route::new("/notifications", "GET");
const NOTIFICATION: Route = Route::new("/notifications/:id", "GET");
const REDELIVER: Route = Route::new("/notifications/:id/redeliver", "POST");
/// Internal: asks for a dispatch now (bearer `notify_token`).
const DISPATCH: Route = Route::new("/notifications/dispatch", "POST");

/// Every route this component serves (the end-to-end tests check openapi.yaml against it).
pub const ROUTES: [Route; 8] = [
    SUBSCRIPTIONS,
    SUBSCRIPTION,
    ENABLE,
    ROTATE_SECRET,
    NOTIFICATIONS,
    NOTIFICATION,
    REDELIVER,
    DISPATCH,
];

/// Spin's entry point. Only for WebAssembly: natively (the e2e tests link this crate for its
/// `ROUTES`, next to event-fn) it would export the same symbol as event-fn's.
#[cfg(target_arch = "wasm32")]
#[spin_sdk::http_component]
async fn entry(request: IncomingRequest, out: ResponseOutparam) {
    handle(request, out).await
}

/// Answers one request; a dispatch goes on after its answer.
pub async fn handle(request: IncomingRequest, out: ResponseOutparam) {
    let incoming = Incoming::new(request);
    let config = match Config::load() {
        Ok(config) => Rc::new(config),
        Err(error) => {
            eprintln!("notify-fn: configuration: {error}");
            return send_response(out, Problem::misconfigured().into()).await;
        }
    };
    if incoming.path() == DISPATCH.path {
        return dispatch(&config, &incoming, out).await;
    }
    let request = match incoming.read_authorized(&config.api).await {
        Ok(request) => request,
        Err(problem) => return send_response(out, problem.into()).await,
    };
    let mut router = Router::new();
    router.any_async(SUBSCRIPTIONS.path, route::with(&config, api::subscriptions));
    router.any_async(SUBSCRIPTION.path, route::with(&config, api::subscription));
    router.any_async(ENABLE.path, route::with(&config, api::enable));
    router.any_async(ROTATE_SECRET.path, route::with(&config, api::rotate_secret));
    router.any_async(NOTIFICATIONS.path, route::with(&config, api::notifications));
    router.any_async(NOTIFICATION.path, route::with(&config, api::notification));
    router.any_async(REDELIVER.path, route::with(&config, api::redeliver));
    router.any("/*", route::unknown_path);
    send_response(out, router.handle_async(request).await).await;
}

/// Answers first, so the caller (event-fn's hand-off, a CronJob) need not wait for webhooks;
/// then delivers. The body is never read.
async fn dispatch(config: &Config, incoming: &Incoming, out: ResponseOutparam) {
    if let Err(problem) = incoming.authorize(&config.internal) {
        return send_response(out, problem.into()).await;
    }
    if *incoming.method() != Method::Post {
        return send_response(out, DISPATCH.method_not_allowed().into()).await;
    }
    send_response(out, Response::builder().status(202).build()).await;
    if dispatch::dispatch(config).await.is_err() {
        eprintln!("notify-fn: dispatch stopped: the database is unavailable");
    }
}

/// What the component reads from its Spin variables.
pub struct Config {
    pub db_url: String,
    /// The public API's tokens: `api_token`, `api_token_next` (rotation), `api_read_token`.
    pub api: Credentials,
    /// The internal route's tokens: `notify_token`, `notify_token_next` (rotation).
    pub internal: Credentials,
    /// The delay before each retry; a delivery fails after the last.
    pub delivery_schedule: Vec<Duration>,
    /// How long one attempt may take, its answer's headers and body together.
    pub delivery_timeout: Duration,
    /// Attempts in flight to one subscription at most (one while its last attempt failed).
    pub delivery_concurrency: u32,
    pub allow_private_webhooks: bool,
    pub disable: DisablePolicy,
    /// How long a rotated-out secret still signs every delivery beside the new one.
    pub secret_rotation_grace: Duration,
    /// How long delivered notifications are kept.
    pub retention: Duration,
}

/// The largest `delivery_concurrency`: the claim looks at most this many due deliveries of a
/// subscription (a constant in its SQL, `LIMIT 64`, so that the planner's estimates stay small).
pub const MAX_DELIVERY_CONCURRENCY: u32 = 64;

impl Config {
    fn load() -> Result<Self, String> {
        let api = Credentials::load("notifications", API_TOKENS, variable)?;
        let internal = Credentials::load(
            "notifications",
            &[
                ("notify_token", TokenVariable::Required),
                ("notify_token_next", TokenVariable::Optional),
            ],
            variable,
        )?;
        let concurrency = number("delivery_concurrency")?;
        if !(1..=MAX_DELIVERY_CONCURRENCY).contains(&concurrency) {
            return Err(format!(
                "delivery_concurrency {concurrency} is not between 1 and {MAX_DELIVERY_CONCURRENCY}"
            ));
        }
        let retention_days = variable("retention_days")?;
        let retention = retention_days
            .parse::<f64>()
            .ok()
            .and_then(|days| Duration::try_from_secs_f64(days * 86_400.0).ok())
            .ok_or_else(|| format!("retention_days {retention_days:?} is not a number of days"))?;
        Ok(Self {
            db_url: variable("db_url")?,
            api,
            internal,
            delivery_schedule: durations("delivery_schedule")?,
            delivery_timeout: Duration::from_millis(number("delivery_timeout_ms")?.into()),
            delivery_concurrency: concurrency,
            allow_private_webhooks: variable("allow_private_webhooks")? == "true",
            disable: DisablePolicy {
                failing_for: duration("disable_after_failing_for")?,
                failed_deliveries: number("disable_after_failed_deliveries")?,
            },
            secret_rotation_grace: duration("secret_rotation_grace")?,
            retention,
        })
    }
}

/// A variable holding a whole number.
fn number(name: &str) -> Result<u32, String> {
    let text = variable(name)?;
    text.parse()
        .map_err(|_| format!("{name} {text:?} is not a whole number"))
}

/// A variable holding one duration (`90s`, `24h`, `5d`).
fn duration(name: &str) -> Result<Duration, String> {
    match durations(name)?.as_slice() {
        [one] => Ok(*one),
        _ => Err(format!("{name} must be one duration, such as 24h")),
    }
}

/// A variable holding a comma-separated list of durations.
fn durations(name: &str) -> Result<Vec<Duration>, String> {
    let text = variable(name)?;
    parse_durations(&text).map_err(|e| format!("{name} {text:?}: {e}"))
}

/// `5s,5m,30m,2h` → durations; units `ms`, `s`, `m`, `h`, `d`; empty for none.
fn parse_durations(text: &str) -> Result<Vec<Duration>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            let split = part.find(|c: char| !c.is_ascii_digit()).unwrap_or(part.len());
            let (number, unit) = part.split_at(split);
            let number: u64 = number
                .parse()
                .map_err(|_| format!("{part:?} does not start with a number"))?;
            let seconds = match unit {
                "ms" => return Ok(Duration::from_millis(number)),
                "s" => 1,
                "m" => 60,
                "h" => 3600,
                "d" => 86_400,
                _ => return Err(format!("{part:?}: the unit must be ms, s, m, h or d")),
            };
            Ok(Duration::from_secs(number.saturating_mul(seconds)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_lists() {
        assert_eq!(
            parse_durations("5s,5m,30m,2h,5h,10h").unwrap(),
            [5, 300, 1800, 7200, 18000, 36000].map(Duration::from_secs)
        );
        assert_eq!(
            parse_durations("100ms, 1s, 5d").unwrap(),
            [
                Duration::from_millis(100),
                Duration::from_secs(1),
                Duration::from_secs(432_000)
            ]
        );
        assert!(parse_durations("").unwrap().is_empty());
        assert!(parse_durations("5x").is_err());
        assert!(parse_durations("s").is_err());
    }
}
