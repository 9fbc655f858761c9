//! Delivering what is due: one dispatch at a time (the dispatcher lease) logs and fans out new
//! notifications, then attempts each due delivery once (concurrently, each bounded by the
//! delivery timeout) and records the outcome.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use event_contract::{ChangeType, EventData, rfc3339_utc};
use futures::future::join_all;
use http_kit::{Unavailable, with_timeout};
use serde::Serialize;
use spin_sdk::http::{Method, Request, Response, send};

use crate::Config;
use crate::model::{AttemptOutcome, Job, Notification};
use crate::store::Store;
use crate::webhook::{CONTENT_TYPE, CloudEvent, USER_AGENT, message_id, signatures};

/// Notifications fanned out, and deliveries attempted, per round.
const BATCH: i64 = 50;
const BATCH_SIZE: usize = BATCH as usize;
/// Rounds per pass, so that a pass ends and a holder notices a lost lease.
const MAX_ROUNDS: usize = 20;
/// Passes per dispatch: a holder that keeps being asked for more still ends, releasing the
/// lease; the next request, or the periodic trigger, goes on.
const MAX_PASSES: usize = 10;

/// Delivers what is due if no other dispatch is doing so; otherwise leaves it to that one,
/// which has counted this request and makes another pass for it.
pub async fn dispatch(config: &Config) -> Result<(), Unavailable> {
    let store = Store::open(&config.db_url)?;
    // Held beyond the longest attempt, so no other dispatcher takes a delivery in flight.
    let lease = config.delivery_timeout * 2 + Duration::from_secs(5);
    let holder = holder_token();
    let Some(requests) = store.request_dispatch(&holder, lease)? else {
        return Ok(());
    };
    let passes = deliver_while_requested(&store, config, &holder, lease, requests).await;
    if passes.is_err() {
        // Best effort, so that dispatch resumes as soon as the database answers again rather
        // than when the lease expires.
        let _ = store.release_dispatch(&holder, None);
    }
    passes
}

/// Passes over what is due until a pass found everything done and no request arrived during
/// it: a request counted after a pass began may be for a notification committed after that
/// pass looked.
async fn deliver_while_requested(
    store: &Store,
    config: &Config,
    holder: &str,
    lease: Duration,
    mut requests: i64,
) -> Result<(), Unavailable> {
    for _ in 0..MAX_PASSES {
        match deliver_due(store, config, holder, lease).await? {
            Pass::Done if store.release_dispatch(holder, Some(requests))? => return Ok(()),
            Pass::Done | Pass::MoreDue => {}
            Pass::LeaseLost => return lease_lost(),
        }
        match store.renew_dispatch(holder, lease)? {
            Some(counted) => requests = counted,
            None => return lease_lost(),
        }
    }
    store.release_dispatch(holder, None)?;
    Ok(())
}

/// The lease expired during this dispatch and another dispatch holds it now: this one stops.
/// Worth a line, as it means a pass outlived the lease.
fn lease_lost() -> Result<(), Unavailable> {
    eprintln!("notify-fn: the dispatcher lease passed to another dispatch; this one stops");
    Ok(())
}

/// How a pass ended.
enum Pass {
    /// A round found less than a full batch: nothing more was due when it looked.
    Done,
    /// Every round was full: more may be due.
    MoreDue,
    /// The dispatcher lease expired during the pass and another dispatch holds it now.
    LeaseLost,
}

/// One pass: rounds until a round finds less than a full batch, or `MAX_ROUNDS`, renewing the
/// lease after each round so that no other dispatch starts beside a long pass.
async fn deliver_due(
    store: &Store,
    config: &Config,
    holder: &str,
    lease: Duration,
) -> Result<Pass, Unavailable> {
    for _ in 0..MAX_ROUNDS {
        let fanned_out = store.fan_out(BATCH)?;
        for notification in &fanned_out {
            log(notification);
        }
        // Fan-out made its deliveries due now, so this claim already includes them.
        let jobs = store.claim_due(BATCH, lease)?;
        let attempts = join_all(jobs.iter().map(|job| attempt(job, config.delivery_timeout))).await;
        for (job, attempt) in jobs.iter().zip(attempts) {
            let verdict = attempt.verdict(job.failures, &config.delivery_schedule);
            store.record(job, &attempt, verdict)?;
        }
        // A batch that was not full means nothing more was due: stop without another round of
        // queries (what becomes due later is the next pass's or dispatch's).
        if fanned_out.len() < BATCH_SIZE && jobs.len() < BATCH_SIZE {
            return Ok(Pass::Done);
        }
        if store.renew_dispatch(holder, lease)?.is_none() {
            return Ok(Pass::LeaseLost);
        }
    }
    Ok(Pass::MoreDue)
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
    event: &'a EventData,
    created_at: String,
}

/// One structured JSON line per notification on stdout.
fn log(notification: &Notification) {
    let line = LogLine {
        level: "info",
        message: "notification",
        notification_id: notification.id,
        kind: notification.kind,
        event_id: notification.event.id,
        event: &notification.event,
        created_at: rfc3339_utc(notification.created_at),
    };
    println!("{}", serde_json::to_string(&line).unwrap_or_default());
}

/// POSTs the signed CloudEvent, waiting at most `timeout` for the answer.
async fn attempt(job: &Job, timeout: Duration) -> AttemptOutcome {
    let notification = &job.notification;
    let time = rfc3339_utc(notification.created_at);
    let body = match serde_json::to_vec(&CloudEvent::new(
        notification.id,
        notification.kind,
        time,
        &notification.event,
    )) {
        Ok(body) => body,
        Err(error) => return AttemptOutcome::NoAnswer(format!("cannot serialize the event: {error}")),
    };
    let id = message_id(notification.id);
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default() as i64;
    let signature = match signatures(&[&job.secret], &id, timestamp, &body) {
        Ok(signature) => signature,
        Err(error) => return AttemptOutcome::NoAnswer(error),
    };
    let request = Request::builder()
        .method(Method::Post)
        .uri(&job.url)
        // The body is complete: with its length declared it is not sent chunked, which many
        // receivers (Python's http.server, WSGI servers, gateways) cannot read.
        .header("content-length", body.len().to_string())
        .header("content-type", CONTENT_TYPE)
        .header("user-agent", USER_AGENT)
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .build();
    match with_timeout(send::<_, Response>(request), timeout).await {
        Some(Ok(response)) => AttemptOutcome::Answered(*response.status()),
        Some(Err(error)) => AttemptOutcome::NoAnswer(error.to_string()),
        None => AttemptOutcome::NoAnswer(format!("no answer within {} ms", timeout.as_millis())),
    }
}
