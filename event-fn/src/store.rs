//! Events in PostgreSQL through Spin's `pg4`: one connection per request and one statement per
//! operation on the success path. Each write carries its own checks and its outbox row (the
//! notification), so a change and its notification commit together or not at all.

use chrono::NaiveDateTime;
use spin_sdk::pg4::{self, Connection, DbValue, Decode, ParameterValue};

use event_contract::ChangeType;

use crate::domain::{EventDate, EventDescription, EventInput, EventPatch, EventTitle};
use crate::pagination::{Cursor, ListQuery};

/// An event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: i64,
    pub title: EventTitle,
    pub description: Option<EventDescription>,
    pub date: EventDate,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub version: i64,
}

/// The database could not answer; details go to the log, not to the client.
#[derive(Debug)]
pub struct Unavailable;

impl From<pg4::Error> for Unavailable {
    fn from(error: pg4::Error) -> Self {
        eprintln!("event-fn: database error: {error:?}");
        Unavailable
    }
}

impl From<pg4::PgError> for Unavailable {
    fn from(error: pg4::PgError) -> Self {
        eprintln!("event-fn: database error: {error:?}");
        Unavailable
    }
}

/// What a conditional write found.
pub enum WriteOutcome<T> {
    Done(T),
    NotFound,
    PreconditionFailed,
}

/// What an idempotent create found.
pub enum CreateOutcome {
    Created(Event),
    /// The key was used before with this very request: the first response again.
    Replayed(Event),
    /// The key was used before with another request.
    KeyReused,
}

const EVENT_COLUMNS: &str = "id, title, description, date, created_at, updated_at, version";

/// A data-modifying CTE that writes the notification of a change: `changed` is the CTE whose
/// RETURNING holds the event's columns after the change.
fn outbox(change: ChangeType, changed: &str) -> String {
    format!(
        "outbox AS (
             INSERT INTO notifications (type, event_id, title, description, date, event_created_at, event_updated_at)
             SELECT '{}', id, title, description, date, created_at, updated_at FROM {changed}
         )",
        change.as_str()
    )
}

pub struct Store {
    connection: Connection,
}

impl Store {
    pub fn open(url: &str) -> Result<Self, Unavailable> {
        Ok(Self {
            connection: Connection::open(url)?,
        })
    }

    pub fn get(&self, id: i64) -> Result<Option<Event>, Unavailable> {
        let rows = self.connection.query(
            &format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = $1"),
            &[id.into()],
        )?;
        rows.rows.first().map(|row| event_at(row, 0)).transpose()
    }

    /// One page in (date, id) order after the cursor, and whether more follow.
    pub fn list(&self, query: &ListQuery) -> Result<(Vec<Event>, bool), Unavailable> {
        let (after_date, after_id) = match query.cursor {
            Some(Cursor { date, id }) => (Some(date.date()), Some(id)),
            None => (None, None),
        };
        let rows = self.connection.query(
            &format!(
                "SELECT {EVENT_COLUMNS} FROM events
                 WHERE ($1::date IS NULL OR date >= $1)
                   AND ($2::date IS NULL OR date <= $2)
                   AND ($3::text IS NULL OR title ILIKE $3)
                   AND ($4::date IS NULL OR (date, id) > ($4, $5::int8))
                 ORDER BY date, id
                 LIMIT $6"
            ),
            &[
                query.from.map(|d| d.date()).into(),
                query.to.map(|d| d.date()).into(),
                query.title_contains.as_deref().map(like_pattern).into(),
                after_date.into(),
                after_id.into(),
                (i64::from(query.limit) + 1).into(),
            ],
        )?;
        let mut events = rows
            .rows
            .iter()
            .map(|row| event_at(row, 0))
            .collect::<Result<Vec<_>, _>>()?;
        let more = events.len() > usize::from(query.limit);
        events.truncate(usize::from(query.limit));
        Ok((events, more))
    }

