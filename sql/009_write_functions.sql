-- event-fn's three writes (create, update, delete) as PL/pgSQL functions, each one statement,
-- called as `SELECT * FROM <function>($1, ...)` from event-fn/src/store.rs.
--
-- Why functions: Spin prepares every statement it runs (a Parse per query, no statement cache
-- across requests), so a statement is parsed, analysed and planned on every request. For these
-- data-modifying statements (a lease lock, an outbox insert, an idempotency claim) that was most
-- of PostgreSQL's time: pgbench, one client, prepared per execution: the create statement
-- 0.53 ms against 0.16 ms for a plain insert; as a function 0.26 ms. PL/pgSQL keeps a statement's
-- plan for the session, and Spin's pool keeps sessions (its clean-up between requests,
-- deadpool's RecyclingMethod::Clean, discards neither prepared statements nor plans), so the
-- statement is planned once per pooled connection and only the one-line call is prepared.
--
-- What each does is unchanged from the statements they replace, and the same rules hold:
-- - Every function returns exactly one row (Spin 4.0.0-4.0.2 never returns from a query that
--   returns none): "nothing" is a row of NULLs.
-- - The lease: each write reads the dispatcher lease (the `dispatching` column); the row is
--   locked FOR SHARE while the lease is live, so the write holds a share lock until it commits.
--   notify-fn's release takes FOR UPDATE and so waits for every such write; a write that comes
--   while a release holds it waits and, being a locking read in READ COMMITTED, re-checks the
--   row's newest version: it then finds the lease released and hands off. The lease is joined
--   first (outermost), so a write holds the lock from before it touches any event row.
-- - SECURITY INVOKER (the default): a function runs with event_fn's privileges, nothing more.
-- Changing one of them is a new migration, applied before the event-fn that needs it is
-- deployed, as for any schema change: CREATE OR REPLACE FUNCTION if its parameters and result
-- columns stay the same; otherwise DROP FUNCTION and CREATE FUNCTION, then the REVOKE and GRANT
-- below again (CREATE OR REPLACE with other parameters would add a second function of the
-- same name, executable by every role, and make the calls ambiguous).
--
-- Parameters are named p_<what>: PL/pgSQL would otherwise confuse them with columns of the same
-- name; the result columns are OUT variables with column names, hence `use_column`.

-- A new event, its notification in the outbox, and with an idempotency key the key's claim and
-- the replay look-up, so that concurrent retries create one event. p_key NULL: no key;
-- p_request: the request's fingerprint; p_type: the notification's type; the time fields each
-- NULL for none. The row: the new event (`first_request` NULL), or the key's first use; all NULL
-- when a concurrent first use of the key is not visible yet (the caller calls again).
CREATE FUNCTION create_event(
    p_title text, p_description text, p_date date, p_key text, p_request text, p_type text,
    p_start_time time, p_end_time time, p_time_zone text, p_end_date date)
RETURNS TABLE (id bigint, created_at timestamp, first_request text, dispatching boolean)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH lease AS (
        SELECT true AS held FROM dispatcher
        WHERE holder IS NOT NULL AND held_until >= (now() AT TIME ZONE 'utc')
        FOR SHARE
    ),
    fresh AS (
        SELECT nextval(pg_get_serial_sequence('events', 'id')) AS id,
               (now() AT TIME ZONE 'utc') AS at
    ),
    claim AS (
        INSERT INTO idempotency_keys (key, request, event_id, created_at)
        SELECT p_key, p_request, fresh.id, fresh.at FROM fresh WHERE p_key IS NOT NULL
        ON CONFLICT (key) DO UPDATE
            SET request = EXCLUDED.request, event_id = EXCLUDED.event_id, created_at = EXCLUDED.created_at
            WHERE idempotency_keys.created_at < EXCLUDED.created_at - interval '24 hours'
        RETURNING key
    ),
    inserted AS (
        INSERT INTO events (id, title, description, date, start_time, end_time, time_zone,
                            end_date, created_at, updated_at)
        OVERRIDING SYSTEM VALUE
        SELECT fresh.id, p_title, p_description, p_date, p_start_time, p_end_time, p_time_zone,
               p_end_date, fresh.at, fresh.at
        FROM fresh
        WHERE p_key IS NULL OR EXISTS (SELECT 1 FROM claim)
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
    ),
    outcome AS (
        SELECT id, created_at, NULL::text AS first_request FROM inserted
        UNION ALL
        SELECT event_id, created_at, request FROM idempotency_keys
        WHERE key = p_key AND NOT EXISTS (SELECT 1 FROM claim)
    )
    SELECT outcome.id, outcome.created_at, outcome.first_request,
           lease.held IS NOT NULL AS dispatching
    FROM (VALUES (1)) AS one
    LEFT JOIN lease ON true
    LEFT JOIN outcome ON true;
END
$$;

-- Merges into event p_id, if its version is one of p_versions (NULL: any): p_title (NULL:
-- keep), p_description if p_set_description, p_date (NULL: keep), and the time fields if
-- p_set_times; its notification of type p_type in the outbox. A merge in the database, so a
-- patch of the title or the description needs no prior read; a replacement is the update that
-- sets every field. `found` false: no such event; `id` NULL beside it: p_versions named another
-- version.
CREATE FUNCTION update_event(
    p_id bigint, p_versions bigint[], p_title text, p_set_description boolean, p_description text,
    p_date date, p_type text, p_set_times boolean, p_start_time time, p_end_time time,
    p_time_zone text, p_end_date date)
RETURNS TABLE (found boolean, id bigint, title text, description text, date date,
               start_time time, end_time time, time_zone text, end_date date,
               created_at timestamp, updated_at timestamp, version bigint, dispatching boolean)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH lease AS (
        SELECT true AS held FROM dispatcher
        WHERE holder IS NOT NULL AND held_until >= (now() AT TIME ZONE 'utc')
        FOR SHARE
    ),
    target AS (SELECT id FROM events WHERE id = p_id),
    updated AS (
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
    SELECT EXISTS (SELECT 1 FROM target) AS found, updated.id, updated.title,
           updated.description, updated.date, updated.start_time, updated.end_time,
           updated.time_zone, updated.end_date, updated.created_at, updated.updated_at,
           updated.version, lease.held IS NOT NULL AS dispatching
    FROM (VALUES (1)) AS one
    LEFT JOIN lease ON true
    LEFT JOIN updated ON true;
END
$$;

-- Deletes event p_id if its version is one of p_versions (NULL: any), with its notification of
-- type p_type in the outbox. `found` false: no such event; `deleted` false beside it:
-- p_versions named another version.
CREATE FUNCTION delete_event(p_id bigint, p_versions bigint[], p_type text)
RETURNS TABLE (found boolean, deleted boolean, dispatching boolean)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH lease AS (
        SELECT true AS held FROM dispatcher
        WHERE holder IS NOT NULL AND held_until >= (now() AT TIME ZONE 'utc')
        FOR SHARE
    ),
    target AS (SELECT id FROM events WHERE id = p_id),
    deleted AS (
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
    SELECT EXISTS (SELECT 1 FROM target) AS found, EXISTS (SELECT 1 FROM deleted) AS deleted,
           lease.held IS NOT NULL AS dispatching
    FROM (VALUES (1)) AS one
    LEFT JOIN lease ON true;
END
$$;

-- Functions are executable by every role unless revoked: only event-fn writes events.
REVOKE EXECUTE ON FUNCTION create_event, update_event, delete_event FROM PUBLIC;
GRANT EXECUTE ON FUNCTION create_event, update_event, delete_event TO event_fn;
