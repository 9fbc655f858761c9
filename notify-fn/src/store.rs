//! notify-fn's SQL, through Spin's `pg4`: subscriptions, the outbox's notifications, their
//! deliveries and attempts, the dispatcher lease, and retention.
//!
//! - Fan-out gives a notification a delivery per enabled subscription whose snapshot (taken when
//!   it was created) did not see the notification's transaction committed: a subscription
//!   receives exactly the changes committed after it was created, whatever the backlog.
//! - A claim takes due deliveries round-robin across subscriptions, at most `concurrency` of
//!   each in flight (one while its last attempt failed), counts the attempt, schedules the
//!   retry, writes the attempt to the log, and hands each a fresh fencing token (`claim`).
//! - A result is recorded only while its delivery still carries that token, and moves the
//!   notification's counters and the subscription's health in the same statement.
//! - A notification's status is a generated column of its counters, which every statement
//!   changes by increments on the notification's row (sql/005_delivery.sql says why).
//! - The claim and the record, the two statements of every delivery, are PL/pgSQL functions
//!   (sql/013_dispatch_functions.sql): Spin prepares a statement on every call, PL/pgSQL parses
//!   a function's statement once per connection and keeps its plan (a generic one after the
//!   first five calls, as observed), and a dispatch keeps its connection.
//!
//! Every query returns at least one row (Spin 4.0.0-4.0.2 never returns from a query that
//! returns none): what may find nothing anchors on a one-row source, so "nothing" is a row of
//! NULLs; statements that need no result are `execute`d.

use std::time::Duration;

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use event_contract::{ChangeType, EventData, EventTimes, rfc3339_utc, time_of_day};
use http_kit::{Page, Row, Rows, Unavailable};
use spin_sdk::pg4::Connection;

use crate::model::{
    AfterAttempt, Attempt, AttemptOutcome, Delivery, DeliveryStatus, Disabled, Health, Job, Notification,
    NotificationFilter, Subscription, Verdict,
};

/// A subscription's columns as `subscription` decodes them (`s`: the subscriptions table); the
/// secrets are not among them.
macro_rules! subscription_columns {
    () => {
        "s.id, s.url, s.types, s.created_at, s.last_success_at, s.failing_since, s.failed_attempts,
         s.failed_deliveries, s.disabled_at, s.disabled_reason,
         CASE WHEN s.previous_secret_expires_at > (now() AT TIME ZONE 'utc')
              THEN s.previous_secret_expires_at END AS previous_secret_expires_at"
    };
}

/// A notification's columns as `notification` decodes them (`n`: the notifications table), the
/// event's title and description from `$content` (`n` unless given: fan-out erases them in the
/// statement that returns them, so it names the row as it was claimed).
macro_rules! notification_columns {
    () => {
        notification_columns!(n)
    };
    ($content:ident) => {
        concat!(
            "n.id, n.type, n.status, n.created_at, n.event_id, ",
            stringify!($content),
            ".title, ",
            stringify!($content),
            ".description, n.date, n.start_time, n.end_time, n.time_zone, n.end_date,
             n.event_created_at, n.event_updated_at"
        )
    };
}

/// A new signing secret: 32 bytes from two v4 UUIDs (244 random bits from PostgreSQL's strong
/// random source), as Standard Webhooks writes it.
macro_rules! new_secret {
    () => {
        "'whsec_' || encode(decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'), 'base64')"
    };
}

/// Adds the rows of the statement's `changes` CTE (`notification_id`, `pending`, `failed`:
/// how many of its deliveries entered, or with a minus left, each state) to the notifications'
/// counters, as increments on each notification's row. sql/013_dispatch_functions.sql's claim
/// and record have the same `counted`.
macro_rules! count_changes {
    () => {
        "counted AS (
            UPDATE notifications n
            SET pending_deliveries = n.pending_deliveries + c.pending,
                failed_deliveries = n.failed_deliveries + c.failed
            FROM (SELECT notification_id, sum(pending)::int4 AS pending, sum(failed)::int4 AS failed
                  FROM changes GROUP BY notification_id) AS c
            WHERE n.id = c.notification_id
        )"
    };
}

