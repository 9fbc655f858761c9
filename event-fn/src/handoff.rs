//! Telling notify-fn that there is something to deliver. Best effort and bounded in time: the
//! notification is already committed in the outbox, so a slow, failing or absent notify-fn
//! only delays its delivery until the next periodic dispatch.

use http_kit::with_timeout;
use spin_sdk::http::{Method, Request, Response, send};

use crate::Config;

/// Asks notify-fn to dispatch now, waiting at most `config.notify_timeout`.
pub async fn request_dispatch(config: &Config) {
    let request = Request::builder()
        .method(Method::Post)
        .uri(format!(
            "{}/notifications/dispatch",
            config.notify_url.trim_end_matches('/')
        ))
        .header("authorization", format!("Bearer {}", config.notify_token))
        .build();
    match with_timeout(send::<_, Response>(request), config.notify_timeout).await {
        Some(Ok(response)) if (200..300).contains(response.status()) => {}
        Some(Ok(response)) => {
            eprintln!(
                "event-fn: notify-fn answered {} to the hand-off; dispatch will retry",
                response.status()
            )
        }
        Some(Err(error)) => {
            eprintln!("event-fn: hand-off to notify-fn failed ({error}); dispatch will retry")
        }
        None => eprintln!("event-fn: notify-fn did not answer the hand-off in time"),
    }
}
