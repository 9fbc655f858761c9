-- The delivery engine of issue 11: subscriptions that see only what happens after they exist,
-- claims with a fencing token that count the attempt when it starts, per-subscription
-- concurrency, endpoint health and disabling, secret rotation, response bodies in the attempt
-- log, and notification statuses that concurrent writers cannot get wrong.

-- A subscription receives the notifications of changes committed after it was created,
-- whatever the backlog: fan-out delivers notification n to subscription s only if n's
-- transaction was not yet committed in the snapshot taken when s was created. Neither column
-- is ever read by a component (Spin cannot decode these types). Subscriptions that already
-- exist get a snapshot in which nothing is committed: every notification not yet fanned out
-- is still theirs, as before this migration.
ALTER TABLE notifications ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id();
ALTER TABLE subscriptions ADD COLUMN snapshot pg_snapshot NOT NULL DEFAULT '1:1:';
ALTER TABLE subscriptions ALTER COLUMN snapshot SET DEFAULT pg_current_snapshot();

-- Endpoint health: when the last attempt succeeded, since when every attempt has failed (null
-- while the last one succeeded), and the failed attempts and deliveries since the last
-- success. A subscription that has failed for too long is disabled until enabled again.
ALTER TABLE subscriptions
    ADD COLUMN last_success_at timestamp,
    ADD COLUMN failing_since timestamp,
    ADD COLUMN failed_attempts integer NOT NULL DEFAULT 0,
    ADD COLUMN failed_deliveries integer NOT NULL DEFAULT 0,
    ADD COLUMN disabled_at timestamp,
    ADD COLUMN disabled_reason text,
    -- After a rotation, the secret it replaced also signs every delivery until then.
    ADD COLUMN previous_secret text,
    ADD COLUMN previous_secret_expires_at timestamp;

-- Each claim of a delivery draws a fresh token; an attempt's result is recorded only while the
-- delivery still carries the token of the claim that made it, so a dispatcher whose lease
-- expired (and whose delivery was claimed again) can never overwrite a newer result.
CREATE SEQUENCE delivery_claims;
ALTER TABLE deliveries ADD COLUMN claim bigint;
COMMENT ON COLUMN deliveries.failures IS
    'Attempts made since the delivery (re)started, each counted when claimed: the position in the retry schedule.';

-- The claim walks each subscription's due deliveries in order, and counts each subscription's
-- attempts in flight; deleting a subscription finds its deliveries.
DROP INDEX deliveries_due;
CREATE INDEX deliveries_due ON deliveries (subscription_id, next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_in_flight ON deliveries (subscription_id)
    WHERE status = 'pending' AND leased_until IS NOT NULL;
CREATE INDEX deliveries_subscription ON deliveries (subscription_id);

-- An attempt is written when it is claimed (so one cut short by a crash is still in the log)
-- and completed by its claim's result: the first 4 KiB of the response body and how long it
-- took.
ALTER TABLE delivery_attempts
    ADD COLUMN claim bigint,
    ADD COLUMN response_body text,
    ADD COLUMN duration_ms integer;

-- A notification's status follows from counters of its deliveries, each changed by an
-- increment on the notification's own row: writers that change two deliveries of one
-- notification at once (two dispatchers, a subscription deleted mid-round) queue on that row
-- and each adds to what the other wrote, where a status recomputed from the deliveries could
-- be computed by both from a stale view. Pending until fanned out and while a delivery is
-- pending, then failed if one failed, else delivered.
ALTER TABLE notifications DROP COLUMN status;
ALTER TABLE notifications
    ADD COLUMN pending_deliveries integer NOT NULL DEFAULT 0 CHECK (pending_deliveries >= 0),
    ADD COLUMN failed_deliveries integer NOT NULL DEFAULT 0 CHECK (failed_deliveries >= 0);
UPDATE notifications n
SET pending_deliveries = counted.pending, failed_deliveries = counted.failed
FROM (
    SELECT notification_id,
           count(*) FILTER (WHERE status = 'pending') AS pending,
           count(*) FILTER (WHERE status = 'failed') AS failed
    FROM deliveries GROUP BY notification_id
) AS counted
WHERE counted.notification_id = n.id;
ALTER TABLE notifications ADD COLUMN status text NOT NULL GENERATED ALWAYS AS (
    CASE WHEN fanned_out_at IS NULL OR pending_deliveries > 0 THEN 'pending'
         WHEN failed_deliveries > 0 THEN 'failed'
         ELSE 'delivered' END
) STORED;
CREATE INDEX notifications_status ON notifications (status, id);

-- Retention: delivered notifications are deleted once older than `retention_days`, oldest
-- first; a deleted event's title and description are erased from its notifications once none
-- of them is pending (then title is null). The deletion notifications not yet erased are the
-- ones left to look at.
CREATE INDEX notifications_delivered ON notifications (created_at) WHERE status = 'delivered';
ALTER TABLE notifications ALTER COLUMN title DROP NOT NULL;
CREATE INDEX notifications_to_erase ON notifications (event_id)
    WHERE type = 'event.deleted' AND title IS NOT NULL;

-- The claims' token sequence is notify-fn's alone (sql/004_roles.sql runs before this); the
-- tables' new columns are covered by their table grants.
GRANT USAGE ON SEQUENCE delivery_claims TO notify_fn;