/// `$1` url, `$2` types (NULL: all).
const CREATE_SUBSCRIPTION: &str = concat!(
    "INSERT INTO subscriptions AS s (url, types, secret) VALUES ($1, $2::text[], ",
    new_secret!(),
    ") RETURNING s.secret, ",
    subscription_columns!()
);

const LIST_SUBSCRIPTIONS: &str = concat!(
    "SELECT ",
    subscription_columns!(),
    " FROM (VALUES (1)) AS one LEFT JOIN subscriptions s ON true ORDER BY s.id"
);

/// `$1` id.
const GET_SUBSCRIPTION: &str = concat!(
    "SELECT ",
    subscription_columns!(),
    " FROM (VALUES (1)) AS one LEFT JOIN subscriptions s ON s.id = $1"
);

/// `$1` id: deletes the subscription and its deliveries, pending ones included, taking them
/// off their notifications' counters; whether it existed. A dispatcher with one of them in
/// flight finds it gone when it records (and records nothing).
const DELETE_SUBSCRIPTION: &str = concat!(
    "WITH gone AS (DELETE FROM subscriptions WHERE id = $1 RETURNING id),
    dropped AS (
        DELETE FROM deliveries d USING gone WHERE d.subscription_id = gone.id
        RETURNING d.notification_id, d.status
    ),
    changes AS (
        SELECT notification_id, -(status = 'pending')::int4 AS pending, -(status = 'failed')::int4 AS failed
        FROM dropped
    ), ",
    count_changes!(),
    " SELECT EXISTS (SELECT 1 FROM gone) AS found"
);

/// `$1` id: enables the subscription; a disabled one starts its health afresh.
const ENABLE_SUBSCRIPTION: &str = concat!(
    "WITH enabled AS (
        UPDATE subscriptions s SET
            failing_since = CASE WHEN s.disabled_at IS NULL THEN s.failing_since END,
            failed_attempts = CASE WHEN s.disabled_at IS NULL THEN s.failed_attempts ELSE 0 END,
            failed_deliveries = CASE WHEN s.disabled_at IS NULL THEN s.failed_deliveries ELSE 0 END,
            disabled_at = NULL, disabled_reason = NULL
        WHERE s.id = $1
        RETURNING ",
    subscription_columns!(),
    ") SELECT enabled.* FROM (VALUES (1)) AS one LEFT JOIN enabled ON true"
);

/// `$1` id, `$2` grace in seconds: a new secret; the one it replaces also signs until the grace
/// ends (a secret rotated out earlier is dropped).
const ROTATE_SECRET: &str = concat!(
    "WITH rotated AS (
        UPDATE subscriptions s SET previous_secret = s.secret,
            previous_secret_expires_at = (now() AT TIME ZONE 'utc') + make_interval(secs => $2::float8),
            secret = ",
    new_secret!(),
    " WHERE s.id = $1
        RETURNING s.secret, ",
    subscription_columns!(),
    ") SELECT rotated.* FROM (VALUES (1)) AS one LEFT JOIN rotated ON true"
);

/// `$1` event id, `$2` status, `$3` the id after which the page starts (each NULL: any),
/// `$4` rows to fetch.
const LIST_NOTIFICATIONS: &str = concat!(
    "SELECT ",
    notification_columns!(),
    " FROM (VALUES (1)) AS one
    LEFT JOIN (
        SELECT * FROM notifications
        WHERE ($1::int8 IS NULL OR event_id = $1)
          AND ($2::text IS NULL OR status = $2)
          AND ($3::int8 IS NULL OR id > $3)
        ORDER BY id
        LIMIT $4
    ) AS n ON true
    ORDER BY n.id"
);

/// `$1` id: the notification, a row per attempt of each delivery (a delivery without attempts
/// has one row of NULL attempt columns, a notification without deliveries one of NULL
/// delivery columns).
const GET_NOTIFICATION: &str = concat!(
    "SELECT ",
    notification_columns!(),
    ", d.id AS delivery_id, d.subscription_id, s.url, d.status AS delivery_status,
       d.next_attempt_at AS delivery_next_attempt_at,
       a.attempted_at, a.status_code, a.error, a.response_body, a.duration_ms,
       a.next_attempt_at AS attempt_next_attempt_at
    FROM (VALUES (1)) AS one
    LEFT JOIN notifications n ON n.id = $1
    LEFT JOIN deliveries d ON d.notification_id = n.id
    LEFT JOIN subscriptions s ON s.id = d.subscription_id
    LEFT JOIN delivery_attempts a ON a.delivery_id = d.id
    ORDER BY d.id, a.id"
);

