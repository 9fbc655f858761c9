-- notify-fn's two statements of every delivery, the claim and the record of its attempt, as
-- PL/pgSQL functions called as `SELECT * FROM <function>($1, ...)` from notify-fn/src/store.rs,
-- for the reason sql/009_write_functions.sql gives for event-fn's writes: Spin prepares every
-- statement it runs, so a statement of CTEs is parsed, analysed and planned on every call, and
-- PL/pgSQL keeps a statement's plan for the session (Spin's pool keeps sessions, and a dispatch
-- keeps its connection for the whole dispatch).
--
-- Why: under POST load (bench/run --scenarios post, 32 connections, pg_stat_statements with
-- track_planning, 2026-12-02) planning was 238 µs of the record's 544 µs per call and 558 µs of
-- the claim's 828: about half of the time of a delivery's two statements (bench/README.md, "A
-- delivery's statements planned once per connection").
--
-- What each does is unchanged from the statements they replace, and the rules of
-- sql/009_write_functions.sql hold: every function returns at least one row (Spin 4.0.0-4.0.2
-- never returns from a query that returns none): "nothing" is a row of NULLs; SECURITY INVOKER
-- (the default): a function runs with notify_fn's privileges; parameters are named p_<what> and
-- the result columns are OUT variables with column names, hence `use_column`. Changing one is a
-- new migration applied before the notify-fn that needs it, as sql/009_write_functions.sql says.
--
-- `counted` (in both) is notify-fn's `count_changes!` (notify-fn/src/store.rs): each
-- notification's counters move by increments on its row (sql/005_delivery.sql says why).

-- Claims up to p_limit due deliveries for one attempt each, leased for p_lease seconds, at most
-- p_concurrency per subscription in flight (1 while its last attempt failed); p_schedule is the
-- retry schedule in milliseconds.
--
-- `room`: each enabled subscription's free slots, less its deliveries leased now. `waiting`: its
-- first due deliveries, numbered (`turn`), up to its free slots. `due`: the first p_limit by
-- turn, then age (round-robin across subscriptions), locked and re-checked as due (`SKIP
-- LOCKED`: another dispatcher's claim in progress is passed over). `claimed`: each gets a fresh
-- token and a lease, the attempt is counted and the retry it would need scheduled now (±20%
-- jitter, so receivers that failed together are not retried together); a delivery whose
-- attempts are all made (its last one cut short: the dispatcher stopped) fails instead. Each
-- attempt goes into the log at once. The rows: each claimed delivery with its subscription and
-- notification (one row of NULLs: none).
CREATE FUNCTION claim_due(p_limit int8, p_lease float8, p_concurrency int8, p_schedule int8[])
RETURNS TABLE (
    delivery_id bigint, claim bigint, failures integer, url text, secret text,
    previous_secret text, id bigint, type text, status text, created_at timestamp,
    event_id bigint, title text, description text, date date, start_time time, end_time time,
    time_zone text, end_date date, event_created_at timestamp, event_updated_at timestamp)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH room AS MATERIALIZED (
        SELECT s.id, CASE WHEN s.failing_since IS NULL THEN p_concurrency ELSE 1 END - (
            SELECT count(*) FROM deliveries f
            WHERE f.subscription_id = s.id AND f.status = 'pending'
              AND f.leased_until >= (now() AT TIME ZONE 'utc')
        ) AS free
        FROM subscriptions s WHERE s.disabled_at IS NULL
    ),
    waiting AS (
        SELECT d.id, d.next_attempt_at, d.turn
        FROM room
        CROSS JOIN LATERAL (
            SELECT first.id, first.next_attempt_at,
                   row_number() OVER (ORDER BY first.next_attempt_at) AS turn
            FROM (
                SELECT w.id, w.next_attempt_at FROM deliveries w
                WHERE w.subscription_id = room.id AND w.status = 'pending'
                  AND w.next_attempt_at <= (now() AT TIME ZONE 'utc')
                  AND (w.leased_until IS NULL OR w.leased_until < (now() AT TIME ZONE 'utc'))
                ORDER BY w.next_attempt_at
                LIMIT 64
            ) AS first
        ) AS d
        WHERE d.turn <= room.free
    ),
    due AS (
        SELECT d.id FROM waiting w JOIN deliveries d ON d.id = w.id
        WHERE d.status = 'pending' AND d.next_attempt_at <= (now() AT TIME ZONE 'utc')
          AND (d.leased_until IS NULL OR d.leased_until < (now() AT TIME ZONE 'utc'))
        ORDER BY w.turn, w.next_attempt_at
        LIMIT p_limit
        FOR UPDATE OF d SKIP LOCKED
    ),
    claimed AS (
        UPDATE deliveries d SET
            claim = CASE WHEN d.failures > cardinality(p_schedule) THEN NULL
                ELSE nextval('delivery_claims') END,
            status = CASE WHEN d.failures > cardinality(p_schedule) THEN 'failed' ELSE 'pending' END,
            failures = d.failures + CASE WHEN d.failures > cardinality(p_schedule) THEN 0 ELSE 1 END,
            leased_until = CASE WHEN d.failures > cardinality(p_schedule) THEN NULL
                ELSE (now() AT TIME ZONE 'utc') + make_interval(secs => p_lease) END,
            next_attempt_at = (now() AT TIME ZONE 'utc') + make_interval(secs =>
                coalesce(p_schedule[d.failures + 1], 0) / 1000.0 * (0.8 + random() * 0.4))
        FROM due WHERE d.id = due.id
        RETURNING d.id, d.claim, d.status, d.failures, d.next_attempt_at, d.notification_id,
                  d.subscription_id
    ),
    changes AS (
        SELECT c.notification_id, -1 AS pending, 1 AS failed FROM claimed c
        WHERE c.status = 'failed'
    ),
    counted AS (
        UPDATE notifications n
        SET pending_deliveries = n.pending_deliveries + c.pending,
            failed_deliveries = n.failed_deliveries + c.failed
        FROM (SELECT ch.notification_id, sum(ch.pending)::int4 AS pending,
                     sum(ch.failed)::int4 AS failed
              FROM changes ch GROUP BY ch.notification_id) AS c
        WHERE n.id = c.notification_id
    ),
    attempted AS (
        INSERT INTO delivery_attempts (delivery_id, claim, error, next_attempt_at)
        SELECT c.id, c.claim,
               'no result recorded: the attempt is under way, or its dispatcher stopped during it',
               CASE WHEN c.failures <= cardinality(p_schedule) THEN c.next_attempt_at END
        FROM claimed c WHERE c.status = 'pending'
    )
    SELECT c.id, c.claim, c.failures - 1, s.url, s.secret,
           CASE WHEN s.previous_secret_expires_at > (now() AT TIME ZONE 'utc')
                THEN s.previous_secret END,
           n.id, n.type, n.status, n.created_at, n.event_id, n.title, n.description, n.date,
           n.start_time, n.end_time, n.time_zone, n.end_date, n.event_created_at,
           n.event_updated_at
    FROM (VALUES (1)) AS one
    LEFT JOIN claimed c ON c.status = 'pending'
    LEFT JOIN notifications n ON n.id = c.notification_id
    LEFT JOIN subscriptions s ON s.id = c.subscription_id;
END
$$;

-- Records an attempt's result (p_status the delivery's new status: pending for a retry,
-- delivered or failed; the status code, the error, the start of the response body, the
-- milliseconds it took) only while delivery p_delivery still carries the token p_claim (no later
-- claim took it; it was not deleted, disabled or redelivered meanwhile): completes the attempt
-- in the log, releases the delivery, moves the notification's counters and the subscription's
-- health. The row: the subscription's health after it (all NULL: nothing was recorded).
CREATE FUNCTION record_attempt(
    p_delivery bigint, p_claim bigint, p_status text, p_status_code integer, p_error text,
    p_response_body text, p_duration_ms integer)
RETURNS TABLE (subscription_id bigint, failing_for float8, failed_deliveries integer,
               disabled boolean)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH recorded AS (
        UPDATE deliveries d SET status = p_status, leased_until = NULL
        WHERE d.id = p_delivery AND d.claim = p_claim AND d.status = 'pending'
        RETURNING d.id, d.notification_id, d.subscription_id
    ),
    attempt AS (
        UPDATE delivery_attempts a SET status_code = p_status_code, error = p_error,
            response_body = p_response_body, duration_ms = p_duration_ms,
            next_attempt_at = CASE WHEN p_status = 'pending' THEN a.next_attempt_at END
        FROM recorded r WHERE a.delivery_id = r.id AND a.claim = p_claim
    ),
    changes AS (
        SELECT r.notification_id, -(p_status <> 'pending')::int4 AS pending,
               (p_status = 'failed')::int4 AS failed
        FROM recorded r
    ),
    counted AS (
        UPDATE notifications n
        SET pending_deliveries = n.pending_deliveries + c.pending,
            failed_deliveries = n.failed_deliveries + c.failed
        FROM (SELECT ch.notification_id, sum(ch.pending)::int4 AS pending,
                     sum(ch.failed)::int4 AS failed
              FROM changes ch GROUP BY ch.notification_id) AS c
        WHERE n.id = c.notification_id
    ),
    health AS (
        UPDATE subscriptions s SET
            last_success_at = CASE WHEN p_status = 'delivered' THEN (now() AT TIME ZONE 'utc')
                ELSE s.last_success_at END,
            failing_since = CASE WHEN p_status = 'delivered' THEN NULL
                ELSE coalesce(s.failing_since, (now() AT TIME ZONE 'utc')) END,
            failed_attempts = CASE WHEN p_status = 'delivered' THEN 0 ELSE s.failed_attempts + 1 END,
            failed_deliveries = CASE WHEN p_status = 'delivered' THEN 0
                WHEN p_status = 'failed' THEN s.failed_deliveries + 1 ELSE s.failed_deliveries END
        FROM recorded r WHERE s.id = r.subscription_id
        RETURNING s.id, s.failing_since, s.failed_deliveries, s.disabled_at IS NOT NULL AS disabled
    )
    SELECT health.id,
           extract(epoch FROM (now() AT TIME ZONE 'utc') - health.failing_since)::float8,
           health.failed_deliveries, health.disabled
    FROM (VALUES (1)) AS one LEFT JOIN health ON true;
END
$$;

-- Functions are executable by every role unless revoked: only notify-fn delivers.
REVOKE EXECUTE ON FUNCTION claim_due, record_attempt FROM PUBLIC;
GRANT EXECUTE ON FUNCTION claim_due, record_attempt TO notify_fn;
