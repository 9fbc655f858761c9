//! notify-fn's SQL, through Spin's `pg4`: subscriptions, the outbox's notifications, their
//! deliveries and attempts, and the dispatcher lease. One dispatch at a time holds the lease;
//! claims also use `FOR UPDATE SKIP LOCKED` plus a lease per delivery, so dispatchers that
//! overlap (after a lease expired) never send the same attempt twice.

use std::time::Duration;

use chrono::NaiveDateTime;
use event_contract::{ChangeType, EventData, rfc3339_utc};
use spin_sdk::pg4::{self, Connection, DbValue, Decode, ParameterValue};

/// The database could not answer; details go to the log.
#[derive(Debug)]
pub struct Unavailable;

impl From<pg4::Error> for Unavailable {
    fn from(error: pg4::Error) -> Self {
        eprintln!("notify-fn: database error: {error:?}");
        Unavailable
    }
}

impl From<pg4::PgError> for Unavailable {
    fn from(error: pg4::PgError) -> Self {
        eprintln!("notify-fn: database error: {error:?}");
        Unavailable
    }
}

pub struct Subscription {
    pub id: i64,
    pub url: String,
    pub types: Option<Vec<String>>,
    pub secret: String,
    pub created_at: NaiveDateTime,
}

pub struct Notification {
    pub id: i64,
    pub kind: String,
    pub status: String,
    pub created_at: NaiveDateTime,
    pub event: EventData,
}

pub struct Delivery {
    pub id: i64,
    pub subscription_id: i64,
    pub url: String,
    pub status: String,
    pub next_attempt_at: Option<NaiveDateTime>,
    pub attempts: Vec<Attempt>,
}

pub struct Attempt {
    pub attempted_at: NaiveDateTime,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub next_attempt_at: Option<NaiveDateTime>,
}

/// A delivery claimed for one attempt.
pub struct Job {
    pub delivery_id: i64,
    /// Failed attempts so far: the position in the retry schedule.
    pub failures: i32,
    pub notification: Notification,
    pub url: String,
    pub secret: String,
}

/// What an attempt came to.
pub enum Outcome {
    Delivered,
    RetryAfter(Duration),
    Failed,
}

/// Filters of `GET /notifications`.
pub struct NotificationFilter {
    pub event_id: Option<i64>,
    pub status: Option<String>,
    pub after_id: Option<i64>,
    pub limit: u8,
}

const SUBSCRIPTION_COLUMNS: &str = "id, url, types, secret, created_at";
const NOTIFICATION_COLUMNS: &str = "n.id, n.type, n.status, n.created_at, n.event_id, n.title, n.description, n.date, n.event_created_at, n.event_updated_at";
const NOW: &str = "(now() AT TIME ZONE 'utc')";

pub struct Store {
    connection: Connection,
}

impl Store {
    pub fn open(url: &str) -> Result<Self, Unavailable> {
        Ok(Self {
            connection: Connection::open(url)?,
        })
    }