/// `$1` id: starts its failed deliveries again from the first attempt, unless its content was
/// erased; whether it exists, and whether it was erased. `failed`: its failed deliveries,
/// locked first, in the order every writer takes (deliveries, then their notification's
/// counters), so no lock cycle; `target`: then the notification, locked and `erased` read from
/// its newest version (the join makes `failed` run before the lock; `OF n`, since the row of
/// an aggregate cannot be locked). Two redeliveries of one notification lock its deliveries in
/// the same order (`ORDER BY id`). So an erasure under way (`ERASE_DELETED`) is waited for and
/// then refuses the redelivery, and an erasure that comes later skips the event while this
/// redelivery holds the row or has made it pending.
const REDELIVER: &str = concat!(
    "WITH failed AS (
        SELECT id FROM deliveries WHERE notification_id = $1 AND status = 'failed'
        ORDER BY id FOR NO KEY UPDATE
    ),
    target AS (
        SELECT n.id, n.title IS NULL AS erased
        FROM notifications n CROSS JOIN (SELECT count(*) FROM failed) AS failed_locked
        WHERE n.id = $1
        FOR NO KEY UPDATE OF n
    ),
    restarted AS (
        UPDATE deliveries d SET status = 'pending', failures = 0,
            next_attempt_at = (now() AT TIME ZONE 'utc'), leased_until = NULL, claim = NULL
        FROM target
        WHERE d.id IN (SELECT id FROM failed) AND NOT target.erased
        RETURNING d.notification_id
    ),
    changes AS (SELECT notification_id, 1 AS pending, -1 AS failed FROM restarted), ",
    count_changes!(),
    " SELECT target.id IS NOT NULL AS found, coalesce(target.erased, false) AS erased
    FROM (VALUES (1)) AS one LEFT JOIN target ON true"
);

/// `$1` how many: claims notifications not yet fanned out, creates a delivery for each enabled
/// subscription that takes their type and did not exist when their change committed, and
/// marks them fanned out (delivered at once when nobody gets them). The subscriptions are
/// locked `FOR KEY SHARE`, so one deleted meanwhile is passed over (a delete waits for the
/// lock, or the lock finds it gone) instead of failing the statement on the foreign key.
///
/// A deleted event's content is erased here when nothing of it is left to send: its deletion
/// gets no delivery and every other notification of it is delivered (they all committed before
/// the deletion did, which held the event's row). Delivered, not just settled: a failed one
/// could be redelivered meanwhile, and a delivered one has nothing to redeliver. The deletion
/// is then erased in the update that marks it (written once after its insert, not twice), the
/// others by `erased`; the rows returned (logged) carry the content as claimed. Otherwise
/// `ERASE_DELETED` erases the event once its notifications settle. `marked` and `erased`
/// never update the same row (PostgreSQL would apply only one of the two): another
/// notification of the event claimed in the same batch is not fanned out yet, so not
/// delivered, and the event is left to `ERASE_DELETED`.
const FAN_OUT: &str = concat!(
    "WITH claimed AS (
        SELECT id, type, event_id, title, description FROM notifications
        WHERE fanned_out_at IS NULL
        ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
    ),
    live AS (
        SELECT id, types, snapshot FROM subscriptions WHERE disabled_at IS NULL FOR KEY SHARE
    ),
    fanned AS (
        INSERT INTO deliveries (notification_id, subscription_id)
        SELECT n.id, s.id FROM notifications n
        JOIN claimed c ON c.id = n.id
        JOIN live s ON (s.types IS NULL OR n.type = ANY (s.types))
            AND NOT pg_visible_in_snapshot(n.xid, s.snapshot)
        ON CONFLICT DO NOTHING
        RETURNING notification_id
    ),
    settled AS (
        SELECT c.id, c.event_id FROM claimed c
        WHERE c.type = 'event.deleted'
          AND NOT EXISTS (SELECT 1 FROM fanned f WHERE f.notification_id = c.id)
          AND NOT EXISTS (
              SELECT 1 FROM notifications p
              WHERE p.event_id = c.event_id AND p.id <> c.id AND p.status <> 'delivered'
          )
    ),
    marked AS (
        UPDATE notifications n SET fanned_out_at = (now() AT TIME ZONE 'utc'),
            pending_deliveries = (SELECT count(*) FROM fanned f WHERE f.notification_id = n.id),
            title = CASE WHEN s.id IS NULL THEN n.title END,
            description = CASE WHEN s.id IS NULL THEN n.description END
        FROM claimed c LEFT JOIN settled s ON s.id = c.id
        WHERE n.id = c.id
        RETURNING ",
    notification_columns!(c),
    "),
    erased AS (
        UPDATE notifications n SET title = NULL, description = NULL
        FROM settled s
        WHERE n.event_id = s.event_id AND n.id <> s.id AND n.title IS NOT NULL
    )
    SELECT marked.* FROM (VALUES (1)) AS one LEFT JOIN marked ON true ORDER BY marked.id"
);

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

