-- event-fn's three writes (sql/009_write_functions.sql) as a few statements in order instead of
-- one statement of CTEs: same parameters, same result columns, same effects; CREATE OR REPLACE
-- keeps their owner and privileges (executable by event_fn alone).
--
-- Why: PostgreSQL time of a create, pgbench (prepared per execution, as Spin does), 2026-12-01,
-- three rounds alternated: 0.23-0.30 ms with sql/009's function, 0.22-0.28 ms with this one, a
-- plain insert 0.17-0.21 ms; with 32 clients 4,400-5,600 creates/s against 5,800-6,100 (a plain
-- insert 9,500-11,000). End to end (bench/run) the difference is within the run-to-run spread:
-- bench/README.md, "The write functions as statements in order".
-- - A create without an idempotency key (almost every create) runs only the insert of the event
--   and its notification: the key's claim and the replay look-up were part of every create's
--   plan and ran on every create.
-- - The lease is its own first statement, so it is share-locked before any event row is
--   touched by the order of the statements, not by the order in which the planner happens to
--   run a join.
-- - A conditional update or delete looks the event up a second time only when it changed
--   nothing (to tell "no such event" from "another version").
-- - A key's replay reads the first use in a statement of its own, with a snapshot taken after
--   the claim: the claim waits for a concurrent first use of the key to commit and leaves it
--   locked, so the replay always finds it (event-fn no longer has to call again).
--
-- Deploy order: this migration before the event-fn that needs it (as for any schema change):
-- that event-fn calls create_event once, and against sql/009's function a concurrent first use
-- of a key would be a 503 instead of a second call.
--
-- The rules of sql/009_write_functions.sql hold: every function returns exactly one row (Spin
-- 4.0.0-4.0.2 never returns from a query that returns none), and a write that finds the lease
-- live holds the dispatcher row FOR SHARE until it commits, so notify-fn's release waits for it.

-- A new event and its notification; with an idempotency key, the key's claim first. The row: the
-- new event (`first_request` NULL), or the key's first use (its event and request).
CREATE OR REPLACE FUNCTION create_event(
    p_title text, p_description text, p_date date, p_key text, p_request text, p_type text,
    p_start_time time, p_end_time time, p_time_zone text, p_end_date date)
RETURNS TABLE (id bigint, created_at timestamp, first_request text, dispatching boolean)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    v_at constant timestamp := now() AT TIME ZONE 'utc';
    v_dispatching boolean;
    v_id bigint;
BEGIN
    v_dispatching := EXISTS (
        SELECT FROM dispatcher WHERE holder IS NOT NULL AND held_until >= v_at FOR SHARE);
    -- PostgreSQL's name for the sequence of events' identity column (sql/001_events.sql);
    -- pg_get_serial_sequence, as in sql/009_write_functions.sql, looked it up in the catalog on
    -- every create.
    v_id := nextval('events_id_seq');
    IF p_key IS NOT NULL THEN
        -- A key older than 24 hours is free again.
        INSERT INTO idempotency_keys (key, request, event_id, created_at)
        VALUES (p_key, p_request, v_id, v_at)
        ON CONFLICT (key) DO UPDATE
            SET request = EXCLUDED.request, event_id = EXCLUDED.event_id,
                created_at = EXCLUDED.created_at
            WHERE idempotency_keys.created_at < EXCLUDED.created_at - interval '24 hours';
        IF NOT FOUND THEN
            RETURN QUERY
            SELECT k.event_id, k.created_at, k.request, v_dispatching
            FROM idempotency_keys k WHERE k.key = p_key;
            RETURN;
        END IF;
    END IF;
    RETURN QUERY
    WITH inserted AS (
        INSERT INTO events (id, title, description, date, start_time, end_time, time_zone,
                            end_date, created_at, updated_at)
        OVERRIDING SYSTEM VALUE
        VALUES (v_id, p_title, p_description, p_date, p_start_time, p_end_time, p_time_zone,
                p_end_date, v_at, v_at)
        RETURNING id, title, description, date, start_time, end_time, time_zone, end_date,
                  created_at, updated_at
    ),
    outbox AS (
        INSERT INTO notifications (type, event_id, title, description, date, start_time,
                                   end_time, time_zone, end_date, event_created_at,
                                   event_updated_at)
        SELECT p_type, id, title, description, date, start_time, end_time, time_zone,
               end_date, created_at, updated_at
        FROM inserted
    )
    SELECT inserted.id, inserted.created_at, NULL::text, v_dispatching FROM inserted;