    /// Creates a subscription with a fresh signing secret: 32 bytes from two v4 UUIDs (244
    /// random bits from PostgreSQL's strong random source).
    pub fn create_subscription(
        &self,
        url: &str,
        types: Option<&[ChangeType]>,
    ) -> Result<Subscription, Unavailable> {
        let types: Option<Vec<Option<String>>> =
            types.map(|types| types.iter().map(|t| Some(t.as_str().to_owned())).collect());
        let rows = self.connection.query(
            &format!(
                "INSERT INTO subscriptions (url, types, secret)
                 VALUES ($1, $2::text[], 'whsec_' || encode(decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'), 'base64'))
                 RETURNING {SUBSCRIPTION_COLUMNS}"
            ),
            &[url.to_owned().into(), types.into()],
        )?;
        subscription(rows.rows.first().ok_or(Unavailable)?)
    }

    pub fn subscriptions(&self) -> Result<Vec<Subscription>, Unavailable> {
        let rows = self.connection.query(
            &format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions ORDER BY id"),
            &[],
        )?;
        rows.rows.iter().map(|row| subscription(row)).collect()
    }

    pub fn subscription(&self, id: i64) -> Result<Option<Subscription>, Unavailable> {
        let rows = self.connection.query(
            &format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = $1"),
            &[id.into()],
        )?;
        rows.rows.first().map(|row| subscription(row)).transpose()
    }

    /// Deletes a subscription and its pending deliveries; whether it existed.
    pub fn delete_subscription(&self, id: i64) -> Result<bool, Unavailable> {
        Ok(self
            .connection
            .execute("DELETE FROM subscriptions WHERE id = $1", &[id.into()])?
            > 0)
    }

    pub fn notifications(
        &self,
        filter: &NotificationFilter,
    ) -> Result<(Vec<Notification>, bool), Unavailable> {
        let rows = self.connection.query(
            &format!(
                "SELECT {NOTIFICATION_COLUMNS} FROM notifications n
                 WHERE ($1::int8 IS NULL OR n.event_id = $1)
                   AND ($2::text IS NULL OR n.status = $2)
                   AND ($3::int8 IS NULL OR n.id > $3)
                 ORDER BY n.id
                 LIMIT $4"
            ),
            &[
                filter.event_id.into(),
                filter.status.clone().into(),
                filter.after_id.into(),
                (i64::from(filter.limit) + 1).into(),
            ],
        )?;
        let mut notifications = rows
            .rows
            .iter()
            .map(|row| notification(row, 0))
            .collect::<Result<Vec<_>, _>>()?;
        let more = notifications.len() > usize::from(filter.limit);
        notifications.truncate(usize::from(filter.limit));
        Ok((notifications, more))
    }

    pub fn notification(&self, id: i64) -> Result<Option<(Notification, Vec<Delivery>)>, Unavailable> {
        let rows = self.connection.query(
            &format!("SELECT {NOTIFICATION_COLUMNS} FROM notifications n WHERE n.id = $1"),
            &[id.into()],
        )?;
        let Some(row) = rows.rows.first() else {
            return Ok(None);
        };
        let notification = notification(row, 0)?;
        let deliveries = self.connection.query(
            "SELECT d.id, d.subscription_id, s.url, d.status, d.next_attempt_at,
                    a.attempted_at, a.status_code, a.error, a.next_attempt_at
             FROM deliveries d
             JOIN subscriptions s ON s.id = d.subscription_id
             LEFT JOIN delivery_attempts a ON a.delivery_id = d.id
             WHERE d.notification_id = $1
             ORDER BY d.id, a.id",
            &[id.into()],
        )?;
        let mut result: Vec<Delivery> = Vec::new();
        for row in &deliveries.rows {
            let delivery_id: i64 = decode(&row[0])?;
            if result.last().is_none_or(|d| d.id != delivery_id) {
                let status: String = decode(&row[3])?;
                result.push(Delivery {
                    id: delivery_id,
                    subscription_id: decode(&row[1])?,
                    url: decode(&row[2])?,
                    next_attempt_at: if status == "pending" {
                        decode(&row[4])?
                    } else {
                        None
                    },
                    status,
                    attempts: Vec::new(),
                });
            }
            if let (Some(delivery), Some(attempted_at)) =
                (result.last_mut(), decode::<Option<NaiveDateTime>>(&row[5])?)
            {
                delivery.attempts.push(Attempt {
                    attempted_at,
                    status_code: decode(&row[6])?,
                    error: decode(&row[7])?,
                    next_attempt_at: decode(&row[8])?,
                });
            }
        }
        Ok(Some((notification, result)))
    }

    /// Starts the failed deliveries of a notification again from the first attempt; whether
    /// the notification exists.
    pub fn redeliver(&self, id: i64) -> Result<bool, Unavailable> {
        let rows = self.connection.query(
            &format!(
                "WITH target AS (SELECT id FROM notifications WHERE id = $1),
                 restarted AS (
                     UPDATE deliveries SET status = 'pending', failures = 0, next_attempt_at = {NOW}, leased_until = NULL
                     WHERE notification_id = $1 AND status = 'failed'
                     RETURNING id
                 ),
                 reopened AS (
                     UPDATE notifications SET status = 'pending'
                     WHERE id = $1 AND EXISTS (SELECT 1 FROM restarted)
                 )
                 SELECT EXISTS (SELECT 1 FROM target)"
            ),
            &[id.into()],
        )?;
        decode(&rows.rows.first().ok_or(Unavailable)?[0])
    }

    /// Claims notifications not yet fanned out, creates a delivery for each matching
    /// subscription and marks them fanned out (delivered at once when nobody subscribes).
    pub fn fan_out(&self, limit: i64) -> Result<Vec<Notification>, Unavailable> {
        let rows = self.connection.query(
            &format!(
                "WITH claimed AS (
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
                     UPDATE notifications n SET fanned_out_at = {NOW},
                         status = CASE WHEN EXISTS (
                             SELECT 1 FROM subscriptions s WHERE s.types IS NULL OR n.type = ANY (s.types)
                         ) THEN 'pending' ELSE 'delivered' END
                     FROM claimed c WHERE n.id = c.id
                     RETURNING {NOTIFICATION_COLUMNS}
                 )
                 SELECT * FROM marked ORDER BY id"
            ),
            &[limit.into()],
        )?;
        rows.rows.iter().map(|row| notification(row, 0)).collect()
    }

    /// Counts a dispatch request, and gives the dispatcher lease to `holder` for `lease` when
    /// nobody holds it: the requests counted so far when `holder` now holds the lease.
    pub fn request_dispatch(&self, holder: &str, lease: Duration) -> Result<Option<i64>, Unavailable> {
        let rows = self.connection.query(
            &format!(
                "UPDATE dispatcher SET requests = requests + 1,
                     holder = CASE WHEN held_until < {NOW} THEN $1 ELSE holder END,
                     held_until = CASE WHEN held_until < {NOW}
                         THEN {NOW} + make_interval(secs => $2::float8) ELSE held_until END
                 RETURNING CASE WHEN holder = $1 THEN requests END"
            ),
            &[holder.to_owned().into(), lease.as_secs_f64().into()],
        )?;
        match rows.rows.first() {
            Some(row) => decode(&row[0]),
            None => {
                eprintln!("notify-fn: the dispatcher row is missing (sql/003_dispatcher.sql)");
                Err(Unavailable)
            }
        }
    }

    /// Extends `holder`'s lease by `lease`: the requests counted so far, or `None` when the
    /// lease has passed to another dispatcher.
    pub fn renew_dispatch(&self, holder: &str, lease: Duration) -> Result<Option<i64>, Unavailable> {
        let rows = self.connection.query(
            &format!(
                "UPDATE dispatcher SET held_until = {NOW} + make_interval(secs => $2::float8)
                 WHERE holder = $1 RETURNING requests"
            ),
            &[holder.to_owned().into(), lease.as_secs_f64().into()],
        )?;
        rows.rows.first().map(|row| decode(&row[0])).transpose()
    }

    /// Gives the lease up if no request was counted since `requests` (any, when `None`):
    /// whether it was given up.
    pub fn release_dispatch(&self, holder: &str, requests: Option<i64>) -> Result<bool, Unavailable> {
        let released = self.connection.execute(
            "UPDATE dispatcher SET holder = NULL, held_until = '-infinity'
             WHERE holder = $1 AND ($2::int8 IS NULL OR requests = $2::int8)",
            &[holder.to_owned().into(), requests.into()],
        )?;
        Ok(released == 1)
    }

    /// Claims due deliveries for one attempt each, leased for `lease`.
    pub fn claim_due(&self, limit: i64, lease: Duration) -> Result<Vec<Job>, Unavailable> {
        let rows = self.connection.query(
            &format!(
                "WITH due AS (
                     SELECT id FROM deliveries
                     WHERE status = 'pending' AND next_attempt_at <= {NOW}
                       AND (leased_until IS NULL OR leased_until < {NOW})
                     ORDER BY next_attempt_at LIMIT $1
                     FOR UPDATE SKIP LOCKED
                 )
                 UPDATE deliveries d SET leased_until = {NOW} + make_interval(secs => $2::float8)
                 FROM due, notifications n, subscriptions s
                 WHERE d.id = due.id AND n.id = d.notification_id AND s.id = d.subscription_id
                 RETURNING d.id, d.failures, s.url, s.secret, {NOTIFICATION_COLUMNS}"
            ),
            &[limit.into(), lease.as_secs_f64().into()],
        )?;
        rows.rows
            .iter()
            .map(|row| {
                Ok(Job {
                    delivery_id: decode(&row[0])?,
                    failures: decode(&row[1])?,
                    url: decode(&row[2])?,
                    secret: decode(&row[3])?,
                    notification: notification(row, 4)?,
                })
            })
            .collect()
    }

