-- The transactional outbox (written by event-fn in the same statement as each change) and
-- notify-fn's subscriptions, deliveries and delivery attempts.

CREATE TABLE notifications (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    type             text NOT NULL CHECK (type IN ('event.created', 'event.updated', 'event.deleted')),
    -- The event as it is after the change (its last state for a delete). No foreign key:
    -- a deleted event keeps its notifications.
    event_id         bigint NOT NULL,
    title            text NOT NULL,
    description      text,
    date             date NOT NULL,
    event_created_at timestamp NOT NULL,
    event_updated_at timestamp NOT NULL,
    created_at       timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
    -- pending until fanned out and every delivery is done; then delivered or failed.
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    -- When notify-fn logged it and created its deliveries (null: not yet).
    fanned_out_at    timestamp
);

CREATE INDEX notifications_to_fan_out ON notifications (id) WHERE fanned_out_at IS NULL;
CREATE INDEX notifications_event ON notifications (event_id, id);
CREATE INDEX notifications_status ON notifications (status, id);

CREATE TABLE subscriptions (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    url        text NOT NULL,
    -- The event types delivered; null for all.
    types      text[],
    -- whsec_<base64 key>: the Standard Webhooks signing secret.
    secret     text NOT NULL,
    created_at timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'utc')
);

CREATE TABLE deliveries (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    notification_id  bigint NOT NULL REFERENCES notifications ON DELETE CASCADE,
    subscription_id  bigint NOT NULL REFERENCES subscriptions ON DELETE CASCADE,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    -- Failed attempts since the delivery (re)started: the position in the retry schedule.
    failures         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
    -- A dispatcher holds the delivery until then: no other sends the same attempt.
    leased_until     timestamp,
    UNIQUE (notification_id, subscription_id)
);

CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';

CREATE TABLE delivery_attempts (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id     bigint NOT NULL REFERENCES deliveries ON DELETE CASCADE,
    attempted_at    timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
    status_code     integer,
    error           text,
    -- When the next attempt is due after this one (null: no more attempts).
    next_attempt_at timestamp
);

CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, id);
