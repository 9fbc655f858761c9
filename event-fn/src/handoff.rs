//! Telling notify-fn that there is something to deliver. Best effort and bounded in time: the
//! notification is already committed in the outbox, so a slow, failing or absent notify-fn
//! only delays its delivery until the next periodic dispatch.
//!
//! A write answers its client first and hands off after (`AfterResponse`): Spin keeps the
//! instance running until the handler returns, so the client never waits for notify-fn. And it
//! hands off only when its statement found no dispatcher holding the lease: a running
//! dispatcher sees the change anyway (`store::Dispatcher`).

use std::cell::Cell;
use std::rc::Rc;

use http_kit::with_timeout;
use spin_sdk::http::{Method, Request, Response, send};

use crate::Config;
use crate::store::Dispatcher;

/// What a request leaves to do once its response is sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AfterResponse {
    #[default]
    Nothing,
    /// Ask notify-fn to dispatch: the request committed a change.
    HandOff,
}

impl AfterResponse {
    /// After a committed change: a hand-off, unless a dispatcher is running.
    pub fn after_change(dispatcher: Dispatcher) -> Self {
        match dispatcher {
            Dispatcher::Running => Self::Nothing,
            Dispatcher::Idle => Self::HandOff,
        }
    }
}

/// A request as the `/events` handlers see it: the configuration, and what the handler leaves
/// for after the response.
pub struct Exchange {
    pub config: Rc<Config>,
    after: Cell<AfterResponse>,
}

impl Exchange {
    pub fn new(config: Rc<Config>) -> Self {
        Self {
            config,
            after: Cell::default(),
        }
    }

    /// Leaves `after` to do once the response is sent.
    pub fn then(&self, after: AfterResponse) {
        self.after.set(after);
    }

    /// Does what the handler left, with the client already answered.
    pub async fn finish(&self) {
        if self.after.take() == AfterResponse::HandOff {
            request_dispatch(&self.config).await;
        }
    }
}

/// Asks notify-fn to dispatch now, waiting at most `config.notify_timeout`.
async fn request_dispatch(config: &Config) {
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
