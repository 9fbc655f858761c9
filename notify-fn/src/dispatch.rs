//! Delivering what is due. One dispatch at a time holds the dispatcher lease; it does the
//! housekeeping (retention) first and every `HOUSEKEEPING_EVERY` while it takes work, and keeps
//! a set of attempts in flight: it fans new notifications
//! out, claims due deliveries as slots free up (round-robin across subscriptions, a few per
//! subscription: see `store`), records each attempt the moment it ends, and meanwhile looks
//! every `POLL` whether notifications wait to be fanned out or a hand-off asked for more. So a
//! slow or dead endpoint holds only its own slots until its attempts time out, and never the
//! others' deliveries. With nothing left to do it lingers, looking every `POLL`, until it has
//! found no work for `LINGER`: under a steady stream of writes the lease stays held.
//!
//! A write made while the lease is held does not hand off (event-fn reads the lease in the
//! write's statement): the holder must see its notification. So the holder gives the lease up
//! only when nothing is in flight, it lingered, its last look found nothing more to do, and, in one
//! transaction (`Store::release_dispatch`): no write that saw the lease held is still
//! uncommitted (it holds the dispatcher row `FOR SHARE`), nothing waits to be fanned out, and no
//! request was counted since that look. A write after that waits for the release and then hands
//! off. So a committed change is never left without a dispatcher while one holds the lease.
//! After `MAX_DISPATCH` it takes no new work and gives the lease up at once, unconditionally,
//! then only finishes its attempts (each under a delivery lease and fencing token of its own):
//! the next write's hand-off, or the periodic trigger, goes on.

use std::time::{Duration, Instant};

use event_contract::{ChangeType, EventData, rfc3339_utc};
use futures::future::{Either, LocalBoxFuture, select};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use http_kit::{Unavailable, sleep};
use serde::Serialize;

use crate::Config;
use crate::destination;
use crate::model::{AttemptOutcome, Job, Notification, NotificationStatus};
use crate::store::{LeaseState, Recorded, Release, Store};
use crate::webhook;

/// Notifications fanned out per statement.
const FAN_OUT_BATCH: i64 = 100;
/// Attempts one dispatch keeps in flight at most (each holds a connection and at most
/// `MAX_KEPT_BODY` of an answer).
const MAX_IN_FLIGHT: usize = 128;
/// While attempts are in flight or it lingers, how often the holder looks whether a
/// notification waits or a hand-off counted a request (one read of the dispatcher row and of the
/// partial index of notifications to fan out): the most a new notification waits for a running
/// dispatcher, behind slow endpoints too.
const POLL: Duration = Duration::from_millis(5);
/// How long a holder with nothing to do keeps the lease, looking every `POLL`, before it gives
/// it up. Under a steady stream of writes the lease then stays held, so the writes skip their
/// hand-off (an outbound request and a notify-fn instance each); after the last write it costs
/// `LINGER / POLL` looks.
const LINGER: Duration = Duration::from_millis(100);
/// While it holds the lease (attempts in flight, or lingering), how often the holder claims
/// again regardless: retries come due, and a redelivery or an expired delivery lease makes a
/// delivery due with no request counted (a fan-out claims at once what it made).
const RECLAIM: Duration = Duration::from_secs(1);
/// How long one dispatch takes new work.
const MAX_DISPATCH: Duration = Duration::from_secs(120);
/// How often a dispatch that goes on (a steady stream of writes keeps one for `MAX_DISPATCH`)
/// does its housekeeping again, so retention keeps pace with the writes.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(5);
/// Rows per housekeeping statement, and statements of each kind per housekeeping.
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
    let result = Dispatcher::new(&store, config, &holder, lease, requests)
        .run()
        .await;
    if result.is_err() {
        // Best effort, so that dispatch resumes as soon as the database answers again rather
        // than when the lease expires.
        let _ = store.abandon_dispatch(&holder);
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

/// What the dispatcher should do at its next look.
struct Wants {
    /// New notifications may wait to be fanned out.
    fan_out: bool,
    /// Deliveries may be due (or slots freed up).
    claim: bool,
}

impl Wants {
    const EVERYTHING: Wants = Wants {
        fan_out: true,
        claim: true,
    };
}

/// The dispatch holding the lease.
struct Dispatcher<'a> {
    store: &'a Store,
    config: &'a Config,
    holder: &'a str,
    lease: Duration,
    /// The requests counted as of the last look.
    seen: i64,
    /// False once the lease passed to another dispatch: it then only finishes its attempts.
    holding: bool,
    in_flight: FuturesUnordered<LocalBoxFuture<'a, Finished>>,
    wants: Wants,
    started: Instant,
    /// When it last found work: fanned notifications out, claimed or finished an attempt.
    last_busy: Instant,
    last_housekeeping: Instant,
    last_claim: Instant,
    last_renewal: Instant,
    next_poll: Instant,
}

impl<'a> Dispatcher<'a> {
    fn new(store: &'a Store, config: &'a Config, holder: &'a str, lease: Duration, requests: i64) -> Self {
        let now = Instant::now();
        Self {
            store,
            config,
            holder,
            lease,
            seen: requests,
            holding: true,
            in_flight: FuturesUnordered::new(),
            wants: Wants::EVERYTHING,
            started: now,
            last_busy: now,
            last_housekeeping: now,
            last_claim: now,
            last_renewal: now,
            next_poll: now + POLL,
        }
    }

