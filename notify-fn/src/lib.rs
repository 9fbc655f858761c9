//! notify-fn: notifications as a Spin HTTP component.
//!
//! Public API (bearer `api_token`): `/subscriptions` and `/notifications`. Internal route
//! (bearer `notify_token`): `POST /notifications/dispatch`, called by event-fn's hand-off and
//! a periodic trigger; it answers 202 at once and then delivers what is due (`dispatch`).

mod api;
mod dispatch;
mod problem;
mod sleep;
mod store;
mod subscription;
mod webhook;

use std::time::Duration;

use spin_sdk::http::conversions::TryFromIncomingRequest;
use spin_sdk::http::{Fields, IncomingRequest, OutgoingResponse, Request, Response, ResponseOutparam};
use spin_sdk::http_component;
use spin_sdk::variables;

use crate::problem::Problem;

const DISPATCH_PATH: &str = "/notifications/dispatch";

/// What the component reads from its Spin variables.
pub struct Config {
    pub db_url: String,
    pub api_token: String,
    pub notify_token: String,
    /// The delay before each retry; a delivery fails after the last.
    pub delivery_schedule: Vec<Duration>,
    pub delivery_timeout: Duration,
    pub allow_private_webhooks: bool,
}

impl Config {
    fn load() -> Result<Self, String> {
        let get = |name: &str| variables::get(name).map_err(|e| format!("variable {name}: {e}"));
        let schedule = get("delivery_schedule")?;
        let timeout = get("delivery_timeout_ms")?;
        Ok(Self {
            db_url: get("db_url")?,
            api_token: get("api_token")?,
            notify_token: get("notify_token")?,
            delivery_schedule: parse_schedule(&schedule)
                .map_err(|e| format!("delivery_schedule {schedule:?}: {e}"))?,
            delivery_timeout: Duration::from_millis(
                timeout
                    .parse()
                    .map_err(|_| format!("delivery_timeout_ms {timeout:?} is not milliseconds"))?,
            ),
            allow_private_webhooks: get("allow_private_webhooks")? == "true",
        })
    }
}

/// `5s,5m,30m,2h` → durations; units `ms`, `s`, `m`, `h`; empty for no retries.
fn parse_schedule(text: &str) -> Result<Vec<Duration>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            let split = part.find(|c: char| !c.is_ascii_digit()).unwrap_or(part.len());
            let (number, unit) = part.split_at(split);
            let number: u64 = number
                .parse()
                .map_err(|_| format!("{part:?} does not start with a number"))?;
            Ok(match unit {
                "ms" => Duration::from_millis(number),
                "s" => Duration::from_secs(number),
                "m" => Duration::from_secs(number * 60),
                "h" => Duration::from_secs(number * 3600),
                _ => return Err(format!("{part:?}: the unit must be ms, s, m or h")),
            })
        })
        .collect()
}

#[http_component]
async fn handle_notifications(incoming: IncomingRequest, out: ResponseOutparam) {
    let request = match Request::try_from_incoming_request(incoming).await {
        Ok(request) => request,
        Err(error) => {
            eprintln!("notify-fn: unreadable request: {error}");
            return respond(
                out,
                Problem::invalid_field("", "the request could not be read").into(),
            )
            .await;
        }
    };
    let config = match Config::load() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("notify-fn: configuration: {error}");
            return respond(out, Problem::misconfigured().into()).await;
        }
    };
    if request.path() == DISPATCH_PATH {
        if let Err(problem) = api::authenticate(&request, &config.notify_token) {
            return respond(out, problem.into()).await;
        }
        if *request.method() != spin_sdk::http::Method::Post {
            return respond(out, Problem::method_not_allowed("POST").into()).await;
        }
        // Answer first: the caller (event-fn's hand-off, a CronJob) need not wait for webhooks.
        respond(out, Response::builder().status(202).build()).await;
        if dispatch::dispatch(&config).await.is_err() {
            eprintln!("notify-fn: dispatch stopped: the database is unavailable");
        }
        return;
    }
    let response = match api::authenticate(&request, &config.api_token) {
        Ok(()) => api::route(config, request).await,
        Err(problem) => problem.into(),
    };
    respond(out, response).await;
}

async fn respond(out: ResponseOutparam, response: Response) {
    let headers: Vec<(String, Vec<u8>)> = response
        .headers()
        .map(|(name, value)| (name.to_owned(), value.as_bytes().to_vec()))
        .collect();
    let fields = match Fields::from_list(&headers) {
        Ok(fields) => fields,
        Err(error) => {
            eprintln!("notify-fn: invalid response headers: {error:?}");
            Fields::new()
        }
    };
    let outgoing = OutgoingResponse::new(fields);
    if outgoing.set_status_code(*response.status()).is_err() {
        eprintln!("notify-fn: invalid status {}", response.status());
    }
    if let Err(error) = out.set_with_body(outgoing, response.into_body()).await {
        eprintln!("notify-fn: could not send the response: {error:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules() {
        assert_eq!(
            parse_schedule("5s,5m,30m,2h,5h,10h").unwrap(),
            [5, 300, 1800, 7200, 18000, 36000].map(Duration::from_secs)
        );
        assert_eq!(
            parse_schedule("100ms, 1s").unwrap(),
            [Duration::from_millis(100), Duration::from_secs(1)]
        );
        assert!(parse_schedule("").unwrap().is_empty());
        assert!(parse_schedule("5x").is_err());
        assert!(parse_schedule("s").is_err());
    }
}
