//! Events in PostgreSQL through Spin's `pg4`: one connection per request and one statement per
//! operation on the success path. Each write carries its own checks and its outbox row (the
//! notification), so a change and its notification commit together or not at all.

use chrono::NaiveDateTime;
use event_contract::ChangeType;
use http_kit::{Page, Row, Rows, Unavailable};
use spin_sdk::pg4::{Connection, ParameterValue};

use crate::domain::{CalendarFilter, EventDate, EventDescription, EventInput, EventPatch, EventTitle};
use crate::pagination::{Cursor, ListQuery};
use crate::schedule::{EventTime, EventZone, Schedule, TimeFields};

/// An event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: i64,
    pub title: EventTitle,
    pub description: Option<EventDescription>,
    pub date: EventDate,
    pub schedule: Schedule,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub version: i64,
}

impl Event {
    /// The event's content, as a `PUT` of it would send it.
    pub fn input(&self) -> EventInput {
        EventInput {
            title: self.title.clone(),
            description: self.description.clone(),
            date: self.date,
            schedule: self.schedule.clone(),
        }
    }
}

/// Whether a dispatcher held the lease when a change was written (the `lease` of each write
/// statement). While it holds it, the dispatcher will see the change's notification: it gives
/// the lease up only after every write that saw it held has committed (notify-fn's
/// `release_dispatch` waits for their share locks on the `dispatcher` row), and only when
/// nothing is left to fan out. Otherwise the write hands off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dispatcher {
    Running,
    Idle,
}

/// What a conditional write found.
pub enum WriteOutcome<T> {
    Done(T, Dispatcher),
    NotFound,
    PreconditionFailed,
}

/// What an idempotent create found.
pub enum CreateOutcome {
    Created(Event, Dispatcher),
    /// The key was used before with this very request: the first response again.
    Replayed(Event),
    /// The key was used before with another request.
    KeyReused,
}

// Every statement returns at least one row (Spin 4.0.0-4.0.2 never returns from a query that
// returns none): a look-up anchors on a one-row source, so "nothing" is a row of NULLs.
//
// Each write also reads the dispatcher lease (the `dispatching` column) and, while it is live,
// holds a share lock on it until the write commits: notify-fn's release waits for such writes
// (sql/009_write_functions.sql and sql/011_write_functions_lease_first.sql say how).

/// `$1` id: sql/014_read_function.sql's `get_event`, a function so that PostgreSQL parses its
/// statement once per pooled connection and keeps a plan, rather than planning on every
/// request. A row of NULLs: no such event.
const GET_EVENT: &str = "
    SELECT id, title, description, date, start_time, end_time, time_zone, end_date, created_at,
           updated_at, version
    FROM get_event($1::int8)";

/// `$1` from, `$2` to, `$3` ILIKE pattern, `$4`/`$5` the (date, id) after which the page
/// starts, `$6` rows to fetch.
const LIST_EVENTS: &str = "
    SELECT page.id, page.title, page.description, page.date, page.start_time, page.end_time,
           page.time_zone, page.end_date, page.created_at, page.updated_at, page.version
    FROM (VALUES (1)) AS one
    LEFT JOIN (
        SELECT id, title, description, date, start_time, end_time, time_zone, end_date,
               created_at, updated_at, version
        FROM events
        WHERE ($1::date IS NULL OR date >= $1)
          AND ($2::date IS NULL OR date <= $2)
          AND ($3::text IS NULL OR title ILIKE $3)
          AND ($4::date IS NULL OR (date, id) > ($4, $5::int8))
        ORDER BY date, id
        LIMIT $6
    ) AS page ON true
    ORDER BY page.date, page.id";

// The writes call create_event, update_event and delete_event (sql/011_write_functions_lease_first.sql,
// which replaced sql/009_write_functions.sql's), where what each returns is documented: one call
// each, its statements planned once per pooled connection instead of on every request.