    /// Records an attempt and its outcome, releases the lease and updates the notification's
    /// status, in one statement. A retry is due after `delay` scaled by a random 0.8–1.2, so
    /// receivers that failed together do not all get their retries at once.
    pub fn record(
        &self,
        job: &Job,
        status_code: Option<u16>,
        error: Option<&str>,
        outcome: &Outcome,
    ) -> Result<(), Unavailable> {
        let (status, delay_secs): (&str, Option<f64>) = match outcome {
            Outcome::Delivered => ("delivered", None),
            Outcome::RetryAfter(delay) => ("pending", Some(delay.as_secs_f64())),
            Outcome::Failed => ("failed", None),
        };
        let params: [ParameterValue; 6] = [
            job.delivery_id.into(),
            job.notification.id.into(),
            status.to_owned().into(),
            delay_secs.into(),
            status_code.map(i32::from).into(),
            error.map(str::to_owned).into(),
        ];
        self.connection.execute(
            &format!(
                "WITH next AS (
                     SELECT CASE WHEN $4::float8 IS NULL THEN NULL
                                 ELSE {NOW} + make_interval(secs => $4::float8 * (0.8 + random() * 0.4)) END AS at
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
                 WHERE n.id = $2"
            ),
            &params,
        )?;
        Ok(())
    }
}