/// `$1` holder, `$2` lease in seconds. `requests` NULL: the lease has passed to another;
/// `waiting`: notifications are waiting to be fanned out (writes made while the lease is held
/// do not hand off: the holder finds their notifications here).
///
/// The row is renewed only if it can be locked at once (`renewed`): writes hold it `FOR SHARE`
/// while the lease is held, and share locks do not queue behind a waiting update, so under a
/// steady stream of writes waiting could last until the statement times out. The holder renews
/// at a quarter of the lease and tries again at each look until it gets through.
const RENEW_DISPATCH: &str = "
    WITH free AS (
        SELECT singleton FROM dispatcher WHERE holder = $1 FOR NO KEY UPDATE SKIP LOCKED
    ),
    renewed AS (
        UPDATE dispatcher d
        SET held_until = (now() AT TIME ZONE 'utc') + make_interval(secs => $2::float8)
        FROM free WHERE d.singleton = free.singleton
        RETURNING d.requests
    )
    SELECT d.requests, renewed.requests IS NOT NULL AS renewed,
           EXISTS (SELECT 1 FROM notifications WHERE fanned_out_at IS NULL) AS waiting
    FROM (VALUES (1)) AS one
    LEFT JOIN dispatcher d ON d.holder = $1
    LEFT JOIN renewed ON true";

/// `$1` holder: as `RENEW_DISPATCH`, without writing.
const DISPATCH_REQUESTS: &str = "
    SELECT d.requests, false AS renewed,
           EXISTS (SELECT 1 FROM notifications WHERE fanned_out_at IS NULL) AS waiting
    FROM (VALUES (1)) AS one LEFT JOIN dispatcher d ON d.holder = $1";

/// `$1` holder: the first statement of a release, in its transaction. Locks the dispatcher row
/// unless a write holds it `FOR SHARE` (event-fn/src/store.rs: a write that found the lease held
/// and has not committed yet, so its notification is not visible): then `locked` is false, and
/// the holder looks again a little later rather than wait (share locks do not queue behind a
/// waiting `FOR UPDATE`, so under a steady stream of writes a wait could last long). Once it
/// holds the lock, a write that comes waits for the release to commit, then re-checks the row.
const LOCK_DISPATCHER: &str = "
    SELECT locked.holder IS NOT NULL AS locked
    FROM (VALUES (1)) AS one
    LEFT JOIN (SELECT holder FROM dispatcher WHERE holder = $1 FOR UPDATE SKIP LOCKED) AS locked
        ON true";

/// `$1` holder, `$2` the requests counted when it last looked (NULL: give up regardless). With
/// `$2`, it runs after `LOCK_DISPATCHER`, as a statement of its own so that it reads a snapshot
/// taken once every write that saw the lease held has committed: it gives the lease up only if
/// none of their notifications (nor any other) waits to be fanned out and no hand-off or
/// periodic trigger was counted since the last look.
const RELEASE_DISPATCH: &str = "
    UPDATE dispatcher SET holder = NULL, held_until = '-infinity'
    WHERE holder = $1 AND ($2::int8 IS NULL OR (requests = $2::int8
        AND NOT EXISTS (SELECT 1 FROM notifications WHERE fanned_out_at IS NULL)))";

