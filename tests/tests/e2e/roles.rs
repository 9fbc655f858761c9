//! Database roles (issue 12): each function's role may do what its statements need and nothing
//! else, carries its timeouts, and is what the app connects as; `sql/bootstrap.sql` takes over
//! a database migrated before the roles existed. That the grants are sufficient is shown by the
//! rest of the suite, which runs the components as these roles (`e2e::app_options`).

use anyhow::{Result, bail, ensure};
use e2e::{App, Devhost, Postgres, Role, TestResult, app_options, postgres};

/// Runs `sql` as `role` and expects PostgreSQL to refuse it with a message containing `why`.
fn refused(role: Role, database: &str, sql: &str, why: &str) -> Result<()> {
    match postgres().psql_as(role, database, sql) {
        Ok(output) => bail!("{} may run {sql:?} (output {output:?})", role.name()),
        Err(error) => {
            let message = format!("{error:#}");
            ensure!(
                message.contains(why),
                "{} running {sql:?}: expected {why:?}, got {message}",
                role.name()
            );
            Ok(())
        }
    }
}

fn fresh_database() -> Result<String> {
    e2e::database_name(&postgres().create_database()?)
}

#[e2e::test]
fn event_fn_cannot_read_the_notification_side() -> TestResult {
    let database = fresh_database()?;
    // What it may do, so the refusals below are about privileges, not a failed connection.
    postgres().psql_as(Role::EventFn, &database, "SELECT count(*) FROM events")?;
    for (sql, table) in [
        // The webhook URLs and their signing secrets.
        ("SELECT url, secret FROM subscriptions", "subscriptions"),
        // The outbox is write-only for event-fn: it adds, never reads or changes.
        ("SELECT count(*) FROM notifications", "notifications"),
        ("UPDATE notifications SET title = 'changed'", "notifications"),
        ("DELETE FROM notifications", "notifications"),
        ("SELECT count(*) FROM deliveries", "deliveries"),
        ("SELECT count(*) FROM delivery_attempts", "delivery_attempts"),
        ("UPDATE dispatcher SET holder = 'event-fn'", "dispatcher"),
    ] {
        refused(
            Role::EventFn,
            &database,
            sql,
            &format!("permission denied for table {table}"),
        )?;
    }
    // notify-fn's claim and record (sql/013_dispatch_functions.sql) are executable by notify_fn
    // alone: with nothing due and no such claim, each answers its row of NULLs.
    for (function, arguments) in [
        ("claim_due", "10, 30, 4, '{1000}'"),
        ("record_attempt", "1, 1, 'delivered', 204, NULL, NULL, 3"),
    ] {
        let sql = format!("SELECT count(*) FROM {function}({arguments})");
        let rows = postgres().psql_as(Role::NotifyFn, &database, &sql)?;
        ensure!(rows == "1", "{function}: {rows} rows");
        refused(
            Role::EventFn,
            &database,
            &sql,
            &format!("permission denied for function {function}"),
        )?;
    }
    Ok(())
}

/// A write reads whether the dispatcher lease is held and share-locks its row while it is
/// (sql/008_write_lease.sql): event-fn may do that, and change nothing of the lease.
#[e2e::test]
fn event_fn_may_share_lock_the_lease_but_not_change_it() -> TestResult {
    let database = fresh_database()?;
    let held = postgres().psql_as(
        Role::EventFn,
        &database,
        "SELECT holder IS NULL AND held_until < now() FROM dispatcher FOR SHARE",
    )?;
    ensure!(held == "t", "{held}");
    for sql in [
        "SELECT requests FROM dispatcher",
        "UPDATE dispatcher SET held_until = 'infinity'",
        "UPDATE dispatcher SET requests = 0",
        "INSERT INTO dispatcher (singleton) VALUES (true)",
        "DELETE FROM dispatcher",
    ] {
        refused(
            Role::EventFn,
            &database,
            sql,
            "permission denied for table dispatcher",
        )?;
    }
    Ok(())
}

#[e2e::test]
fn notify_fn_cannot_read_or_change_events() -> TestResult {
    let database = fresh_database()?;
    postgres().psql_as(Role::NotifyFn, &database, "SELECT count(*) FROM subscriptions")?;
    for sql in [
        "SELECT title FROM events",
        "UPDATE events SET title = 'changed'",
        "INSERT INTO events (title, date) VALUES ('forged', '2024-01-01')",
        "DELETE FROM events",
    ] {
        refused(
            Role::NotifyFn,
            &database,
            sql,
            "permission denied for table events",
        )?;
    }
    refused(
        Role::NotifyFn,
        &database,
        "SELECT key, request FROM idempotency_keys",
        "permission denied for table idempotency_keys",
    )?;
    // event-fn's writes (sql/009_write_functions.sql) and its read of one event
    // (sql/014_read_function.sql) are executable by event_fn alone.
    for (function, arguments) in [
        (
            "create_event",
            "'forged', NULL, '2024-01-01', NULL, 'r', 'event.created', NULL, NULL, NULL, NULL",
        ),
        (
            "update_event",
            "1, NULL, 'changed', false, NULL, NULL, 'event.updated', false, NULL, NULL, NULL, NULL",
        ),
        ("delete_event", "1, NULL, 'event.deleted'"),
        ("get_event", "1"),
    ] {
        refused(
            Role::NotifyFn,
            &database,
            &format!("SELECT * FROM {function}({arguments})"),
            &format!("permission denied for function {function}"),
        )?;
    }
    Ok(())
}

