//! Time limits on the Spin executor: a timer, and a future bounded by one.

use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::{Either, select};
use wasi::clocks::monotonic_clock;

/// Completes after `duration`, waking the executor through a monotonic-clock pollable.
pub fn sleep(duration: Duration) -> Sleep {
    let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
    Sleep {
        deadline: monotonic_clock::now().saturating_add(nanos),
        _registration: None,
    }
}

pub struct Sleep {
    deadline: monotonic_clock::Instant,
    /// Unregisters the wake-up when the sleep is dropped before it ends.
    _registration: Option<spin_executor::CancelOnDropToken>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        if monotonic_clock::now() >= self.deadline {
            return Poll::Ready(());
        }
        let pollable = monotonic_clock::subscribe_instant(self.deadline);
        self._registration =
            Some(spin_executor::push_waker_and_get_token(pollable, context.waker().clone()).into());
        Poll::Pending
    }
}

/// `future`'s output, or `None` when `limit` passes first (the future is then dropped).
pub async fn with_timeout<F: Future>(future: F, limit: Duration) -> Option<F::Output> {
    match select(pin!(future), pin!(sleep(limit))).await {
        Either::Left((output, _)) => Some(output),
        Either::Right(((), _)) => None,
    }
}