/// `$1` how many, `$2` lease in seconds, `$3` attempts in flight per subscription, `$4` the
/// retry schedule in milliseconds: sql/013_dispatch_functions.sql's `claim_due`, a function so
/// that PostgreSQL plans its statement once per connection rather than on every claim.
const CLAIM_DUE: &str = "SELECT * FROM claim_due($1::int8, $2::float8, $3::int8, $4::int8[])";

/// `$1` delivery, `$2` its claim's token, `$3` the delivery's new status, `$4` status code,
/// `$5` error, `$6` the start of the response body, `$7` milliseconds taken:
/// sql/013_dispatch_functions.sql's `record_attempt`, planned once per connection as the claim.
/// The subscription's health after it (all NULL: nothing was recorded).
const RECORD_ATTEMPT: &str =
    "SELECT * FROM record_attempt($1::int8, $2::int8, $3::text, $4::int4, $5::text, $6::text, $7::int4)";

/// `$1` subscription, `$2` why: disables it and fails its pending deliveries (in-flight ones
/// included: their results will not be recorded); how many it failed.
const DISABLE_SUBSCRIPTION: &str = concat!(
    "WITH disabled AS (
        UPDATE subscriptions SET disabled_at = (now() AT TIME ZONE 'utc'), disabled_reason = $2
        WHERE id = $1 AND disabled_at IS NULL
        RETURNING id
    ),
    stopped AS (
        UPDATE deliveries d SET status = 'failed', leased_until = NULL, claim = NULL
        FROM disabled WHERE d.subscription_id = disabled.id AND d.status = 'pending'
        RETURNING d.notification_id
    ),
    changes AS (SELECT notification_id, -1 AS pending, 1 AS failed FROM stopped), ",
    count_changes!(),
    " SELECT count(*) AS stopped FROM stopped"
);

/// `$1` retention in seconds, `$2` how many: deletes the oldest delivered notifications older
/// than the retention, with their deliveries and attempts (`ON DELETE CASCADE`). A deletion
/// whose event is not erased yet stays: it is the row `ERASE_DELETED` finds the event by, so
/// without it the content of the event's other notifications (one still pending, then failed,
/// which retention keeps) would never be erased.
const DELETE_EXPIRED: &str = "
    DELETE FROM notifications WHERE id IN (
        SELECT id FROM notifications
        WHERE status = 'delivered'
          AND created_at < (now() AT TIME ZONE 'utc') - make_interval(secs => $1::float8)
          AND NOT (type = 'event.deleted' AND title IS NOT NULL)
        ORDER BY created_at
        LIMIT $2
    )";

/// `$1` how many deleted events: erases the title and description of every notification of a
/// deleted event once none of them is pending (the `event.deleted` notification says the event
/// is gone; notify-fn never reads events). What fan-out could not erase at once: a deletion
/// that got deliveries, or whose event then had a notification pending or failed.
///
/// `candidates` are such events as of the statement's snapshot; `locked`, their notifications
/// locked and re-checked as not pending in their newest versions (`SKIP LOCKED`: one that
/// `REDELIVER` holds is passed over); `settled`, the events all of whose notifications were
/// locked. An event with a notification redelivered meanwhile (held, or pending again) is
/// skipped, and found again once that notification is delivered or failed: a notification that
/// is to be sent never loses its content. The re-check `status <> 'pending'` is what catches a
/// redelivery that committed after the snapshot and before the lock (no test forces that
/// interleaving; `an_erasure_passes_over_an_event_being_redelivered` forces the held one).
const ERASE_DELETED: &str = "
    WITH candidates AS (
        SELECT d.event_id FROM notifications d
        WHERE d.type = 'event.deleted' AND d.title IS NOT NULL AND d.fanned_out_at IS NOT NULL
          AND NOT EXISTS (
              SELECT 1 FROM notifications p WHERE p.event_id = d.event_id AND p.status = 'pending'
          )
        LIMIT $1
    ),
    locked AS (
        SELECT n.id, n.event_id FROM notifications n JOIN candidates c ON n.event_id = c.event_id
        WHERE n.status <> 'pending'
        FOR NO KEY UPDATE OF n SKIP LOCKED
    ),
    settled AS (
        SELECT l.event_id FROM locked l GROUP BY l.event_id
        HAVING count(*) = (SELECT count(*) FROM notifications n WHERE n.event_id = l.event_id)
    )
    UPDATE notifications n SET title = NULL, description = NULL
    FROM settled WHERE n.event_id = settled.event_id AND n.title IS NOT NULL";

