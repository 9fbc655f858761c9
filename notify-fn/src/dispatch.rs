//! Delivering what is due. One dispatch at a time holds the dispatcher lease; it first does the
//! housekeeping (retention), then keeps a set of attempts in flight: it fans new notifications
//! out, claims due deliveries as slots free up (round-robin across subscriptions, a few per
//! subscription: see `store`), records each attempt the moment it ends, and meanwhile looks
//! every `POLL` whether a hand-off asked for more. So a slow or dead endpoint holds only its
//! own slots until its attempts time out, and never the others' deliveries.
//!
//! The holder gives the lease up only when nothing is in flight, its last look found nothing
//! more to do, and no request was counted since that look (else that request's notification
//! may have been committed after it looked): a dispatch request is never lost while the lease
//! is held. After `MAX_DISPATCH` it takes no new work and gives the lease up once its attempts
//! end; the next request, or the periodic trigger, goes on.

use std::time::{Duration, Instant};

use event_contract::{ChangeType, EventData, rfc3339_utc};
use futures::future::{Either, LocalBoxFuture, select};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use http_kit::{Unavailable, sleep};
use serde::Serialize;

use crate::Config;
use crate::destination;
use crate::model::{AttemptOutcome, Job, Notification};
use crate::store::{Recorded, Store};
use crate::webhook;

/// Notifications fanned out per statement.
const FAN_OUT_BATCH: i64 = 100;
/// Attempts one dispatch keeps in flight at most (each holds a connection and at most
/// `MAX_KEPT_BODY` of an answer).
const MAX_IN_FLIGHT: usize = 128;
/// While attempts are in flight, how often the holder looks whether a hand-off counted a
/// request (one indexed read of the dispatcher row): the most a new notification waits behind
/// slow endpoints.
const POLL: Duration = Duration::from_millis(10);
/// While attempts are in flight, how often the holder claims again regardless (retries come
/// due).
const RECLAIM: Duration = Duration::from_secs(1);
/// How long one dispatch takes new work.
const MAX_DISPATCH: Duration = Duration::from_secs(120);
/// Rows per housekeeping statement, and statements of each kind per dispatch.
const HOUSEKEEPING_BATCH: i64 = 500;
const HOUSEKEEPING_ROUNDS: usize = 4;

/// Delivers what is due if no other dispatch is doing so; otherwise leaves it to that one,
/// which has counted this request and looks again for it.
pub async fn dispatch(config: &Config) -> Result<(), Unavailable> {
    let store = Store::open(&config.db_url)?;
    let holder = holder_token();
    let lease = lease(config);
    let Some(requests) = store.request_dispatch(&holder, lease)? else {
        return Ok(());
    };
    let dispatcher = Dispatcher {
        store: &store,
        config,
        holder: &holder,
        lease,
        seen: requests,
    };
    let result = dispatcher.run().await;
    if result.is_err() {
        // Best effort, so that dispatch resumes as soon as the database answers again rather
        // than when the lease expires.
        let _ = store.release_dispatch(&holder, None);
    }
    result
}

/// The dispatcher lease, and each claimed delivery's: beyond the longest attempt, so no other
/// dispatcher takes a delivery in flight.
fn lease(config: &Config) -> Duration {
    config.delivery_timeout * 2 + Duration::from_secs(5)
}

/// An attempt that ended.
struct Finished {
    job: Job,
    outcome: AttemptOutcome,
    took: Duration,
}

struct Dispatcher<'a> {
    store: &'a Store,
    config: &'a Config,
    holder: &'a str,
    lease: Duration,
    /// The requests counted as of the last look.
    seen: i64,
}

/// What the dispatcher should do next, besides waiting for attempts.
#[derive(Default)]
struct Wants {
    /// New notifications may wait to be fanned out.
    fan_out: bool,
    /// Deliveries may be due (or slots freed up).
    claim: bool,
}

