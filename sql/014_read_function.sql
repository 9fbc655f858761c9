-- event-fn's read of one event (GET, HEAD and OPTIONS of /events/{id}; the read before a patch
-- that moves an event or changes nothing) as a PL/pgSQL function called as
-- `SELECT ... FROM get_event($1::int8)` from event-fn/src/store.rs, for the reason
-- sql/009_write_functions.sql gives for the writes: Spin prepares every statement it runs, so
-- the statement is parsed, analysed and planned on every request, while PL/pgSQL parses it once
-- per session (Spin's pool keeps sessions) and PostgreSQL's plan cache then keeps a generic plan
-- (the primary key's index; used after the first five calls, as observed).
--
-- Why: planning was about 61 µs of the statement's 81 µs per call in PostgreSQL under load
-- (bench/run --scenarios get_by_id,list_first,list_empty, 32 connections, pg_stat_statements
-- with track_planning, 2026-12-02), for the app and the floor alike. pgbench -M extended (a
-- Parse per execution, as Spin does), 8 clients, 10,000 events, three rounds alternated:
-- 25,600-26,900 reads/s as a statement, 33,800-35,600 as this function (bench/README.md, "A
-- read planned once per connection").
--
-- The rules of sql/009_write_functions.sql hold: it returns exactly one row (Spin 4.0.0-4.0.2
-- never returns from a query that returns none), all NULL when there is no such event;
-- SECURITY INVOKER; the parameter is named p_<what> and the result columns are OUT variables
-- with column names, hence `use_column`. Changing it is a new migration applied before the
-- event-fn that needs it.
CREATE FUNCTION get_event(p_id bigint)
RETURNS TABLE (id bigint, title text, description text, date date, start_time time,
               end_time time, time_zone text, end_date date, created_at timestamp,
               updated_at timestamp, version bigint)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT e.id, e.title, e.description, e.date, e.start_time, e.end_time, e.time_zone,
           e.end_date, e.created_at, e.updated_at, e.version
    FROM (VALUES (1)) AS one
    LEFT JOIN events e ON e.id = p_id;
END
$$;

-- Functions are executable by every role unless revoked: only event-fn reads events.
REVOKE EXECUTE ON FUNCTION get_event FROM PUBLIC;
GRANT EXECUTE ON FUNCTION get_event TO event_fn;