END
$$;

-- Merges into event p_id, if its version is one of p_versions (NULL: any), as in
-- sql/009_write_functions.sql. `found` false: no such event; `id` NULL beside it: p_versions
-- named another version.
CREATE OR REPLACE FUNCTION update_event(
    p_id bigint, p_versions bigint[], p_title text, p_set_description boolean, p_description text,
    p_date date, p_type text, p_set_times boolean, p_start_time time, p_end_time time,
    p_time_zone text, p_end_date date)
RETURNS TABLE (found boolean, id bigint, title text, description text, date date,
               start_time time, end_time time, time_zone text, end_date date,
               created_at timestamp, updated_at timestamp, version bigint, dispatching boolean)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    v_dispatching boolean;
BEGIN
    v_dispatching := EXISTS (
        SELECT FROM dispatcher
        WHERE holder IS NOT NULL AND held_until >= (now() AT TIME ZONE 'utc') FOR SHARE);
    RETURN QUERY
    WITH updated AS (
        UPDATE events SET title = COALESCE(p_title, title),
            description = CASE WHEN p_set_description THEN p_description ELSE description END,
            date = COALESCE(p_date, date),
            start_time = CASE WHEN p_set_times THEN p_start_time ELSE start_time END,
            end_time = CASE WHEN p_set_times THEN p_end_time ELSE end_time END,
            time_zone = CASE WHEN p_set_times THEN p_time_zone ELSE time_zone END,
            end_date = CASE WHEN p_set_times THEN p_end_date ELSE end_date END,
            version = version + 1,
            updated_at = (now() AT TIME ZONE 'utc')
        WHERE id = p_id AND (p_versions IS NULL OR version = ANY(p_versions))
        RETURNING id, title, description, date, start_time, end_time, time_zone, end_date,
                  created_at, updated_at, version
    ),
    outbox AS (
        INSERT INTO notifications (type, event_id, title, description, date, start_time,
                                   end_time, time_zone, end_date, event_created_at,
                                   event_updated_at)
        SELECT p_type, id, title, description, date, start_time, end_time, time_zone,
               end_date, created_at, updated_at
        FROM updated
    )
    SELECT updated.id IS NOT NULL OR EXISTS (SELECT FROM events WHERE id = p_id) AS found,
           updated.id, updated.title, updated.description, updated.date, updated.start_time,
           updated.end_time, updated.time_zone, updated.end_date, updated.created_at,
           updated.updated_at, updated.version, v_dispatching
    FROM (VALUES (1)) AS one
    LEFT JOIN updated ON true;
END
$$;

-- Deletes event p_id if its version is one of p_versions (NULL: any), as in
-- sql/009_write_functions.sql. `found` false: no such event; `deleted` false beside it:
-- p_versions named another version.
CREATE OR REPLACE FUNCTION delete_event(p_id bigint, p_versions bigint[], p_type text)
RETURNS TABLE (found boolean, deleted boolean, dispatching boolean)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    v_dispatching boolean;
BEGIN
    v_dispatching := EXISTS (
        SELECT FROM dispatcher
        WHERE holder IS NOT NULL AND held_until >= (now() AT TIME ZONE 'utc') FOR SHARE);
    RETURN QUERY
    WITH deleted AS (
        DELETE FROM events
        WHERE id = p_id AND (p_versions IS NULL OR version = ANY(p_versions))
        RETURNING id, title, description, date, start_time, end_time, time_zone, end_date,
                  created_at, updated_at
    ),
    outbox AS (
        INSERT INTO notifications (type, event_id, title, description, date, start_time,
                                   end_time, time_zone, end_date, event_created_at,
                                   event_updated_at)
        SELECT p_type, id, title, description, date, start_time, end_time, time_zone,
               end_date, created_at, updated_at
        FROM deleted
    )
    SELECT deleted.id IS NOT NULL OR EXISTS (SELECT FROM events WHERE id = p_id) AS found,
           deleted.id IS NOT NULL AS deleted, v_dispatching
    FROM (VALUES (1)) AS one
    LEFT JOIN deleted ON true;
END
$$;