/// `$1` title, `$2` description, `$3` date, `$4` idempotency key (or NULL), `$5` the request's
/// fingerprint, `$6` the notification's type, `$7`-`$10` start time, end time, time zone, end
/// date (each NULL: none).
const CREATE_EVENT: &str = "
    SELECT id, created_at, first_request, dispatching
    FROM create_event($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

/// `$1` id, `$2` the versions `If-Match` allows (NULL: any), `$3` title (NULL: keep),
/// `$4` whether to set the description to `$5`, `$6` date (NULL: keep), `$7` the
/// notification's type, `$8` whether to set the time fields to `$9`-`$12` (start time, end
/// time, time zone, end date).
const UPDATE_EVENT: &str = "
    SELECT found, id, title, description, date, start_time, end_time, time_zone, end_date,
           created_at, updated_at, version, dispatching
    FROM update_event($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

/// `$1` id, `$2` the versions `If-Match` allows (NULL: any), `$3` the notification's type.
const DELETE_EVENT: &str = "
    SELECT found, deleted, dispatching FROM delete_event($1, $2, $3)";

/// `$1` the secret's SHA-256 (hex), `$2` the title search as given, `$3` its ILIKE pattern,
/// `$4` from, `$5` to (each NULL: none).
const CREATE_FEED: &str = "
    INSERT INTO feeds (secret_sha256, title_contains, title_pattern, from_date, to_date)
    VALUES ($1, $2, $3, $4, $5)
    RETURNING id, title_contains, from_date, to_date, created_at";

const LIST_FEEDS: &str = "
    SELECT f.id, f.title_contains, f.from_date, f.to_date, f.created_at
    FROM (VALUES (1)) AS one
    LEFT JOIN feeds f ON true
    ORDER BY f.id";

/// `$1` id. A deleted feed's secret finds nothing from then on.
const DELETE_FEED: &str = "DELETE FROM feeds WHERE id = $1";

/// `$1` a secret's SHA-256 (hex), `$2` where the window starts when the feed sets no `from`,
/// `$3` rows to fetch. The feed and its events in one statement: `feed_id` NULL, no such feed;
/// `id` NULL beside it, a feed that selects no event.
const FEED_EVENTS: &str = "
    SELECT feed.id AS feed_id, page.id, page.title, page.description, page.date,
           page.start_time, page.end_time, page.time_zone, page.end_date, page.created_at,
           page.updated_at, page.version
    FROM (VALUES (1)) AS one
    LEFT JOIN feeds feed ON feed.secret_sha256 = $1
    LEFT JOIN LATERAL (
        SELECT id, title, description, date, start_time, end_time, time_zone, end_date,
               created_at, updated_at, version
        FROM events
        WHERE feed.id IS NOT NULL
          AND date >= COALESCE(feed.from_date, $2::date)
          AND (feed.to_date IS NULL OR date <= feed.to_date)
          AND (feed.title_pattern IS NULL OR title ILIKE feed.title_pattern)
        ORDER BY date, id
        LIMIT $3
    ) AS page ON true
    ORDER BY page.date, page.id";

/// A feed as stored, without its secret (only its hash is kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feed {
    pub id: i64,
    pub filter: CalendarFilter,
    pub created_at: NaiveDateTime,
}

/// The events of a calendar, in (date, id) order, and whether more matched than it holds.
pub struct Calendar {
    pub events: Vec<Event>,
    pub truncated: bool,
}

impl Calendar {
    /// The first `max` of `fetched` (up to `max + 1` rows).
    fn of(mut fetched: Vec<Event>, max: usize) -> Self {
        let truncated = fetched.len() > max;
        fetched.truncate(max);
        Self {
            events: fetched,
            truncated,
        }
    }
}

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
        let params: Vec<ParameterValue> = params.into_iter().chain(time_params(&input.schedule)).collect();
        let result = self.0.query(CREATE_EVENT, &params)?;
        let Some(row) = Rows::of(&result).found("id").next().transpose()? else {
            // The function always returns the new event or the key's first use.
            eprintln!("event-fn: create_event returned neither a new event nor a key's first use");
            return Err(Unavailable);
        };
        let created_at: NaiveDateTime = row.get("created_at")?;
        let event = Event {
            id: row.get("id")?,
            title: input.title.clone(),
            description: input.description.clone(),
            date: input.date,
            schedule: input.schedule.clone(),
            created_at,
            updated_at: created_at,
            version: 1,
        };
        Ok(match row.get::<Option<String>>("first_request")? {
            None => CreateOutcome::Created(event, dispatcher(row)?),
            Some(first) if first == fingerprint => CreateOutcome::Replayed(event),
            Some(_) => CreateOutcome::KeyReused,
        })
    }

    /// Replaces an event's content if its version is one of `if_match` (any when `None`).
    pub fn replace(
        &self,
        id: i64,
        input: &EventInput,
        if_match: Option<&[i64]>,
    ) -> Result<WriteOutcome<Event>, Unavailable> {
        self.update(id, &input_as_patch(input), Some(&input.schedule), if_match)
    }

    /// Merges a patch of the title or the description into an event if its version is one of
    /// `if_match` (any when `None`); the time fields stay. A patch that moves the event is
    /// merged by the caller and written with `replace`.
    pub fn patch_text(
        &self,
        id: i64,
        patch: &EventPatch,
        if_match: Option<&[i64]>,
    ) -> Result<WriteOutcome<Event>, Unavailable> {
        self.update(id, patch, None, if_match)
    }

    /// `UPDATE_EVENT`: the title, description and date of `patch`, and the time fields of
    /// `schedule` when given.
    fn update(
        &self,
        id: i64,
        patch: &EventPatch,
        schedule: Option<&Schedule>,
        if_match: Option<&[i64]>,
    ) -> Result<WriteOutcome<Event>, Unavailable> {
        let params: Vec<ParameterValue> = [
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
            schedule.is_some().into(),
        ]
        .into_iter()
        .chain(time_params(&schedule.cloned().unwrap_or_default()))
        .collect();
        let result = self.0.query(UPDATE_EVENT, &params)?;
        let row = Rows::of(&result).one()?;
        Ok(match (row.get::<bool>("found")?, row.is_null("id")?) {
            (false, _) => WriteOutcome::NotFound,
            (true, true) => WriteOutcome::PreconditionFailed,
            (true, false) => WriteOutcome::Done(event(row)?, dispatcher(row)?),
        })
    }

    /// At most `max` events matching `filter` in (date, id) order, with `from` defaulting to
    /// `window_start`.
    pub fn calendar(
        &self,
        filter: &CalendarFilter,
        window_start: EventDate,
        max: usize,
    ) -> Result<Calendar, Unavailable> {
        let result = self.0.query(
            LIST_EVENTS,
            &[
                filter.from.unwrap_or(window_start).date().into(),
                filter.to.map(|d| d.date()).into(),
                filter.title_contains.as_deref().map(like_pattern).into(),
                None::<chrono::NaiveDate>.into(),
                None::<i64>.into(),
                fetch_size(max),
            ],
        )?;
        Ok(Calendar::of(Rows::of(&result).decode_found("id", event)?, max))
    }

    /// Keeps a feed under the hash of its secret.
    pub fn create_feed(&self, secret_sha256: &str, filter: &CalendarFilter) -> Result<Feed, Unavailable> {
        let result = self.0.query(
            CREATE_FEED,
            &[
                secret_sha256.to_owned().into(),
                filter.title_contains.clone().into(),
                filter.title_contains.as_deref().map(like_pattern).into(),
                filter.from.map(|d| d.date()).into(),
                filter.to.map(|d| d.date()).into(),
            ],
        )?;
        feed(Rows::of(&result).one()?)
    }

    pub fn feeds(&self) -> Result<Vec<Feed>, Unavailable> {
        let result = self.0.query(LIST_FEEDS, &[])?;
        Rows::of(&result).decode_found("id", feed)
    }

    /// Revokes a feed; whether it existed.
    pub fn delete_feed(&self, id: i64) -> Result<bool, Unavailable> {
        Ok(self.0.execute(DELETE_FEED, &[id.into()])? > 0)
    }

    /// The calendar of the feed whose secret hashes to `secret_sha256`, if there is one: as
    /// `calendar` with the feed's filter.
    pub fn feed_calendar(
        &self,
        secret_sha256: &str,
        window_start: EventDate,
        max: usize,
    ) -> Result<Option<Calendar>, Unavailable> {
        let result = self.0.query(
            FEED_EVENTS,
            &[
                secret_sha256.to_owned().into(),
                window_start.date().into(),
                fetch_size(max),
            ],
        )?;
        let rows = Rows::of(&result);
        if rows.one()?.is_null("feed_id")? {
            return Ok(None);
        }
        Ok(Some(Calendar::of(rows.decode_found("id", event)?, max)))
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
            (true, true) => WriteOutcome::Done((), dispatcher(row)?),
        })
    }
}

