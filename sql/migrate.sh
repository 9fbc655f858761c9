#!/bin/sh
# Applies the numbered migrations in this directory to the database at $DATABASE_URL, each once.
#
# Usage: DATABASE_URL=postgres://event_platform_migrator@... \
#        [EVENT_FN_DB_PASSWORD=...] [NOTIFY_FN_DB_PASSWORD=...] sh sql/migrate.sh [directory]
#
# Idempotent and safe to run concurrently: each migration runs in its own transaction under an
# advisory lock and is recorded in schema_migrations, so a run applies only what is missing.
# DATABASE_URL connects as the migration role that sql/bootstrap.sql makes (run that first, as a
# superuser). Then the passwords of the functions' roles (sql/004_roles.sql) are set from
# EVENT_FN_DB_PASSWORD and NOTIFY_FN_DB_PASSWORD when given, on every run: they are deployment
# secrets, never in a migration, and rotating one is a run with the new value. psql reads them from
# its environment (\getenv, psql 15 or later), so they never appear in a command line.
# POSIX sh and psql only, so the same script serves the local run, the tests and the Kubernetes
# migration Job (a stock postgres image).
set -eu

dir=${1:-$(dirname "$0")}
: "${DATABASE_URL:?set DATABASE_URL to the database to migrate}"

applied=0
for file in "$dir"/[0-9]*.sql; do
    [ -e "$file" ] || continue
    version=$(basename "$file" .sql)
    output=$(psql "$DATABASE_URL" --no-psqlrc --quiet --tuples-only --no-align \
        --set ON_ERROR_STOP=1 --set version="$version" --set file="$file" <<'SQL'
SET client_min_messages = warning;
BEGIN;
SELECT pg_advisory_xact_lock(727274);
CREATE TABLE IF NOT EXISTS schema_migrations (
    version text PRIMARY KEY,
    applied_at timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'utc')
);
SELECT NOT EXISTS (SELECT 1 FROM schema_migrations WHERE version = :'version') AS pending \gset
\if :pending
\i :file
INSERT INTO schema_migrations (version) VALUES (:'version');
SELECT 'applied';
\endif
COMMIT;
SQL
)
    case "$output" in
        *applied*) echo "migrated: $version"; applied=$((applied + 1)) ;;
    esac
done
echo "migrations: $applied applied, database up to date"

# set_password ROLE VARIABLE: ROLE's password is the value of the environment variable VARIABLE.
set_password() {
    psql "$DATABASE_URL" --no-psqlrc --quiet --set ON_ERROR_STOP=1 --set role="$1" --set variable="$2" <<'SQL'
\getenv password :variable
ALTER ROLE :"role" PASSWORD :'password';
SQL
    echo "password set: $1"
}
[ -z "${EVENT_FN_DB_PASSWORD:-}" ] || set_password event_fn EVENT_FN_DB_PASSWORD
[ -z "${NOTIFY_FN_DB_PASSWORD:-}" ] || set_password notify_fn NOTIFY_FN_DB_PASSWORD