/// What `redeliver` found.
pub enum Redelivery {
    /// Its failed deliveries start again (if it had any).
    Restarted,
    NotFound,
    /// Its event was deleted and its content erased: there is nothing left to send.
    Erased,
}

/// What became of an attempt's result.
pub enum Recorded {
    /// Recorded; the subscription's health after it.
    Recorded(AfterAttempt),
    /// Refused: the delivery carries another claim's token now (the lease expired and another
    /// dispatcher claimed it, or it was redelivered or disabled), or it is gone.
    Refused,
}

/// What the holder of the dispatcher lease finds when it looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseState {
    /// Dispatch requests counted so far (hand-offs, the periodic trigger).
    pub requests: i64,
    /// Notifications wait to be fanned out.
    pub waiting: bool,
    /// The lease was extended (`renew_dispatch` could lock the row at once).
    pub renewed: bool,
}

/// What became of an attempt to give the dispatcher lease up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    Released,
    /// Kept: something waits to be fanned out, or a request was counted since the last look.
    Kept,
    /// Kept: a write that found the lease held has not committed yet.
    Busy,
}

/// One request's connection.
pub struct Store(Connection);

impl Store {
    pub fn open(url: &str) -> Result<Self, Unavailable> {
        http_kit::connect(url).map(Self)
    }

    /// A new subscription, and its signing secret (never read again).
    pub fn create_subscription(
        &self,
        url: &str,
        types: Option<&[ChangeType]>,
    ) -> Result<(Subscription, String), Unavailable> {
        let types: Option<Vec<Option<String>>> =
            types.map(|types| types.iter().map(|t| Some(t.as_str().to_owned())).collect());
        let result = self
            .0
            .query(CREATE_SUBSCRIPTION, &[url.to_owned().into(), types.into()])?;
        let row = Rows::of(&result).one()?;
        Ok((subscription(row)?, row.get("secret")?))
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
        let result = self.0.query(DELETE_SUBSCRIPTION, &[id.into()])?;
        Rows::of(&result).one()?.get("found")
    }

    /// Enables a subscription (a disabled one starts its health afresh).
    pub fn enable_subscription(&self, id: i64) -> Result<Option<Subscription>, Unavailable> {
        let result = self.0.query(ENABLE_SUBSCRIPTION, &[id.into()])?;
        Rows::of(&result).decode_first("id", subscription)
    }

    /// Gives a subscription a new secret, the old one honoured for `grace`: the subscription
    /// and its new secret (never read again).
    pub fn rotate_secret(
        &self,
        id: i64,
        grace: Duration,
    ) -> Result<Option<(Subscription, String)>, Unavailable> {
        let result = self
            .0
            .query(ROTATE_SECRET, &[id.into(), grace.as_secs_f64().into()])?;
        Rows::of(&result).decode_first("id", |row| Ok((subscription(row)?, row.get("secret")?)))
    }