/// Whether the write's statement found the dispatcher lease held (its `dispatching` column).
fn dispatcher(row: Row<'_>) -> Result<Dispatcher, Unavailable> {
    Ok(if row.get::<bool>("dispatching")? {
        Dispatcher::Running
    } else {
        Dispatcher::Idle
    })
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

/// Rows to fetch for a calendar of at most `max` events: one more tells it was cut.
fn fetch_size(max: usize) -> ParameterValue {
    i64::try_from(max).map_or(i64::MAX, |max| max + 1).into()
}

fn feed(row: Row<'_>) -> Result<Feed, Unavailable> {
    let date = |column: &str| -> Result<Option<EventDate>, Unavailable> {
        Ok(row
            .get::<Option<chrono::NaiveDate>>(column)?
            .map(EventDate::from_date))
    };
    Ok(Feed {
        id: row.get("id")?,
        filter: CalendarFilter {
            from: date("from_date")?,
            to: date("to_date")?,
            title_contains: row.get("title_contains")?,
        },
        created_at: row.get("created_at")?,
    })
}

/// The time fields as the parameters of a write: start time, end time, time zone, end date.
fn time_params(schedule: &Schedule) -> [ParameterValue; 4] {
    let TimeFields {
        start_time,
        end_time,
        time_zone,
        end_date,
    } = schedule.fields();
    [
        start_time.map(|t| t.time()).into(),
        end_time.map(|t| t.time()).into(),
        time_zone.map(|z| z.name().to_owned()).into(),
        end_date.map(|d| d.date()).into(),
    ]
}

/// A replacement as the patch that sets the title, the description and the date.
fn input_as_patch(input: &EventInput) -> EventPatch {
    EventPatch {
        title: Some(input.title.clone()),
        description: Some(input.description.clone()),
        date: Some(input.date),
        ..EventPatch::default()
    }
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
        schedule: Schedule::stored(TimeFields {
            start_time: row
                .get::<Option<chrono::NaiveTime>>("start_time")?
                .map(EventTime::from_time),
            end_time: row
                .get::<Option<chrono::NaiveTime>>("end_time")?
                .map(EventTime::from_time),
            time_zone: row
                .get::<Option<String>>("time_zone")?
                .map(|z| EventZone::parse(&z).map_err(|_| invalid("time_zone")))
                .transpose()?,
            end_date: row
                .get::<Option<chrono::NaiveDate>>("end_date")?
                .map(EventDate::from_date),
        }),
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
