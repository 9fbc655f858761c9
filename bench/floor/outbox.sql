-- The floor's writes with their notification rows (`bench/run --floor outbox`): each function
-- changes the event and inserts the change's notification into the app's outbox
-- (`notifications`, the columns the app's write functions copy in
-- sql/011_write_functions_lease_first.sql) in one transaction, and nothing more: no lease, no
-- idempotency key, no version check. PL/pgSQL, like the app's write functions, so PostgreSQL
-- plans their statements once per connection instead of on every request (one statement of CTEs
-- prepared per request measured 7,900-8,200 creates/s against the app's function's
-- 10,300-10,600: bench/README.md, "What a notification costs a write"): the cheaper of the two
-- ways measured to commit the same rows. bench/run applies this file to the floor's database (as the superuser)
-- before it starts that floor; the app's database never has these functions. Each returns one
-- row (NULLs for a missing event), as every statement here does (Spin 4.0.0-4.0.2 never answer
-- a query that returns none).

CREATE OR REPLACE FUNCTION floor_create_event(p_title text, p_description text, p_date date)
RETURNS TABLE (id bigint, title text, description text, date date, created_at timestamp,
               updated_at timestamp)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH inserted AS (
        INSERT INTO events (title, description, date) VALUES (p_title, p_description, p_date)
        RETURNING id, title, description, date, start_time, end_time, time_zone, end_date,
                  created_at, updated_at
    ),
    outbox AS (
        INSERT INTO notifications (type, event_id, title, description, date, start_time,
                                   end_time, time_zone, end_date, event_created_at,
                                   event_updated_at)
        SELECT 'event.created', id, title, description, date, start_time, end_time, time_zone,
               end_date, created_at, updated_at
        FROM inserted
    )
    SELECT i.id, i.title, i.description, i.date, i.created_at, i.updated_at FROM inserted i;
END
$$;

-- Sets every field of event p_id.
CREATE OR REPLACE FUNCTION floor_replace_event(
    p_id bigint, p_title text, p_description text, p_date date)
RETURNS TABLE (id bigint, title text, description text, date date, created_at timestamp,
               updated_at timestamp)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH replaced AS (
        UPDATE events
        SET title = p_title, description = p_description, date = p_date,
            start_time = NULL, end_time = NULL, time_zone = NULL, end_date = NULL,
            updated_at = (now() AT TIME ZONE 'utc'), version = version + 1
        WHERE id = p_id
        RETURNING id, title, description, date, start_time, end_time, time_zone, end_date,
                  created_at, updated_at
    ),
    outbox AS (
        INSERT INTO notifications (type, event_id, title, description, date, start_time,
                                   end_time, time_zone, end_date, event_created_at,
                                   event_updated_at)
        SELECT 'event.updated', id, title, description, date, start_time, end_time, time_zone,
               end_date, created_at, updated_at
        FROM replaced
    )
    SELECT r.id, r.title, r.description, r.date, r.created_at, r.updated_at
    FROM (VALUES (1)) AS anchor (one)
    LEFT JOIN replaced r ON true;
END
$$;

-- Sets the title and the date of event p_id where given (NULL: unchanged).
CREATE OR REPLACE FUNCTION floor_patch_event(p_id bigint, p_title text, p_date date)
RETURNS TABLE (id bigint, title text, description text, date date, created_at timestamp,
               updated_at timestamp)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH patched AS (
        UPDATE events
        SET title = COALESCE(p_title, title), date = COALESCE(p_date, date),
            updated_at = (now() AT TIME ZONE 'utc'), version = version + 1
        WHERE id = p_id
        RETURNING id, title, description, date, start_time, end_time, time_zone, end_date,
                  created_at, updated_at
    ),
    outbox AS (
        INSERT INTO notifications (type, event_id, title, description, date, start_time,
                                   end_time, time_zone, end_date, event_created_at,
                                   event_updated_at)
        SELECT 'event.updated', id, title, description, date, start_time, end_time, time_zone,
               end_date, created_at, updated_at
        FROM patched
    )
    SELECT p.id, p.title, p.description, p.date, p.created_at, p.updated_at
    FROM (VALUES (1)) AS anchor (one)
    LEFT JOIN patched p ON true;
END
$$;

-- Deletes event p_id; `id` NULL: there was none.
CREATE OR REPLACE FUNCTION floor_delete_event(p_id bigint)
RETURNS TABLE (id bigint)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH deleted AS (
        DELETE FROM events WHERE id = p_id
        RETURNING id, title, description, date, start_time, end_time, time_zone, end_date,
                  created_at, updated_at
    ),
    outbox AS (
        INSERT INTO notifications (type, event_id, title, description, date, start_time,
                                   end_time, time_zone, end_date, event_created_at,
                                   event_updated_at)
        SELECT 'event.deleted', id, title, description, date, start_time, end_time, time_zone,
               end_date, created_at, updated_at
        FROM deleted
    )
    SELECT d.id FROM (VALUES (1)) AS anchor (one) LEFT JOIN deleted d ON true;
END
$$;

-- The floor connects as the app's event-fn role (bench/driver/run.py, event_fn_url).
REVOKE EXECUTE ON FUNCTION floor_create_event, floor_replace_event, floor_patch_event,
    floor_delete_event FROM PUBLIC;
GRANT EXECUTE ON FUNCTION floor_create_event, floor_replace_event, floor_patch_event,
    floor_delete_event TO event_fn;
