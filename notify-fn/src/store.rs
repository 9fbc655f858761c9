//! notify-fn's SQL, through Spin's `pg4`: subscriptions, the outbox's notifications, their
//! deliveries and attempts, and the dispatcher lease. One dispatch at a time holds the lease;
//! claims also use `FOR UPDATE SKIP LOCKED` plus a lease per delivery, so dispatchers that
//! overlap (after a lease expired) never send the same attempt twice.
//!
//! Every query returns at least one row (Spin 4.0.0-4.0.2 never returns from a query that
//! returns none): what may find nothing anchors on a one-row source, so "nothing" is a row of
//! NULLs; statements that need no result are `execute`d.

use std::time::Duration;

use chrono::NaiveTime;
use chrono::{NaiveDate, NaiveDateTime};
use event_contract::{ChangeType, EventData, EventTimes, rfc3339_utc, time_of_day};
use http_kit::{Page, Row, Rows, Unavailable};
use spin_sdk::pg4::Connection;

use crate::model::{
    Attempt, AttemptOutcome, Delivery, DeliveryStatus, Job, Notification, NotificationFilter, Subscription,
    Verdict,
};

/// `$1` url, `$2` types (NULL: all). The signing secret is 32 bytes from two v4 UUIDs (244
/// random bits from PostgreSQL's strong random source).
const CREATE_SUBSCRIPTION: &str = "
    INSERT INTO subscriptions (url, types, secret)
    VALUES ($1, $2::text[], 'whsec_' || encode(decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'), 'base64'))
    RETURNING id, url, types, secret, created_at";

const LIST_SUBSCRIPTIONS: &str = "
    SELECT s.id, s.url, s.types, s.secret, s.created_at
    FROM (VALUES (1)) AS one
    LEFT JOIN subscriptions s ON true
    ORDER BY s.id";

/// `$1` id.
const GET_SUBSCRIPTION: &str = "
    SELECT s.id, s.url, s.types, s.secret, s.created_at
    FROM (VALUES (1)) AS one
    LEFT JOIN subscriptions s ON s.id = $1";

/// `$1` id. Its deliveries go with it (`ON DELETE CASCADE`).
const DELETE_SUBSCRIPTION: &str = "DELETE FROM subscriptions WHERE id = $1";

/// `$1` event id, `$2` status, `$3` the id after which the page starts (each NULL: any),
/// `$4` rows to fetch.
const LIST_NOTIFICATIONS: &str = "
    SELECT page.id, page.type, page.status, page.created_at, page.event_id, page.title,
           page.description, page.date, page.start_time, page.end_time, page.time_zone,
           page.end_date, page.event_created_at, page.event_updated_at
    FROM (VALUES (1)) AS one
    LEFT JOIN (
        SELECT id, type, status, created_at, event_id, title, description, date, start_time,
               end_time, time_zone, end_date, event_created_at, event_updated_at
        FROM notifications
        WHERE ($1::int8 IS NULL OR event_id = $1)
          AND ($2::text IS NULL OR status = $2)
          AND ($3::int8 IS NULL OR id > $3)
        ORDER BY id
        LIMIT $4
    ) AS page ON true
    ORDER BY page.id";

/// `$1` id: the notification, a row per attempt of each delivery (a delivery without attempts
/// has one row of NULL attempt columns, a notification without deliveries one of NULL
/// delivery columns).
const GET_NOTIFICATION: &str = "
    SELECT n.id, n.type, n.status, n.created_at, n.event_id, n.title, n.description, n.date,
           n.start_time, n.end_time, n.time_zone, n.end_date, n.event_created_at,
           n.event_updated_at,
           d.id AS delivery_id, d.subscription_id, s.url, d.status AS delivery_status,
           d.next_attempt_at AS delivery_next_attempt_at,
           a.attempted_at, a.status_code, a.error, a.next_attempt_at AS attempt_next_attempt_at
    FROM (VALUES (1)) AS one
    LEFT JOIN notifications n ON n.id = $1
    LEFT JOIN deliveries d ON d.notification_id = n.id
    LEFT JOIN subscriptions s ON s.id = d.subscription_id
    LEFT JOIN delivery_attempts a ON a.delivery_id = d.id
    ORDER BY d.id, a.id";

/// `$1` id: starts its failed deliveries again from the first attempt; whether it exists.
const REDELIVER: &str = "
    WITH target AS (SELECT id FROM notifications WHERE id = $1),
    restarted AS (
        UPDATE deliveries SET status = 'pending', failures = 0,
            next_attempt_at = (now() AT TIME ZONE 'utc'), leased_until = NULL
        WHERE notification_id = $1 AND status = 'failed'
        RETURNING id
    ),
    reopened AS (
        UPDATE notifications SET status = 'pending'
        WHERE id = $1 AND EXISTS (SELECT 1 FROM restarted)
    )
    SELECT EXISTS (SELECT 1 FROM target) AS found";

/// `$1` how many: claims notifications not yet fanned out, creates a delivery for each
/// matching subscription and marks them fanned out (delivered at once when nobody
/// subscribes to their type).
const FAN_OUT: &str = "
    WITH claimed AS (
        SELECT id FROM notifications WHERE fanned_out_at IS NULL
        ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
    ),
    fanned AS (
        INSERT INTO deliveries (notification_id, subscription_id)
        SELECT n.id, s.id FROM notifications n
        JOIN claimed c ON c.id = n.id
        JOIN subscriptions s ON s.types IS NULL OR n.type = ANY (s.types)
        ON CONFLICT DO NOTHING
    ),
    marked AS (
        UPDATE notifications n SET fanned_out_at = (now() AT TIME ZONE 'utc'),
            status = CASE WHEN EXISTS (
                SELECT 1 FROM subscriptions s WHERE s.types IS NULL OR n.type = ANY (s.types)
            ) THEN 'pending' ELSE 'delivered' END
        FROM claimed c WHERE n.id = c.id
        RETURNING n.id, n.type, n.status, n.created_at, n.event_id, n.title, n.description,
                  n.date, n.start_time, n.end_time, n.time_zone, n.end_date,
                  n.event_created_at, n.event_updated_at
    )
    SELECT marked.* FROM (VALUES (1)) AS one LEFT JOIN marked ON true ORDER BY marked.id";

/// `$1` holder, `$2` lease in seconds: counts a dispatch request, and gives the lease to
/// `$1` when nobody holds it. `requests` NULL: the dispatcher row is missing.
const REQUEST_DISPATCH: &str = "
    WITH counted AS (
        UPDATE dispatcher SET requests = requests + 1,
            holder = CASE WHEN held_until < (now() AT TIME ZONE 'utc') THEN $1 ELSE holder END,
            held_until = CASE WHEN held_until < (now() AT TIME ZONE 'utc')
                THEN (now() AT TIME ZONE 'utc') + make_interval(secs => $2::float8)
                ELSE held_until END
        RETURNING holder, requests
    )
    SELECT counted.requests, counted.holder = $1 AS holding
    FROM (VALUES (1)) AS one
    LEFT JOIN counted ON true";

/// `$1` holder, `$2` lease in seconds. `requests` NULL: the lease has passed to another.
const RENEW_DISPATCH: &str = "
    WITH renewed AS (
        UPDATE dispatcher SET held_until = (now() AT TIME ZONE 'utc') + make_interval(secs => $2::float8)
        WHERE holder = $1
        RETURNING requests
    )
    SELECT renewed.requests FROM (VALUES (1)) AS one LEFT JOIN renewed ON true";

/// `$1` holder, `$2` the requests counted when it last looked (NULL: give up regardless).
const RELEASE_DISPATCH: &str = "
    UPDATE dispatcher SET holder = NULL, held_until = '-infinity'
    WHERE holder = $1 AND ($2::int8 IS NULL OR requests = $2::int8)";

/// `$1` how many, `$2` lease in seconds: claims due deliveries for one attempt each.
const CLAIM_DUE: &str = "
    WITH due AS (
        SELECT id FROM deliveries
        WHERE status = 'pending' AND next_attempt_at <= (now() AT TIME ZONE 'utc')
          AND (leased_until IS NULL OR leased_until < (now() AT TIME ZONE 'utc'))
        ORDER BY next_attempt_at LIMIT $1
        FOR UPDATE SKIP LOCKED
    ),
    claimed AS (
        UPDATE deliveries d
        SET leased_until = (now() AT TIME ZONE 'utc') + make_interval(secs => $2::float8)
        FROM due, notifications n, subscriptions s
        WHERE d.id = due.id AND n.id = d.notification_id AND s.id = d.subscription_id
        RETURNING d.id AS delivery_id, d.failures, s.url, s.secret, n.id, n.type, n.status,
                  n.created_at, n.event_id, n.title, n.description, n.date, n.start_time,
                  n.end_time, n.time_zone, n.end_date, n.event_created_at, n.event_updated_at
    )
    SELECT claimed.* FROM (VALUES (1)) AS one LEFT JOIN claimed ON true";

/// `$1` delivery, `$2` its notification, `$3` the delivery's new status, `$4` the retry delay
/// in seconds (NULL: none), `$5` status code, `$6` error. Records the attempt, releases the
/// delivery's lease and sums up the notification's status, in one statement. A retry is due
/// after the delay scaled by a random 0.8-1.2, so receivers that failed together do not all
/// get their retries at once.
const RECORD_ATTEMPT: &str = "
    WITH next AS (
        SELECT CASE WHEN $4::float8 IS NULL THEN NULL
                    ELSE (now() AT TIME ZONE 'utc') + make_interval(secs => $4::float8 * (0.8 + random() * 0.4))
               END AS at
    ),
    updated AS (
        UPDATE deliveries SET status = $3::text,
            failures = failures + CASE WHEN $3::text = 'delivered' THEN 0 ELSE 1 END,
            next_attempt_at = COALESCE((SELECT at FROM next), next_attempt_at),
            leased_until = NULL
        WHERE id = $1
    ),
    attempt AS (
        INSERT INTO delivery_attempts (delivery_id, status_code, error, next_attempt_at)
        SELECT $1, $5::int4, $6::text, at FROM next
    )
    UPDATE notifications n SET status = CASE
        WHEN $3::text = 'pending' OR EXISTS (
            SELECT 1 FROM deliveries d WHERE d.notification_id = n.id AND d.id <> $1 AND d.status = 'pending'
        ) THEN 'pending'
        WHEN $3::text = 'failed' OR EXISTS (
            SELECT 1 FROM deliveries d WHERE d.notification_id = n.id AND d.id <> $1 AND d.status = 'failed'
        ) THEN 'failed'
        ELSE 'delivered' END
    WHERE n.id = $2";

/// One request's connection.
pub struct Store(Connection);

impl Store {
    pub fn open(url: &str) -> Result<Self, Unavailable> {
        http_kit::connect(url).map(Self)
    }

    pub fn create_subscription(
        &self,
        url: &str,
        types: Option<&[ChangeType]>,
    ) -> Result<Subscription, Unavailable> {
        let types: Option<Vec<Option<String>>> =
            types.map(|types| types.iter().map(|t| Some(t.as_str().to_owned())).collect());
        let result = self
            .0
            .query(CREATE_SUBSCRIPTION, &[url.to_owned().into(), types.into()])?;
        subscription(Rows::of(&result).one()?)
    }

    pub fn subscriptions(&self) -> Result<Vec<Subscription>, Unavailable> {
        let result = self.0.query(LIST_SUBSCRIPTIONS, &[])?;
        Rows::of(&result).decode_found("id", subscription)
    }

    pub fn subscription(&self, id: i64) -> Result<Option<Subscription>, Unavailable> {
        let result = self.0.query(GET_SUBSCRIPTION, &[id.into()])?;
        Rows::of(&result).decode_first("id", subscription)
    }

    /// Deletes a subscription and its deliveries; whether it existed.
    pub fn delete_subscription(&self, id: i64) -> Result<bool, Unavailable> {
        Ok(self.0.execute(DELETE_SUBSCRIPTION, &[id.into()])? > 0)
    }

    pub fn notifications(&self, filter: &NotificationFilter) -> Result<Page<Notification>, Unavailable> {
        let result = self.0.query(
            LIST_NOTIFICATIONS,
            &[
                filter.event_id.into(),
                filter.status.map(|s| s.as_str().to_owned()).into(),
                filter.after_id.into(),
                Page::<Notification>::fetch_size(filter.limit).into(),
            ],
        )?;
        Ok(Page::of(
            Rows::of(&result).decode_found("id", notification)?,
            filter.limit,
        ))
    }

    /// A notification with every delivery and its attempts, in one statement.
    pub fn notification(&self, id: i64) -> Result<Option<(Notification, Vec<Delivery>)>, Unavailable> {
        let result = self.0.query(GET_NOTIFICATION, &[id.into()])?;
        let rows = Rows::of(&result);
        let Some(first) = rows.found("id").next().transpose()? else {
            return Ok(None);
        };
        let mut deliveries: Vec<(i64, Delivery)> = Vec::new();
        for row in rows.found("delivery_id") {
            let row = row?;
            let delivery_id: i64 = row.get("delivery_id")?;
            if deliveries.last().is_none_or(|(id, _)| *id != delivery_id) {
                deliveries.push((delivery_id, delivery(row)?));
            }
            if let (Some((_, delivery)), Some(attempted_at)) =
                (deliveries.last_mut(), row.get("attempted_at")?)
            {
                delivery.attempts.push(Attempt {
                    attempted_at,
                    status_code: row.get("status_code")?,
                    error: row.get("error")?,
                    next_attempt_at: row.get("attempt_next_attempt_at")?,
                });
            }
        }
        Ok(Some((
            notification(first)?,
            deliveries.into_iter().map(|(_, delivery)| delivery).collect(),
        )))
    }

    /// Starts the failed deliveries of a notification again from the first attempt; whether
    /// the notification exists.
    pub fn redeliver(&self, id: i64) -> Result<bool, Unavailable> {
        let result = self.0.query(REDELIVER, &[id.into()])?;
        Rows::of(&result).one()?.get("found")
    }

    /// Claims up to `limit` notifications not yet fanned out and creates their deliveries.
    pub fn fan_out(&self, limit: i64) -> Result<Vec<Notification>, Unavailable> {
        let result = self.0.query(FAN_OUT, &[limit.into()])?;
        Rows::of(&result).decode_found("id", notification)
    }

    /// Counts a dispatch request, and gives the dispatcher lease to `holder` for `lease` when
    /// nobody holds it: the requests counted so far when `holder` now holds the lease.
    pub fn request_dispatch(&self, holder: &str, lease: Duration) -> Result<Option<i64>, Unavailable> {
        let result = self.0.query(
            REQUEST_DISPATCH,
            &[holder.to_owned().into(), lease.as_secs_f64().into()],
        )?;
        let row = Rows::of(&result).one()?;
        let Some(requests) = row.get::<Option<i64>>("requests")? else {
            eprintln!("notify-fn: the dispatcher row is missing (sql/003_dispatcher.sql)");
            return Err(Unavailable);
        };
        Ok(row.get::<bool>("holding")?.then_some(requests))
    }

    /// Extends `holder`'s lease by `lease`: the requests counted so far, or `None` when the
    /// lease has passed to another dispatcher.
    pub fn renew_dispatch(&self, holder: &str, lease: Duration) -> Result<Option<i64>, Unavailable> {
        let result = self.0.query(
            RENEW_DISPATCH,
            &[holder.to_owned().into(), lease.as_secs_f64().into()],
        )?;
        Rows::of(&result).one()?.get("requests")
    }

    /// Gives the lease up if no request was counted since `requests` (any, when `None`):
    /// whether it was given up.
    pub fn release_dispatch(&self, holder: &str, requests: Option<i64>) -> Result<bool, Unavailable> {
        let released = self
            .0
            .execute(RELEASE_DISPATCH, &[holder.to_owned().into(), requests.into()])?;
        Ok(released == 1)
    }

    /// Claims due deliveries for one attempt each, leased for `lease`.
    pub fn claim_due(&self, limit: i64, lease: Duration) -> Result<Vec<Job>, Unavailable> {
        let result = self
            .0
            .query(CLAIM_DUE, &[limit.into(), lease.as_secs_f64().into()])?;
        Rows::of(&result).decode_found("delivery_id", |row| {
            Ok(Job {
                delivery_id: row.get("delivery_id")?,
                failures: row.get("failures")?,
                url: row.get("url")?,
                secret: row.get("secret")?,
                notification: notification(row)?,
            })
        })
    }

    /// Records an attempt and what the delivery becomes.
    pub fn record(&self, job: &Job, attempt: &AttemptOutcome, verdict: Verdict) -> Result<(), Unavailable> {
        let retry_delay = match verdict {
            Verdict::RetryAfter(delay) => Some(delay.as_secs_f64()),
            Verdict::Delivered | Verdict::Failed => None,
        };
        self.0.execute(
            RECORD_ATTEMPT,
            &[
                job.delivery_id.into(),
                job.notification.id.into(),
                verdict.status().as_str().to_owned().into(),
                retry_delay.into(),
                attempt.status_code().map(i32::from).into(),
                attempt.error().map(str::to_owned).into(),
            ],
        )?;
        Ok(())
    }
}

fn subscription(row: Row<'_>) -> Result<Subscription, Unavailable> {
    let types = row
        .get::<Option<Vec<Option<String>>>>("types")?
        .map(|types| types.iter().flatten().map(|t| change_type(t)).collect())
        .transpose()?;
    Ok(Subscription {
        id: row.get("id")?,
        url: row.get("url")?,
        types,
        secret: row.get("secret")?,
        created_at: row.get("created_at")?,
    })
}

/// A notification from a row with its columns (`id`, `type`, `status`, ... `event_updated_at`).
fn notification(row: Row<'_>) -> Result<Notification, Unavailable> {
    let date: NaiveDate = row.get("date")?;
    Ok(Notification {
        id: row.get("id")?,
        kind: change_type(&row.get::<String>("type")?)?,
        status: status(&row.get::<String>("status")?)?,
        created_at: row.get("created_at")?,
        event: EventData {
            id: row.get("event_id")?,
            title: row.get("title")?,
            description: row.get("description")?,
            date: date.format("%Y-%m-%d").to_string(),
            times: EventTimes {
                start_time: row.get::<Option<NaiveTime>>("start_time")?.map(time_of_day),
                end_time: row.get::<Option<NaiveTime>>("end_time")?.map(time_of_day),
                time_zone: row.get("time_zone")?,
                end_date: row
                    .get::<Option<NaiveDate>>("end_date")?
                    .map(|d| d.format("%Y-%m-%d").to_string()),
            },
            created_at: rfc3339_utc(row.get("event_created_at")?),
            updated_at: rfc3339_utc(row.get("event_updated_at")?),
        },
    })
}

/// A delivery, without its attempts, from a row of `GET_NOTIFICATION`.
fn delivery(row: Row<'_>) -> Result<Delivery, Unavailable> {
    let status = status(&row.get::<String>("delivery_status")?)?;
    let next_attempt_at: Option<NaiveDateTime> = row.get("delivery_next_attempt_at")?;
    Ok(Delivery {
        subscription_id: row.get("subscription_id")?,
        url: row.get("url")?,
        next_attempt_at: next_attempt_at.filter(|_| status == DeliveryStatus::Pending),
        status,
        attempts: Vec::new(),
    })
}

// The tables' CHECK constraints hold these: another value is a fault, not a client error.

fn change_type(text: &str) -> Result<ChangeType, Unavailable> {
    ChangeType::parse(text).ok_or_else(|| {
        eprintln!("notify-fn: stored notification type {text:?} is unknown");
        Unavailable
    })
}

fn status(text: &str) -> Result<DeliveryStatus, Unavailable> {
    DeliveryStatus::parse(text).ok_or_else(|| {
        eprintln!("notify-fn: stored status {text:?} is unknown");
        Unavailable
    })
}
