-- event-fn reads the dispatcher lease in each write's statement and, while a dispatcher holds
-- it, locks the row FOR SHARE until the write commits: the write then skips its hand-off to
-- notify-fn, and the holder's release (FOR UPDATE, in a transaction) waits for those writes and
-- sees their notifications before it gives the lease up (notify-fn/src/store.rs,
-- release_dispatch). So event_fn may read whether the lease is held (holder, held_until; not the
-- request count). PostgreSQL lets a role lock a row (FOR SHARE) only with UPDATE privilege on at
-- least one of its columns: the narrowest is `singleton`, whose only allowed value is the one it
-- has (PRIMARY KEY, CHECK (singleton)), so the grant lets event_fn change nothing of the lease.
GRANT SELECT (holder, held_until), UPDATE (singleton) ON dispatcher TO event_fn;