    /// Disables a subscription and fails its pending deliveries: how many.
    pub fn disable_subscription(&self, id: i64, reason: &str) -> Result<i64, Unavailable> {
        let result = self
            .0
            .query(DISABLE_SUBSCRIPTION, &[id.into(), reason.to_owned().into()])?;
        Rows::of(&result).one()?.get("stopped")
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
                    response_body: row.get("response_body")?,
                    duration_ms: row.get("duration_ms")?,
                    next_attempt_at: row.get("attempt_next_attempt_at")?,
                });
            }
        }
        Ok(Some((
            notification(first)?,
            deliveries.into_iter().map(|(_, delivery)| delivery).collect(),
        )))
    }

    /// Starts the failed deliveries of a notification again from the first attempt.
    pub fn redeliver(&self, id: i64) -> Result<Redelivery, Unavailable> {
        let result = self.0.query(REDELIVER, &[id.into()])?;
        let row = Rows::of(&result).one()?;
        Ok(match (row.get("found")?, row.get("erased")?) {
            (false, _) => Redelivery::NotFound,
            (true, true) => Redelivery::Erased,
            (true, false) => Redelivery::Restarted,
        })
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

    /// Extends `holder`'s lease by `lease` unless a write holds the row: what it finds, or
    /// `None` when the lease has passed to another dispatcher.
    pub fn renew_dispatch(&self, holder: &str, lease: Duration) -> Result<Option<LeaseState>, Unavailable> {
        let result = self.0.query(
            RENEW_DISPATCH,
            &[holder.to_owned().into(), lease.as_secs_f64().into()],
        )?;
        lease_state(Rows::of(&result).one()?)
    }

    /// As `renew_dispatch`, without writing.
    pub fn dispatch_requests(&self, holder: &str) -> Result<Option<LeaseState>, Unavailable> {
        let result = self.0.query(DISPATCH_REQUESTS, &[holder.to_owned().into()])?;
        lease_state(Rows::of(&result).one()?)
    }

    /// Gives the lease up regardless (the dispatch ends early: `MAX_DISPATCH`, an error).
    pub fn abandon_dispatch(&self, holder: &str) -> Result<(), Unavailable> {
        self.0
            .execute(RELEASE_DISPATCH, &[holder.to_owned().into(), None::<i64>.into()])?;
        Ok(())
    }

    /// Gives the lease up if nothing waits to be fanned out and no request was counted since
    /// `requests`: in one transaction, first the row lock (`LOCK_DISPATCHER`), then the
    /// release (`RELEASE_DISPATCH`). Spin's pool hands this session to the next request, so it
    /// never stays in the transaction: committed, or rolled back on any error.
    pub fn release_dispatch(&self, holder: &str, requests: i64) -> Result<Release, Unavailable> {
        self.0.execute("BEGIN", &[])?;
        let release = self.try_release(holder, requests);
        let end = self
            .0
            .execute(if release.is_ok() { "COMMIT" } else { "ROLLBACK" }, &[]);
        let release = release?;
        end?;
        Ok(release)
    }

    fn try_release(&self, holder: &str, requests: i64) -> Result<Release, Unavailable> {
        let result = self.0.query(LOCK_DISPATCHER, &[holder.to_owned().into()])?;
        if !Rows::of(&result).one()?.get::<bool>("locked")? {
            return Ok(Release::Busy);
        }
        let released = self.0.execute(
            RELEASE_DISPATCH,
            &[holder.to_owned().into(), Some(requests).into()],
        )?;
        Ok(if released == 1 {
            Release::Released
        } else {
            Release::Kept
        })
    }

    /// Claims up to `limit` due deliveries for one attempt each, leased for `lease`, at most
    /// `concurrency` per subscription in flight; `schedule` is the retry schedule.
    pub fn claim_due(
        &self,
        limit: usize,
        lease: Duration,
        concurrency: u32,
        schedule: &[Duration],
    ) -> Result<Vec<Job>, Unavailable> {
        let schedule_ms: Vec<i64> = schedule
            .iter()
            .map(|delay| i64::try_from(delay.as_millis()).unwrap_or(i64::MAX))
            .collect();
        let result = self.0.query(
            CLAIM_DUE,
            &[
                i64::try_from(limit).unwrap_or(i64::MAX).into(),
                lease.as_secs_f64().into(),
                i64::from(concurrency).into(),
                schedule_ms.into(),
            ],
        )?;
        Rows::of(&result).decode_found("delivery_id", |row| {
            let previous: Option<String> = row.get("previous_secret")?;
            Ok(Job {
                delivery_id: row.get("delivery_id")?,
                claim: row.get("claim")?,
                failures: row.get("failures")?,
                url: row.get("url")?,
                secrets: std::iter::once(row.get("secret")?).chain(previous).collect(),
                notification: notification(row)?,
            })
        })
    }

    /// Records an attempt's result under its claim's token.
    pub fn record(
        &self,
        job: &Job,
        outcome: &AttemptOutcome,
        verdict: Verdict,
        took: Duration,
    ) -> Result<Recorded, Unavailable> {
        let result = self.0.query(
            RECORD_ATTEMPT,
            &[
                job.delivery_id.into(),
                job.claim.into(),
                verdict.status().as_str().to_owned().into(),
                outcome.status_code().map(i32::from).into(),
                outcome.error().map(str::to_owned).into(),
                outcome.body().map(str::to_owned).into(),
                i32::try_from(took.as_millis()).unwrap_or(i32::MAX).into(),
            ],
        )?;
        let row = Rows::of(&result).one()?;
        let Some(subscription_id) = row.get::<Option<i64>>("subscription_id")? else {
            return Ok(Recorded::Refused);
        };
        let failing_for: Option<f64> = row.get("failing_for")?;
        Ok(Recorded::Recorded(AfterAttempt {
            subscription_id,
            failing_for: failing_for.map(|seconds| Duration::from_secs_f64(seconds.max(0.0))),
            failed_deliveries: row.get("failed_deliveries")?,
            disabled: row.get("disabled")?,
        }))
    }

    /// Deletes up to `limit` delivered notifications older than `retention`: how many.
    pub fn delete_expired(&self, retention: Duration, limit: i64) -> Result<u64, Unavailable> {
        Ok(self
            .0
            .execute(DELETE_EXPIRED, &[retention.as_secs_f64().into(), limit.into()])?)
    }

    /// Erases the content of the settled notifications of up to `limit` deleted events: how
    /// many notifications.
    pub fn erase_deleted(&self, limit: i64) -> Result<u64, Unavailable> {
        Ok(self.0.execute(ERASE_DELETED, &[limit.into()])?)
    }
}

