//! Telling notify-fn that there is something to deliver. Best effort and bounded in time: the
//! notification is already committed in the outbox, so a slow, failing or absent notify-fn
//! only delays its delivery until the next periodic dispatch.

use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use futures::future::{Either, select};
use spin_sdk::http::{Method, Request, Response, send};
use wasi::clocks::monotonic_clock;

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
    let sent = pin!(send::<_, Response>(request));
    match select(sent, pin!(sleep(config.notify_timeout))).await {
        Either::Left((Ok(response), _)) if (200..300).contains(response.status()) => {}
        Either::Left((Ok(response), _)) => {
            eprintln!(
                "event-fn: notify-fn answered {} to the hand-off; dispatch will retry",
                response.status()
            )
        }
        Either::Left((Err(error), _)) => {
            eprintln!("event-fn: hand-off to notify-fn failed ({error}); dispatch will retry")
        }
        Either::Right(((), _)) => eprintln!("event-fn: notify-fn did not answer the hand-off in time"),
    }
}

/// Completes after `duration`, waking the executor through a monotonic-clock pollable.
fn sleep(duration: Duration) -> Sleep {
    let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
    Sleep {
        deadline: monotonic_clock::now().saturating_add(nanos),
        _registration: None,
    }
}

struct Sleep {
    deadline: monotonic_clock::Instant,
    /// Unregisters the wake-up when the sleep is dropped before it ends.
    _registration: Option<spin_executor::CancelOnDropToken>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: std::pin::Pin<&mut Self>, context: &mut std::task::Context<'_>) -> Poll<()> {
        if monotonic_clock::now() >= self.deadline {
            return Poll::Ready(());
        }
        let pollable = monotonic_clock::subscribe_instant(self.deadline);
        self._registration =
            Some(spin_executor::push_waker_and_get_token(pollable, context.waker().clone()).into());
        Poll::Pending
    }
}
