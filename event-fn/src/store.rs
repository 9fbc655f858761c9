//! Events in PostgreSQL through Spin's `pg4`: one connection per request and one statement per
//! operation on the success path. Each write carries its own checks and its outbox row (the
//! notification), so a change and its notification commit together or not at all.

use chrono::NaiveDateTime;
use event_contract::ChangeType;
use http_kit::{Page, Row, Rows, Unavailable};
use spin_sdk::pg4::{Connection, ParameterValue};

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

// Every statement returns at least one row (Spin 4.0.0-4.0.2 never returns from a query that
// returns none): a look-up anchors on a one-row source, so "nothing" is a row of NULLs.

/// `$1` id.
const GET_EVENT: &str = "
    SELECT e.id, e.title, e.description, e.date, e.created_at, e.updated_at, e.version
    FROM (VALUES (1)) AS one
    LEFT JOIN events e ON e.id = $1";

/// `$1` from, `$2` to, `$3` ILIKE pattern, `$4`/`$5` the (date, id) after which the page
/// starts, `$6` rows to fetch.
const LIST_EVENTS: &str = "
    SELECT page.id, page.title, page.description, page.date, page.created_at, page.updated_at,
           page.version
    FROM (VALUES (1)) AS one
    LEFT JOIN (
        SELECT id, title, description, date, created_at, updated_at, version FROM events
        WHERE ($1::date IS NULL OR date >= $1)
          AND ($2::date IS NULL OR date <= $2)
          AND ($3::text IS NULL OR title ILIKE $3)
          AND ($4::date IS NULL OR (date, id) > ($4, $5::int8))
        ORDER BY date, id
        LIMIT $6
    ) AS page ON true
    ORDER BY page.date, page.id";

/// `$1` title, `$2` description, `$3` date, `$4` idempotency key (or NULL), `$5` the request's
/// fingerprint, `$6` the notification's type. The key claim, the insert, its notification (the
/// outbox) and the replay look-up are one statement, so concurrent retries create one event.
/// The first row: the new event (`first_request` NULL), or the key's first use; all NULL when
/// a concurrent first use of the key is not visible yet.
const CREATE_EVENT: &str = "
    WITH fresh AS (
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
        RETURNING id, title, description, date, created_at, updated_at
    ),
    outbox AS (
        INSERT INTO notifications (type, event_id, title, description, date, event_created_at, event_updated_at)
        SELECT $6::text, id, title, description, date, created_at, updated_at FROM inserted
    ),
    outcome AS (
        SELECT id, created_at, NULL::text AS first_request FROM inserted
        UNION ALL
        SELECT event_id, created_at, request FROM idempotency_keys
        WHERE key = $4::text AND NOT EXISTS (SELECT 1 FROM claim)
    )
    SELECT outcome.id, outcome.created_at, outcome.first_request
    FROM (VALUES (1)) AS one
    LEFT JOIN outcome ON true";

/// `$1` id, `$2` the versions `If-Match` allows (NULL: any), `$3` title (NULL: keep),
/// `$4` whether to set the description to `$5`, `$6` date (NULL: keep), `$7` the
/// notification's type. A merge in the database, so a patch needs no prior read; a
/// replacement is the patch that sets every field. `found` false: no such event; `id` NULL
/// beside it: `If-Match` named another version.
const UPDATE_EVENT: &str = "
    WITH target AS (SELECT id FROM events WHERE id = $1),
    updated AS (
        UPDATE events SET title = COALESCE($3::text, title),
            description = CASE WHEN $4::bool THEN $5::text ELSE description END,
            date = COALESCE($6::date, date),
            version = version + 1,
            updated_at = (now() AT TIME ZONE 'utc')
        WHERE id = $1 AND ($2::int8[] IS NULL OR version = ANY($2::int8[]))
        RETURNING id, title, description, date, created_at, updated_at, version
    ),
    outbox AS (
        INSERT INTO notifications (type, event_id, title, description, date, event_created_at, event_updated_at)
        SELECT $7::text, id, title, description, date, created_at, updated_at FROM updated
    )
    SELECT EXISTS (SELECT 1 FROM target) AS found, updated.id, updated.title,
           updated.description, updated.date, updated.created_at, updated.updated_at,
           updated.version
    FROM (VALUES (1)) AS one
    LEFT JOIN updated ON true";

/// `$1` id, `$2` the versions `If-Match` allows (NULL: any), `$3` the notification's type.
const DELETE_EVENT: &str = "
    WITH target AS (SELECT id FROM events WHERE id = $1),
    deleted AS (
        DELETE FROM events
        WHERE id = $1 AND ($2::int8[] IS NULL OR version = ANY($2::int8[]))
        RETURNING id, title, description, date, created_at, updated_at
    ),
    outbox AS (
        INSERT INTO notifications (type, event_id, title, description, date, event_created_at, event_updated_at)
        SELECT $3::text, id, title, description, date, created_at, updated_at FROM deleted
    )
    SELECT EXISTS (SELECT 1 FROM target) AS found, EXISTS (SELECT 1 FROM deleted) AS deleted";