    async fn run(mut self) -> Result<(), Unavailable> {
        self.housekeeping()?;
        loop {
            if self.holding && !self.taking() {
                // MAX_DISPATCH: the writes from now on hand off, rather than leave their
                // notifications to a holder that takes nothing new.
                self.store.abandon_dispatch(self.holder)?;
                self.holding = false;
            }
            if self.taking() && self.last_housekeeping.elapsed() >= HOUSEKEEPING_EVERY {
                self.housekeeping()?;
            }
            if self.taking() {
                self.look()?;
            }
            if !self.in_flight.is_empty() {
                self.wait().await?;
            } else if !(self.taking() && (self.wants.fan_out || self.wants.claim)) && self.idle().await? {
                return Ok(());
            }
        }
    }

    /// Whether it takes new work: while it holds the lease, for `MAX_DISPATCH`.
    fn taking(&self) -> bool {
        self.holding && self.started.elapsed() < MAX_DISPATCH
    }

    /// Fans new notifications out and claims due deliveries for the free slots, as wanted.
    fn look(&mut self) -> Result<(), Unavailable> {
        if self.wants.fan_out {
            let fanned = self.store.fan_out(FAN_OUT_BATCH)?;
            fanned.iter().for_each(log);
            if !fanned.is_empty() {
                self.last_busy = Instant::now();
            }
            self.wants.fan_out = fanned.len() == FAN_OUT_BATCH as usize;
            // A claim only for the deliveries this made: one per look would cost a statement
            // each `POLL` under a stream of writes nobody subscribes to.
            self.wants.claim |= fanned
                .iter()
                .any(|notification| notification.status == NotificationStatus::Pending);
        }
        if self.wants.claim {
            let free = MAX_IN_FLIGHT - self.in_flight.len();
            let jobs = self.store.claim_due(
                free,
                self.lease,
                self.config.delivery_concurrency,
                &self.config.delivery_schedule,
            )?;
            // All it could take: more may be due once slots free up.
            self.wants.claim = jobs.len() == free && free > 0;
            self.last_claim = Instant::now();
            if !jobs.is_empty() {
                self.last_busy = self.last_claim;
            }
            let config = self.config;
            self.in_flight
                .extend(jobs.into_iter().map(|job| attempt(job, config)));
        }
        Ok(())
    }

    /// Nothing in flight and nothing more to take: lingers (looks again after `POLL`) while it
    /// found work within `LINGER`; then gives the lease up unless something waits to be fanned
    /// out or a request was counted since the last look (then it looks again). Whether the
    /// dispatch is done.
    async fn idle(&mut self) -> Result<bool, Unavailable> {
        if !self.holding {
            return Ok(true);
        }
        if self.last_busy.elapsed() < LINGER {
            sleep(POLL).await;
            self.poll()?;
            return Ok(false);
        }
        match self.store.release_dispatch(self.holder, self.seen)? {
            Release::Released => return Ok(true),
            // A write that found the lease held is committing: its notification shows soon.
            Release::Busy => sleep(POLL).await,
            Release::Kept => {}
        }
        match self.lease_state()? {
            Some(state) => self.seen = state.requests,
            None => {
                lease_lost();
                return Ok(true);
            }
        }
        self.wants = Wants::EVERYTHING;
        Ok(false)
    }

    /// What the holder finds: the lease renewed once a quarter of it has passed (tried again at
    /// each look until a renewal gets through), else only read.
    fn lease_state(&mut self) -> Result<Option<LeaseState>, Unavailable> {
        if self.last_renewal.elapsed() < self.lease / 4 {
            return self.store.dispatch_requests(self.holder);
        }
        let state = self.store.renew_dispatch(self.holder, self.lease)?;
        if state.is_some_and(|state| state.renewed) {
            self.last_renewal = Instant::now();
        }
        Ok(state)
    }

    /// Waits for the next attempt to end or the time to poll, whichever comes first; records
    /// every attempt that ended, and polls when it is time (however often attempts end).
    async fn wait(&mut self) -> Result<(), Unavailable> {
        let finished = if self.holding {
            let until_poll = self.next_poll.saturating_duration_since(Instant::now());
            match select(self.in_flight.next(), sleep(until_poll)).await {
                Either::Left((finished, _)) => finished,
                Either::Right(_) => None,
            }
        } else {
            // No polls without the lease: only the attempts' ends.
            self.in_flight.next().await
        };
        if let Some(finished) = finished {
            self.last_busy = Instant::now();
            self.record(finished)?;
            while let Some(Some(finished)) = self.in_flight.next().now_or_never() {
                self.record(finished)?;
            }
            self.wants.claim = true;
        }
        if self.holding && Instant::now() >= self.next_poll {
            self.poll()?;
        }
        Ok(())
    }

    /// Looks whether a hand-off counted a request (then fans out and claims at once) or
    /// notifications wait to be fanned out (writes while the lease is held do not hand off),
    /// renews the lease now and then, and claims again now and then (retries come due).
    fn poll(&mut self) -> Result<(), Unavailable> {
        self.next_poll = Instant::now() + POLL;
        match self.lease_state()? {
            Some(state) if state.requests != self.seen => {
                self.seen = state.requests;
                self.wants = Wants::EVERYTHING;
            }
            Some(state) => {
                self.wants.fan_out |= state.waiting;
                self.wants.claim |= self.last_claim.elapsed() >= RECLAIM;
            }
            None => {
                // Finish what is in flight (each delivery has a lease and a token of its own),
                // take nothing new.
                self.holding = false;
                lease_lost();
            }
        }
        Ok(())
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
    /// events' content, a bounded number of batches each time.
    fn housekeeping(&mut self) -> Result<(), Unavailable> {
        self.last_housekeeping = Instant::now();
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
