-- Erases the content that notify-fn's retention left behind until 2026-12-01: it could delete a
-- delivered deletion (`event.deleted`) while another notification of its event was still
-- pending, and the erasure finds a deleted event by its deletion, so that event's other
-- notifications kept its title and description for good. Such an event is one that no longer
-- exists and has no deletion left; its notifications are erased here when none of them is
-- pending (a pending one is still to be sent with its content; it keeps it, as the event has no
-- deletion left to be found by).
--
-- The table is locked against writes first (SHARE ROW EXCLUSIVE: reads go on; the app's writes
-- wait for this transaction, a few seconds on a large table), so the update's snapshot is the
-- table's state to the end: a redelivery cannot make one of these notifications pending between
-- the update's look at its event and its erasure.
--
-- Deploy notify-fn right after: the previous one's retention can still leave such content until
-- then, which this migration, run once, does not see.
LOCK TABLE notifications IN SHARE ROW EXCLUSIVE MODE;

UPDATE notifications n SET title = NULL, description = NULL
WHERE n.title IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM events e WHERE e.id = n.event_id)
  AND NOT EXISTS (
      SELECT 1 FROM notifications d WHERE d.event_id = n.event_id AND d.type = 'event.deleted'
  )
  AND NOT EXISTS (
      SELECT 1 FROM notifications p WHERE p.event_id = n.event_id AND p.status = 'pending'
  );