/// One request's connection.
pub struct Store(Connection);

impl Store {
    pub fn open(url: &str) -> Result<Self, Unavailable> {
        http_kit::connect(url).map(Self)
    }

    pub fn get(&self, id: i64) -> Result<Option<Event>, Unavailable> {
        let result = self.0.query(GET_EVENT, &[id.into()])?;
        Rows::of(&result).decode_first("id", event)
    }

    /// One page in (date, id) order after the cursor.
    pub fn list(&self, query: &ListQuery) -> Result<Page<Event>, Unavailable> {
        let (after_date, after_id) = match query.cursor {
            Some(Cursor { date, id }) => (Some(date.date()), Some(id)),
            None => (None, None),
        };
        let result = self.0.query(
            LIST_EVENTS,
            &[
                query.from.map(|d| d.date()).into(),
                query.to.map(|d| d.date()).into(),
                query.title_contains.as_deref().map(like_pattern).into(),
                after_date.into(),
                after_id.into(),
                Page::<Event>::fetch_size(query.limit).into(),
            ],
        )?;
        Ok(Page::of(
            Rows::of(&result).decode_found("id", event)?,
            query.limit,
        ))
    }

    /// Creates an event; with an idempotency key, a retry of the same request returns the first
    /// result instead.
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
            change(ChangeType::Created),
        ];
        // A concurrent first use of the same key commits after this statement's snapshot: the
        // statement then neither inserts nor sees it, and runs once more to read it.
        for _ in 0..2 {
            let result = self.0.query(CREATE_EVENT, &params)?;
            let Some(row) = Rows::of(&result).found("id").next().transpose()? else {
                continue;
            };
            let created_at: NaiveDateTime = row.get("created_at")?;
            let event = Event {
                id: row.get("id")?,
                title: input.title.clone(),
                description: input.description.clone(),
                date: input.date,
                created_at,
                updated_at: created_at,
                version: 1,
            };
            return Ok(match row.get::<Option<String>>("first_request")? {
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
        let every_field = EventPatch {
            title: Some(input.title.clone()),
            description: Some(input.description.clone()),
            date: Some(input.date),
        };
        self.patch(id, &every_field, if_match)
    }

    /// Merges a patch into an event if its version is one of `if_match` (any when `None`).
    pub fn patch(
        &self,
        id: i64,
        patch: &EventPatch,
        if_match: Option<&[i64]>,
    ) -> Result<WriteOutcome<Event>, Unavailable> {
        let result = self.0.query(
            UPDATE_EVENT,
            &[
                id.into(),
                versions(if_match),
                patch.title.as_ref().map(|t| t.as_str().to_owned()).into(),
                patch.description.is_some().into(),
                patch
                    .description
                    .as_ref()
                    .and_then(|d| d.as_ref().map(|d| d.as_str().to_owned()))
                    .into(),
                patch.date.map(|d| d.date()).into(),
                change(ChangeType::Updated),
            ],
        )?;
        let row = Rows::of(&result).one()?;
        Ok(match (row.get::<bool>("found")?, row.is_null("id")?) {
            (false, _) => WriteOutcome::NotFound,
            (true, true) => WriteOutcome::PreconditionFailed,
            (true, false) => WriteOutcome::Done(event(row)?),
        })
    }

    pub fn delete(&self, id: i64, if_match: Option<&[i64]>) -> Result<WriteOutcome<()>, Unavailable> {
        let result = self.0.query(
            DELETE_EVENT,
            &[id.into(), versions(if_match), change(ChangeType::Deleted)],
        )?;
        let row = Rows::of(&result).one()?;
        Ok(match (row.get::<bool>("found")?, row.get::<bool>("deleted")?) {
            (false, _) => WriteOutcome::NotFound,
            (true, false) => WriteOutcome::PreconditionFailed,
            (true, true) => WriteOutcome::Done(()),
        })
    }
}

/// The notification type a write records in the outbox.
fn change(change: ChangeType) -> ParameterValue {
    change.as_str().to_owned().into()
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

/// An event from a row with its columns (`id`, `title`, ... `version`).
fn event(row: Row<'_>) -> Result<Event, Unavailable> {
    // The table's constraints hold what the API validates; a row that breaks them is a fault.
    let invalid = |what: &str| {
        eprintln!("event-fn: stored event has an invalid {what}");
        Unavailable
    };
    Ok(Event {
        id: row.get("id")?,
        title: EventTitle::parse(&row.get::<String>("title")?).map_err(|_| invalid("title"))?,
        description: row
            .get::<Option<String>>("description")?
            .map(|d| EventDescription::parse(&d).map_err(|_| invalid("description")))
            .transpose()?,
        date: EventDate::from_date(row.get("date")?),
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
        version: row.get("version")?,
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
