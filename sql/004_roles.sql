-- Each function connects as a role of its own, with only the privileges its statements need
-- (README.md, "Database roles"), so a flaw in one function's SQL reaches neither the other's
-- data nor the database host: neither role is a superuser or may create roles or objects, read
-- or write files or run programs (COPY ... TO PROGRAM).
-- - event_fn: the events and their idempotency keys; it only adds to the outbox (notifications).
-- - notify_fn: the notification side; it cannot read events at all.
-- Run by the migration role (sql/bootstrap.sql), which owns every table. The roles get no
-- password here: passwords are deployment secrets, set by sql/migrate.sh from the environment.
-- A later migration that adds a table grants on it in the same file, to the role that needs it:
-- there are no default privileges, so a missing grant fails the end-to-end tests.

-- Roles belong to the cluster, and several databases of one cluster may be migrated (the tests
-- make one per test): an existing role is kept, and a role or setting is written only when
-- missing or different, so a repeated run writes no cluster-wide catalog row (runs for several
-- databases at once would collide there). A concurrent run may still create a role between the
-- check and the CREATE, hence the exception.
--
-- The settings: every statement of either function touches a few rows through an index and
-- takes milliseconds; the slowest legitimate one, a title search that matches nothing on a large
-- table, well under a second on the bench's 1,000,000 events. statement_timeout 10 s stops a
-- runaway statement (a flaw, a pathological search) before it has held its pooled connection and
-- locks for long, yet never a real request. No function opens a transaction of its own (each
-- statement is one), so a session idle inside one is a leak holding row locks:
-- idle_in_transaction_session_timeout 5 s ends it.
DO $$
DECLARE
    role text;
    setting text[];
BEGIN
    FOREACH role IN ARRAY ARRAY['event_fn', 'notify_fn'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I LOGIN', role);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;
            END;
        END IF;
        FOREACH setting SLICE 1 IN ARRAY
            ARRAY[['statement_timeout', '10s'], ['idle_in_transaction_session_timeout', '5s']]
        LOOP
            IF NOT EXISTS (SELECT 1 FROM pg_roles
                           WHERE rolname = role AND setting[1] || '=' || setting[2] = ANY (rolconfig)) THEN
                EXECUTE format('ALTER ROLE %I SET %I = %L', role, setting[1], setting[2]);
            END IF;
        END LOOP;
    END LOOP;
END $$;

GRANT USAGE ON SCHEMA public TO event_fn, notify_fn;

-- event-fn: CRUD on events, the idempotency keys of POST /events, and the outbox: it writes a
-- notification in the same statement as each change, and never reads one back.
GRANT SELECT, INSERT, UPDATE, DELETE ON events, idempotency_keys TO event_fn;
GRANT INSERT ON notifications TO event_fn;
-- POST /events draws the new id itself (nextval), so that the idempotency key can name it.
DO $$
BEGIN
    EXECUTE format('GRANT USAGE ON SEQUENCE %s TO event_fn', pg_get_serial_sequence('events', 'id'));
END $$;

-- notify-fn: the outbox, subscriptions, deliveries, their attempts and the dispatcher lease.
GRANT SELECT, INSERT, UPDATE, DELETE
    ON notifications, subscriptions, deliveries, delivery_attempts, dispatcher TO notify_fn;
