-- Calendars (issue 15): optional times with a time zone on events (and on the notifications
-- that carry them), and the feeds calendar apps subscribe to.
--
-- Every existing event stays an all-day event on its date: the new columns are NULL. The
-- component checks the rules between the fields (and whether a local time exists in its
-- zone, from the time-zone database compiled into it); the constraints here hold the ones that
-- need no time-zone database, so no write can leave an event that reads as nonsense.

ALTER TABLE events
    -- Local times in time_zone (an IANA name); an end on end_date when it is set.
    ADD COLUMN start_time time,
    ADD COLUMN end_time   time,
    ADD COLUMN time_zone  text CHECK (char_length(time_zone) BETWEEN 1 AND 64),
    -- The last day of an event that ends on a later day than date (all-day or timed).
    ADD COLUMN end_date   date,
    ADD CONSTRAINT events_time_needs_zone CHECK ((start_time IS NULL) = (time_zone IS NULL)),
    ADD CONSTRAINT events_end_needs_start CHECK (end_time IS NULL OR start_time IS NOT NULL),
    ADD CONSTRAINT events_end_date_after_date CHECK (end_date IS NULL OR end_date >= date);

-- The outbox carries the event as the API shows it, time fields included.
ALTER TABLE notifications
    ADD COLUMN start_time time,
    ADD COLUMN end_time   time,
    ADD COLUMN time_zone  text,
    ADD COLUMN end_date   date;

-- A feed: a filter and the SHA-256 of its secret. The secret itself (256 random bits, made
-- by event-fn) is shown once, when the feed is created, and never stored. Deleting the row
-- revokes the feed.
CREATE TABLE feeds (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    secret_sha256  text NOT NULL UNIQUE CHECK (secret_sha256 ~ '^[0-9a-f]{64}$'),
    -- The title search as given (q), and the ILIKE pattern made of it.
    title_contains text CHECK (char_length(title_contains) BETWEEN 1 AND 100),
    title_pattern  text,
    from_date      date,
    to_date        date,
    created_at     timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
    CHECK ((title_contains IS NULL) = (title_pattern IS NULL)),
    CHECK (from_date IS NULL OR to_date IS NULL OR from_date <= to_date)
);

-- event-fn creates, lists, reads and deletes feeds (never updates one); notify-fn never sees
-- them (sql/004_roles.sql).
GRANT SELECT, INSERT, DELETE ON feeds TO event_fn;