fn decode<T: Decode>(value: &DbValue) -> Result<T, Unavailable> {
    Ok(T::decode(value)?)
}

fn subscription(row: &[DbValue]) -> Result<Subscription, Unavailable> {
    let types: Option<Vec<Option<String>>> = decode(&row[2])?;
    Ok(Subscription {
        id: decode(&row[0])?,
        url: decode(&row[1])?,
        types: types.map(|types| types.into_iter().flatten().collect()),
        secret: decode(&row[3])?,
        created_at: decode(&row[4])?,
    })
}

/// Reads a notification whose `NOTIFICATION_COLUMNS` start at `offset`.
fn notification(row: &[DbValue], offset: usize) -> Result<Notification, Unavailable> {
    let column = |i: usize| row.get(offset + i).ok_or(Unavailable);
    let date: chrono::NaiveDate = decode(column(7)?)?;
    Ok(Notification {
        id: decode(column(0)?)?,
        kind: decode(column(1)?)?,
        status: decode(column(2)?)?,
        created_at: decode(column(3)?)?,
        event: EventData {
            id: decode(column(4)?)?,
            title: decode(column(5)?)?,
            description: decode(column(6)?)?,
            date: date.format("%Y-%m-%d").to_string(),
            created_at: rfc3339_utc(decode(column(8)?)?),
            updated_at: rfc3339_utc(decode(column(9)?)?),
        },
    })
}
