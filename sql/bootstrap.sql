-- The one step that needs PostgreSQL's superuser: makes the migration role
-- event_platform_migrator and gives it the database, so that sql/migrate.sh (run as that role)
-- can create the schema and the functions' roles (sql/004_roles.sql). Not a migration: run it
-- before sql/migrate.sh, connected to the app's database as a superuser. Idempotent: run it
-- again at will (scripts/run, the test harness and the Kubernetes migration Job do, every time).
--
--   MIGRATOR_DB_PASSWORD=... psql "postgres://postgres@host/events" -v ON_ERROR_STOP=1 -f sql/bootstrap.sql
--
-- MIGRATOR_DB_PASSWORD (optional) sets the role's password; it is read from the environment
-- (psql 15 or later), so it never appears in a command line or in this file.

\set QUIET on
SET client_min_messages = warning;
\getenv migrator_password MIGRATOR_DB_PASSWORD

BEGIN;

-- Roles belong to the cluster, not to a database: several databases of one cluster (the tests
-- make one per test) share it. Written only when missing or different, so a repeated run
-- writes no cluster-wide catalog row (runs for several databases at once would collide there);
-- a concurrent run may still create it between the check and the CREATE, hence the exception.
-- CREATEROLE: the migrations create and alter the functions' roles. Nothing more: no
-- superuser, no CREATEDB, no membership in the pg_* roles (files, programs).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'event_platform_migrator') THEN
        CREATE ROLE event_platform_migrator LOGIN CREATEROLE;
    ELSIF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'event_platform_migrator'
                      AND rolcanlogin AND rolcreaterole AND NOT rolcreatedb AND NOT rolsuper) THEN
        ALTER ROLE event_platform_migrator LOGIN CREATEROLE NOCREATEDB NOSUPERUSER;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END $$;

\if :{?migrator_password}
ALTER ROLE event_platform_migrator PASSWORD :'migrator_password';
\endif

-- The owner of the database (so it may install the trusted extension pg_trgm) and of its schema
-- public (so it alone decides who may create objects there: nobody else).
ALTER DATABASE :"DBNAME" OWNER TO event_platform_migrator;
ALTER SCHEMA public OWNER TO event_platform_migrator;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

-- A database migrated before the roles existed has its tables owned by whoever migrated it then
-- (the superuser): they pass to the migration role, their identity sequences and indexes with
-- them. Objects of extensions (pg_trgm's functions) stay as they are.
DO $$
DECLARE
    object regclass;
BEGIN
    FOR object IN
        SELECT c.oid::regclass FROM pg_class c
        WHERE c.relnamespace = 'public'::regnamespace
          AND c.relkind IN ('r', 'p', 'v', 'm')
          AND c.relowner <> 'event_platform_migrator'::regrole
          AND NOT EXISTS (SELECT 1 FROM pg_depend d
                          WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
    LOOP
        EXECUTE format('ALTER TABLE %s OWNER TO event_platform_migrator', object);
    END LOOP;
END $$;

COMMIT;