/// What would turn a flaw in a function's SQL into control of the database or its host.
#[e2e::test]
fn neither_role_runs_programs_reads_files_or_creates_roles_or_tables() -> TestResult {
    let database = fresh_database()?;
    for role in [Role::EventFn, Role::NotifyFn] {
        for (sql, why) in [
            (
                "COPY (SELECT 1) TO PROGRAM 'true'",
                "pg_execute_server_program role to COPY to or from an external program",
            ),
            (
                "COPY (SELECT 1) TO '/tmp/e2e-roles-copy'",
                "pg_write_server_files role to COPY to a file",
            ),
            (
                "SELECT pg_read_file('PG_VERSION')",
                "permission denied for function pg_read_file",
            ),
            ("CREATE ROLE e2e_intruder", "permission denied to create role"),
            (
                "CREATE TABLE e2e_intruder (x int)",
                "permission denied for schema public",
            ),
        ] {
            refused(role, &database, sql, why)?;
        }
    }
    Ok(())
}

/// The timeouts `sql/004_roles.sql` sets on each role hold in any new session of it, which is
/// how the components' pooled connections start.
#[e2e::test]
fn role_settings_are_in_effect_for_each_role() -> TestResult {
    let database = fresh_database()?;
    for role in [Role::EventFn, Role::NotifyFn] {
        let settings = postgres().psql_as(
            role,
            &database,
            "SELECT current_setting('statement_timeout') || ' ' \
             || current_setting('idle_in_transaction_session_timeout')",
        )?;
        ensure!(settings == "10s 5s", "{}: {settings}", role.name());
    }
    Ok(())
}

/// The app's sessions are its functions' roles, one each, never the superuser or the
/// migration role.
#[e2e::test]
fn each_function_connects_as_its_own_role() -> TestResult {
    let app = App::start()?;
    app.create("party", "2024-11-15")?;
    let subscriptions = app.get("/subscriptions")?;
    ensure!(subscriptions.status == 200, "{}", subscriptions.body);
    // Both pools keep their connections open between requests.
    let users = app.sql(&format!(
        "SELECT string_agg(DISTINCT usename, ' ' ORDER BY usename) FROM pg_stat_activity \
         WHERE datname = '{}' AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
        app.database
    ))?;
    ensure!(users == "event_fn notify_fn", "sessions of the app: {users:?}");
    Ok(())
}

/// The migrations a database could hold before the roles existed: those main had before
/// `sql/004_roles.sql` was merged (a later migration with a grant of its own is not one).
const BEFORE_ROLES: &[&str] = &["001_events.sql", "002_notifications.sql", "003_dispatcher.sql"];

/// A database migrated before the roles existed, on a cluster without them (its tables owned
/// by the superuser that ran the migrations then, no grant anywhere): the bootstrap gives the
/// tables to the migration role, the migrations then create the roles and grant them their
/// privileges on every table, and the app serves from it, each function as its role; a second
/// run changes nothing.
#[e2e::test]
fn bootstrap_takes_over_a_database_migrated_before_the_roles() -> TestResult {
    let cluster = Postgres::start_empty()?;
    let database = cluster.create_empty_database()?;
    let before_roles = tempfile::tempdir()?;
    let sql = e2e::workspace_root().join("sql");
    for name in BEFORE_ROLES {
        std::fs::copy(sql.join(name), before_roles.path().join(name))?;
    }
    cluster.migrate_from(before_roles.path(), Role::Superuser, &database)?;
    cluster.psql(
        &database,
        "INSERT INTO events (title, date) VALUES ('kept', '2024-11-15')",
    )?;

    cluster.bootstrap(&database)?;
    cluster.migrate(&database)?;
    let owners = cluster.psql(
        &database,
        "SELECT string_agg(DISTINCT tableowner, ' ') FROM pg_tables WHERE schemaname = 'public'",
    )?;
    ensure!(owners == Role::Migrator.name(), "table owners: {owners}");

    let app = App {
        devhost: Devhost::start(app_options(&cluster.url(&database), cluster.port()))?,
        database: database.clone(),
    };
    let events = app.get("/events")?;
    ensure!(
        events.status == 200 && events.body.contains("kept"),
        "{}",
        events.body
    );
    app.create("after", "2024-11-16")?;
    for (path, body) in [
        ("/subscriptions", r#"{"url": "http://127.0.0.1:9/hook"}"#),
        ("/feeds", "{}"),
    ] {
        let created = app.send("POST", path, &[("content-type", "application/json")], Some(body))?;
        ensure!(
            created.status == 201,
            "POST {path}: {} {}",
            created.status,
            created.body
        );
    }

    cluster.bootstrap(&database)?;
    let again = cluster.migrate(&database)?;
    ensure!(again.contains("0 applied"), "{again}");
    Ok(())
}