fn subscription(row: Row<'_>) -> Result<Subscription, Unavailable> {
    let types = row
        .get::<Option<Vec<Option<String>>>>("types")?
        .map(|types| types.iter().flatten().map(|t| change_type(t)).collect())
        .transpose()?;
    let disabled_at: Option<NaiveDateTime> = row.get("disabled_at")?;
    Ok(Subscription {
        id: row.get("id")?,
        url: row.get("url")?,
        types,
        created_at: row.get("created_at")?,
        health: Health {
            last_success_at: row.get("last_success_at")?,
            failing_since: row.get("failing_since")?,
            failed_attempts: row.get("failed_attempts")?,
            failed_deliveries: row.get("failed_deliveries")?,
        },
        disabled: match disabled_at {
            Some(at) => Some(Disabled {
                at,
                reason: row.get::<Option<String>>("disabled_reason")?.unwrap_or_default(),
            }),
            None => None,
        },
        previous_secret_expires_at: row.get("previous_secret_expires_at")?,
    })
}

/// A notification from a row with its columns (`id`, `type`, `status`, ... `event_updated_at`).
/// A `RENEW_DISPATCH` or `DISPATCH_REQUESTS` row; `None` when the lease has passed to another.
fn lease_state(row: Row<'_>) -> Result<Option<LeaseState>, Unavailable> {
    row.get::<Option<i64>>("requests")?
        .map(|requests| {
            Ok(LeaseState {
                requests,
                waiting: row.get("waiting")?,
                renewed: row.get("renewed")?,
            })
        })
        .transpose()
}

fn notification(row: Row<'_>) -> Result<Notification, Unavailable> {
    let event_id: i64 = row.get("event_id")?;
    let event = match row.get::<Option<String>>("title")? {
        Some(title) => {
            let date: NaiveDate = row.get("date")?;
            Some(EventData {
                id: event_id,
                title,
                description: row.get("description")?,
                // `YYYY-MM-DD`, chrono's `Display` of a date, as event-fn shows it.
                date: date.to_string(),
                times: EventTimes {
                    start_time: row.get::<Option<NaiveTime>>("start_time")?.map(time_of_day),
                    end_time: row.get::<Option<NaiveTime>>("end_time")?.map(time_of_day),
                    time_zone: row.get("time_zone")?,
                    end_date: row.get::<Option<NaiveDate>>("end_date")?.map(|d| d.to_string()),
                },
                created_at: rfc3339_utc(row.get("event_created_at")?),
                updated_at: rfc3339_utc(row.get("event_updated_at")?),
            })
        }
        None => None,
    };
    Ok(Notification {
        id: row.get("id")?,
        kind: change_type(&row.get::<String>("type")?)?,
        status: status(&row.get::<String>("status")?)?,
        created_at: row.get("created_at")?,
        event_id,
        event,
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
