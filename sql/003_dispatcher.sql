-- At most one notify-fn instance dispatches at a time. A dispatch that finds the lease held
-- only counts its request and ends; the holder goes on until no request arrived during its last
-- pass. A burst of writes is then delivered in batches by one dispatcher, instead of one
-- dispatcher per write contending for the same outbox rows. Deliveries keep their own leases
-- (FOR UPDATE SKIP LOCKED), so an overlap after this lease expires still sends nothing twice.
CREATE TABLE dispatcher (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    -- The holding dispatch's random token; null when nobody dispatches.
    holder     text,
    -- A holder that disappears (its instance stopped) loses the lease then.
    held_until timestamp NOT NULL DEFAULT '-infinity',
    -- Dispatch requests so far: the holder compares it before and after a pass.
    requests   bigint NOT NULL DEFAULT 0
);

INSERT INTO dispatcher DEFAULT VALUES;
