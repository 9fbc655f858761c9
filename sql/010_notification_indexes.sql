-- Fewer index entries per notification (issue 14: what a notification costs after its
-- write). Every update of a notification that changes its status is a new row
-- version with an entry in each index whose key or predicate it touches; a notification nobody
-- takes is inserted, then fanned out (and, for a deletion whose event has nothing left to
-- send, erased in the same update: see notify-fn's FAN_OUT).
--
-- Applying it holds `notifications` against writes while the two indexes are built (seconds
-- for a few million notifications; retention keeps the table to `retention_days`). Until the
-- notify-fn that comes with it runs, the previous one's housekeeping finds deletions to erase
-- by a sequential scan (its query does not match the new predicate): deploy both together.

-- Statuses: only the API's status filter reads them by index. Most notifications are
-- delivered, and a filter on that walks the primary key; the few pending and failed ones are
-- indexed (a filter on either implies the predicate). A notification delivered at once is no
-- longer indexed again by its status.
DROP INDEX notifications_status;
CREATE INDEX notifications_unsettled ON notifications (status, id) WHERE status <> 'delivered';

-- Deletions left to erase by the housekeeping (ERASE_DELETED): the ones fan-out could not
-- erase, so a deletion is indexed here only once fanned out, and not at all when fan-out erased
-- it (a deletion not fanned out yet is pending: its event cannot be erased anyway).
DROP INDEX notifications_to_erase;
CREATE INDEX notifications_to_erase ON notifications (event_id)
    WHERE type = 'event.deleted' AND title IS NOT NULL AND fanned_out_at IS NOT NULL;
