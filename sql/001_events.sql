-- Events, and the idempotency records of POST /events.
--
-- Timestamps are `timestamp` holding UTC: Spin 3.6's PostgreSQL interface cannot read
-- `timestamptz` columns.

CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    title       text NOT NULL CHECK (char_length(title) BETWEEN 1 AND 100 AND btrim(title) <> ''),
    description text CHECK (char_length(description) <= 5000),
    date        date NOT NULL,
    created_at  timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
    updated_at  timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
    -- Incremented by every change; the ETag is derived from it.
    version     bigint NOT NULL DEFAULT 1
);

-- Keyset pagination walks (date, id).
CREATE INDEX events_date_id ON events (date, id);
-- Case-insensitive substring search on the title (q=).
CREATE INDEX events_title_trgm ON events USING gin (title gin_trgm_ops);

CREATE TABLE idempotency_keys (
    key         text PRIMARY KEY CHECK (char_length(key) BETWEEN 1 AND 255),
    -- The normalized request the key was first used with: a retry must send the same.
    request     text NOT NULL,
    -- The event the first request created; with the request, the first response is rebuilt
    -- exactly (the event as created: version 1, updated_at = created_at).
    event_id    bigint NOT NULL,
    created_at  timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'utc')
);

CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