    /// Creates an event; with an idempotency key, a retry of the same request returns the first
    /// result instead. The key claim, the insert and the replay lookup are one statement, so
    /// concurrent retries create one event.
    pub fn create(
        &self,
        input: &EventInput,
        idempotency_key: Option<&str>,
    ) -> Result<CreateOutcome, Unavailable> {
        let fingerprint = input.fingerprint();
        let params = [
            input.title.as_str().to_owned().into(),
            input.description.as_ref().map(|d| d.as_str().to_owned()).into(),
            input.date.date().into(),
            idempotency_key.map(str::to_owned).into(),
            fingerprint.clone().into(),
        ];
        let statement = format!(
            "WITH fresh AS (
                SELECT nextval(pg_get_serial_sequence('events', 'id')) AS id,
                       (now() AT TIME ZONE 'utc') AS at
            ),
            claim AS (
                INSERT INTO idempotency_keys (key, request, event_id, created_at)
                SELECT $4::text, $5::text, fresh.id, fresh.at FROM fresh WHERE $4::text IS NOT NULL
                ON CONFLICT (key) DO UPDATE
                    SET request = EXCLUDED.request, event_id = EXCLUDED.event_id, created_at = EXCLUDED.created_at
                    WHERE idempotency_keys.created_at < EXCLUDED.created_at - interval '24 hours'
                RETURNING key
            ),
            inserted AS (
                INSERT INTO events (id, title, description, date, created_at, updated_at)
                OVERRIDING SYSTEM VALUE
                SELECT fresh.id, $1::text, $2::text, $3::date, fresh.at, fresh.at FROM fresh
                WHERE $4::text IS NULL OR EXISTS (SELECT 1 FROM claim)
                RETURNING {EVENT_COLUMNS}
            ),
            {}
            SELECT id, created_at, NULL::text AS first_request FROM inserted
            UNION ALL
            SELECT event_id, created_at, request FROM idempotency_keys
            WHERE key = $4::text AND NOT EXISTS (SELECT 1 FROM claim)",
            outbox(ChangeType::Created, "inserted")
        );
        // A concurrent first use of the same key commits after this statement's snapshot: the
        // statement then neither inserts nor sees it, and runs once more to read it.
        for _ in 0..2 {
            let rows = self.connection.query(&statement, &params)?;
            let Some(row) = rows.rows.first() else { continue };
            let id: i64 = decode(&row[0])?;
            let created_at: NaiveDateTime = decode(&row[1])?;
            let first_request: Option<String> = decode(&row[2])?;
            let event = Event {
                id,
                title: input.title.clone(),
                description: input.description.clone(),
                date: input.date,
                created_at,
                updated_at: created_at,
                version: 1,
            };
            return Ok(match first_request {
                None => CreateOutcome::Created(event),
                Some(first) if first == fingerprint => CreateOutcome::Replayed(event),
                Some(_) => CreateOutcome::KeyReused,
            });
        }
        eprintln!("event-fn: idempotency key neither claimed nor found twice");
        Err(Unavailable)
    }

    /// Replaces an event's content if its version is one of `if_match` (any when `None`).
    pub fn replace(
        &self,
        id: i64,
        input: &EventInput,
        if_match: Option<&[i64]>,
    ) -> Result<WriteOutcome<Event>, Unavailable> {
        self.update(
            id,
            if_match,
            "title = $3::text, description = $4::text, date = $5::date",
            vec![
                input.title.as_str().to_owned().into(),
                input.description.as_ref().map(|d| d.as_str().to_owned()).into(),
                input.date.date().into(),
            ],
        )
    }

    /// Merges a patch into an event in the database, so the merge needs no prior read.
    pub fn patch(
        &self,
        id: i64,
        patch: &EventPatch,
        if_match: Option<&[i64]>,
    ) -> Result<WriteOutcome<Event>, Unavailable> {
        self.update(
            id,
            if_match,
            "title = COALESCE($3::text, title),
             description = CASE WHEN $4::bool THEN $5::text ELSE description END,
             date = COALESCE($6::date, date)",
            vec![
                patch.title.as_ref().map(|t| t.as_str().to_owned()).into(),
                patch.description.is_some().into(),
                patch
                    .description
                    .as_ref()
                    .and_then(|d| d.as_ref().map(|d| d.as_str().to_owned()))
                    .into(),
                patch.date.map(|d| d.date()).into(),
            ],
        )
    }

    fn update(
        &self,
        id: i64,
        if_match: Option<&[i64]>,
        assignments: &str,
        mut values: Vec<ParameterValue>,
    ) -> Result<WriteOutcome<Event>, Unavailable> {
        let statement = format!(
            "WITH target AS (SELECT id FROM events WHERE id = $1),
             updated AS (
                 UPDATE events SET {assignments},
                     version = version + 1,
                     updated_at = (now() AT TIME ZONE 'utc')
                 WHERE id = $1 AND ($2::int8[] IS NULL OR version = ANY($2::int8[]))
                 RETURNING {EVENT_COLUMNS}
             ),
             {}
             SELECT EXISTS (SELECT 1 FROM target), updated.*
             FROM (VALUES (1)) AS one LEFT JOIN updated ON true",
            outbox(ChangeType::Updated, "updated")
        );
        let mut params = vec![id.into(), versions(if_match)];
        params.append(&mut values);
        let rows = self.connection.query(&statement, &params)?;
        let row = rows.rows.first().ok_or(Unavailable)?;
        let found: bool = decode(&row[0])?;
        Ok(match (found, &row[1]) {
            (false, _) => WriteOutcome::NotFound,
            (true, DbValue::DbNull) => WriteOutcome::PreconditionFailed,
            (true, _) => WriteOutcome::Done(event_at(row, 1)?),
        })
    }

    pub fn delete(&self, id: i64, if_match: Option<&[i64]>) -> Result<WriteOutcome<()>, Unavailable> {
        let statement = format!(
            "WITH target AS (SELECT id FROM events WHERE id = $1),
             deleted AS (
                 DELETE FROM events
                 WHERE id = $1 AND ($2::int8[] IS NULL OR version = ANY($2::int8[]))
                 RETURNING {EVENT_COLUMNS}
             ),
             {}
             SELECT EXISTS (SELECT 1 FROM target), EXISTS (SELECT 1 FROM deleted)",
            outbox(ChangeType::Deleted, "deleted")
        );
        let rows = self
            .connection
            .query(&statement, &[id.into(), versions(if_match)])?;
        let row = rows.rows.first().ok_or(Unavailable)?;
        let (found, deleted): (bool, bool) = (decode(&row[0])?, decode(&row[1])?);
        Ok(match (found, deleted) {
            (false, _) => WriteOutcome::NotFound,
            (true, false) => WriteOutcome::PreconditionFailed,
            (true, true) => WriteOutcome::Done(()),
        })
    }
}