impl Dispatcher<'_> {
    async fn run(mut self) -> Result<(), Unavailable> {
        self.housekeeping()?;
        let started = Instant::now();
        let mut in_flight: FuturesUnordered<LocalBoxFuture<'_, Finished>> = FuturesUnordered::new();
        let mut wants = Wants {
            fan_out: true,
            claim: true,
        };
        let mut holding = true;
        let mut last_claim = Instant::now();
        let mut last_renewal = Instant::now();
        loop {
            let taking = holding && started.elapsed() < MAX_DISPATCH;
            if taking && wants.fan_out {
                let fanned = self.store.fan_out(FAN_OUT_BATCH)?;
                fanned.iter().for_each(log);
                wants.fan_out = fanned.len() == FAN_OUT_BATCH as usize;
                wants.claim = true;
            }
            if taking && wants.claim {
                let free = MAX_IN_FLIGHT - in_flight.len();
                let jobs = self.store.claim_due(
                    free,
                    self.lease,
                    self.config.delivery_concurrency,
                    &self.config.delivery_schedule,
                )?;
                // All it could take: more may be due once slots free up.
                wants.claim = jobs.len() == free && free > 0;
                last_claim = Instant::now();
                in_flight.extend(jobs.into_iter().map(|job| attempt(job, self.config)));
            }
            if in_flight.is_empty() {
                if taking && (wants.fan_out || wants.claim) {
                    continue;
                }
                if !holding {
                    return Ok(());
                }
                if !taking {
                    self.store.release_dispatch(self.holder, None)?;
                    return Ok(());
                }
                if self.store.release_dispatch(self.holder, Some(self.seen))? {
                    return Ok(());
                }
                // A request was counted since the last look: look again for it.
                match self.store.renew_dispatch(self.holder, self.lease)? {
                    Some(requests) => self.seen = requests,
                    None => {
                        lease_lost();
                        return Ok(());
                    }
                }
                last_renewal = Instant::now();
                wants = Wants {
                    fan_out: true,
                    claim: true,
                };
                continue;
            }
            match select(in_flight.next(), sleep(POLL)).await {
                Either::Left((Some(finished), _)) => {
                    self.record(finished)?;
                    while let Some(Some(finished)) = in_flight.next().now_or_never() {
                        self.record(finished)?;
                    }
                    wants.claim = true;
                }
                Either::Left((None, _)) => {}
                Either::Right(_) if holding => {
                    let requests = if last_renewal.elapsed() >= self.lease / 4 {
                        last_renewal = Instant::now();
                        self.store.renew_dispatch(self.holder, self.lease)?
                    } else {
                        self.store.dispatch_requests(self.holder)?
                    };
                    match requests {
                        Some(requests) if requests != self.seen => {
                            self.seen = requests;
                            wants = Wants {
                                fan_out: true,
                                claim: true,
                            };
                        }
                        Some(_) => wants.claim |= last_claim.elapsed() >= RECLAIM,
                        None => {
                            // Finish what is in flight (each delivery has a lease and a token
                            // of its own), take nothing new.
                            holding = false;
                            lease_lost();
                        }
                    }
                }
                Either::Right(_) => {}
            }
        }
    }

    /// Records an attempt under its claim's token, and disables its subscription when its
    /// health says so.
    fn record(&self, finished: Finished) -> Result<(), Unavailable> {
        let Finished { job, outcome, took } = finished;
        let verdict = outcome.verdict(job.failures, &self.config.delivery_schedule);
        match self.store.record(&job, &outcome, verdict, took)? {
            Recorded::Refused => eprintln!(
                "notify-fn: delivery {}: its claim is no longer current (another dispatcher claimed it, or it was redelivered, disabled or deleted); this attempt's result is not recorded",
                job.delivery_id
            ),
            Recorded::Recorded(health) => {
                if let Some(reason) = self.config.disable.reason(&health) {
                    let stopped = self.store.disable_subscription(health.subscription_id, &reason)?;
                    eprintln!(
                        "notify-fn: subscription {} disabled ({reason}); {stopped} pending deliveries failed",
                        health.subscription_id
                    );
                }
            }
        }
        Ok(())
    }

    /// Retention: deletes delivered notifications past `retention_days` and erases deleted
    /// events' content, a bounded number of batches per dispatch.
    fn housekeeping(&self) -> Result<(), Unavailable> {
        for _ in 0..HOUSEKEEPING_ROUNDS {
            if self
                .store
                .delete_expired(self.config.retention, HOUSEKEEPING_BATCH)?
                < HOUSEKEEPING_BATCH as u64
            {
                break;
            }
        }
        for _ in 0..HOUSEKEEPING_ROUNDS {
            if self.store.erase_deleted(HOUSEKEEPING_BATCH)? == 0 {
                break;
            }
        }
        Ok(())
    }
}

/// The lease expired during this dispatch and another dispatch holds it now: this one takes
/// no new work. Worth a line, as it means the holder could not renew in time.
fn lease_lost() {
    eprintln!("notify-fn: the dispatcher lease passed to another dispatch; this one takes no new work");
}

/// One attempt: the destination checked again (the rules or the configuration may have
/// changed since the subscription was made), then the webhook.
fn attempt(job: Job, config: &Config) -> LocalBoxFuture<'_, Finished> {
    async move {
        let started = Instant::now();
        let refusal = url::Url::parse(&job.url)
            .ok()
            .map(|url| destination::refusal(&url, config.allow_private_webhooks))
            .unwrap_or(Some("is not a URL"));
        let outcome = match refusal {
            Some(refusal) => AttemptOutcome::NoAnswer(format!("not sent: the URL {refusal}")),
            None => webhook::deliver(&job, config.delivery_timeout).await,
        };
        Finished {
            job,
            outcome,
            took: started.elapsed(),
        }
    }
    .boxed_local()
}

/// A token no other dispatch has: 128 random bits from the host.
fn holder_token() -> String {
    let random = wasi::random::random::get_random_bytes(16);
    random.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The log line of a notification.
#[derive(Serialize)]
struct LogLine<'a> {
    level: &'static str,
    message: &'static str,
    notification_id: i64,
    #[serde(rename = "type")]
    kind: ChangeType,
    event_id: i64,
    event: Option<&'a EventData>,
    created_at: String,
}

/// One structured JSON line per notification on stdout.
fn log(notification: &Notification) {
    let line = LogLine {
        level: "info",
        message: "notification",
        notification_id: notification.id,
        kind: notification.kind,
        event_id: notification.event_id,
        event: notification.event.as_ref(),
        created_at: rfc3339_utc(notification.created_at),
    };
    println!("{}", serde_json::to_string(&line).unwrap_or_default());
}