fn versions(if_match: Option<&[i64]>) -> ParameterValue {
    if_match
        .map(|versions| versions.iter().copied().map(Some).collect::<Vec<_>>())
        .into()
}

/// `%text%` for ILIKE, with the pattern characters of `text` escaped.
fn like_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

fn decode<T: Decode>(value: &DbValue) -> Result<T, Unavailable> {
    Ok(T::decode(value)?)
}

/// Reads the event whose columns start at `offset`, in `EVENT_COLUMNS` order.
fn event_at(row: &[DbValue], offset: usize) -> Result<Event, Unavailable> {
    let column = |i: usize| row.get(offset + i).ok_or(Unavailable);
    let title: String = decode(column(1)?)?;
    let description: Option<String> = decode(column(2)?)?;
    // The table's constraints hold what the API validates; a row that breaks them is a fault.
    let invalid = |what: &str| {
        eprintln!("event-fn: stored event has an invalid {what}");
        Unavailable
    };
    Ok(Event {
        id: decode(column(0)?)?,
        title: EventTitle::parse(&title).map_err(|_| invalid("title"))?,
        description: description
            .map(|d| EventDescription::parse(&d).map_err(|_| invalid("description")))
            .transpose()?,
        date: EventDate::from_date(decode(column(3)?)?),
        created_at: decode(column(4)?)?,
        updated_at: decode(column(5)?)?,
        version: decode(column(6)?)?,
    })
}

#[cfg(test)]
mod tests {
    use super::like_pattern;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern("meet"), "%meet%");
        assert_eq!(like_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
    }
}
