//! devhost behaves like `spin up` for what the app uses, proven with the fixture component.

use anyhow::{Context, ensure};
use e2e::{Devhost, DevhostOptions, HttpResponse, StaticServer};
use serde_json::Value;

use crate::{NamedTest, TestResult, postgres};

const FIXTURE: &str = "devhost/fixture/spin.toml";

pub fn tests() -> Vec<NamedTest> {
    crate::named_tests![devhost:
        routes_and_spin_headers,
        health_and_unrouted_paths,
        variables_defaults_overrides_and_errors,
        required_variable_missing_fails_start,
        outbound_http_allowed_and_denied,
        postgres_allowed_and_denied,
        postgres_statements_answer_alike_every_time,
        postgres_session_state_never_survives_a_request,
        service_chaining,
        trap_gives_500_and_serving_continues,
        component_id_serves_a_subset,
        component_output_is_forwarded,
        start_up_errors_say_what_to_do,
        unprovided_imports_are_named,
    ]
}

fn fixture() -> DevhostOptions {
    let mut options = DevhostOptions::new(FIXTURE).variable("secret_word", "swordfish");
    // As Spin 3.6, whatever the environment says: the fixture runs statements without rows
    // (SET, BEGIN) through `query` on purpose.
    options
        .env
        .push(("DEVHOST_EMPTY_QUERY_TRAP".to_owned(), "0".to_owned()));
    options
}

fn headers_of(devhost: &Devhost, path: &str) -> anyhow::Result<Value> {
    let response = devhost.get(path)?;
    ensure!(response.status == 200, "{path}: {}", response.status);
    Ok(response.json()?["headers"].clone())
}

fn routes_and_spin_headers() -> TestResult {
    let devhost = Devhost::start(fixture())?;
    let port = devhost.base_url().rsplit(':').next().context("port")?.to_owned();

    // The exact route wins over the wildcard that also matches it.
    let exact = headers_of(&devhost, "/api/exact")?;
    assert_eq!(exact["spin-raw-component-route"], "/api/exact");
    assert_eq!(exact["spin-path-info"], "");
    // A trailing slash still matches the exact route.
    assert_eq!(
        headers_of(&devhost, "/api/exact/")?["spin-raw-component-route"],
        "/api/exact"
    );

    // The longer wildcard wins over the catch-all, and path info is what follows its prefix.
    let wild = headers_of(&devhost, "/api/anything/deep?x=1")?;
    assert_eq!(wild["spin-raw-component-route"], "/api/...");
    assert_eq!(wild["spin-matched-route"], "/api/...");
    assert_eq!(wild["spin-component-route"], "/api");
    assert_eq!(wild["spin-path-info"], "/anything/deep");
    assert_eq!(wild["spin-base-path"], "/");
    assert_eq!(
        wild["spin-full-url"],
        format!("http://127.0.0.1:{port}/api/anything/deep?x=1")
    );
    assert!(
        wild["spin-client-addr"]
            .as_str()
            .unwrap_or_default()
            .starts_with("127.0.0.1:")
    );
    assert_eq!(headers_of(&devhost, "/api")?["spin-path-info"], "");
    assert_eq!(headers_of(&devhost, "/api/")?["spin-path-info"], "/");

    // A parameter segment ranks between exact and wildcard, and is captured.
    let param = headers_of(&devhost, "/api/items/7")?;
    assert_eq!(param["spin-raw-component-route"], "/api/items/:id");
    assert_eq!(param["spin-path-match-id"], "7");
    assert_eq!(
        headers_of(&devhost, "/api/items/7/more")?["spin-raw-component-route"],
        "/api/..."
    );

    // Everything else falls to the catch-all.
    let other = headers_of(&devhost, "/elsewhere/x")?;
    assert_eq!(other["spin-raw-component-route"], "/...");
    assert_eq!(other["spin-component-route"], "");
    assert_eq!(other["spin-path-info"], "/elsewhere/x");

    // A client cannot forge the headers Spin sets.
    let forged = e2e::HttpResponse::send(
        devhost
            .request("GET", "/api/x")
            .header("spin-path-info", "/forged"),
    )?;
    assert_eq!(forged.json()?["headers"]["spin-path-info"], "/x");
    Ok(())
}

fn health_and_unrouted_paths() -> TestResult {
    // Without the catch-all component, unrouted paths are 404 with an empty body, as in Spin.
    let devhost = Devhost::start(fixture().component("api").component("private"))?;
    let health = devhost.get("/.well-known/spin/health")?;
    assert_eq!((health.status, health.body.as_str()), (200, "OK"));
    let health = e2e::HttpResponse::send(devhost.request("POST", "/.well-known/spin/health"))?;
    assert_eq!(health.status, 200);
    assert_eq!(devhost.get("/.well-known/spin/nothing")?.status, 404);
    let unrouted = devhost.get("/elsewhere")?;
    assert_eq!((unrouted.status, unrouted.body.as_str()), (404, ""));
    assert_eq!(devhost.get("/api/x")?.status, 200);
    Ok(())
}

fn variable(devhost: &Devhost, name: &str) -> anyhow::Result<Value> {
    devhost.get(&format!("/api/variable?name={name}"))?.json()
}

fn variables_defaults_overrides_and_errors() -> TestResult {
    let devhost = Devhost::start(fixture())?;
    // The component variable is a template over the application variable's default.
    assert_eq!(variable(&devhost, "greeting")?["value"], "hello, world");
    assert_eq!(variable(&devhost, "secret_word")?["value"], "swordfish");
    // An application variable the component does not map is undefined for it.
    let undefined = variable(&devhost, "pg_port")?["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        undefined.contains("Undefined") && undefined.contains(r#"no variable for \"api\".\"pg_port\""#),
        "{undefined}"
    );
    let invalid = variable(&devhost, "Bad")?["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        invalid.contains("InvalidName") && invalid.contains("invalid character"),
        "{invalid}"
    );
    drop(devhost);

    // SPIN_VARIABLE_<NAME> overrides the default.
    let devhost = Devhost::start(fixture().variable("greeting", "hi"))?;
    assert_eq!(variable(&devhost, "greeting")?["value"], "hi, world");
    Ok(())
}

fn required_variable_missing_fails_start() -> TestResult {
    let message = Devhost::start_failure(DevhostOptions::new(FIXTURE))?;
    assert!(
        message.contains("secret_word") && message.contains("SPIN_VARIABLE_SECRET_WORD"),
        "{message}"
    );
    Ok(())
}

fn outbound_http_allowed_and_denied() -> TestResult {
    let server = StaticServer::start(200, "hello from outside");
    let url = format!("http://127.0.0.1:{}/", server.port());

    // Denied: the default allow-list entry (a template) names another port.
    let devhost = Devhost::start(fixture())?;
    let denied = devhost.get(&format!("/api/http?url={url}"))?.json()?;
    assert!(
        denied["error"]
            .as_str()
            .unwrap_or_default()
            .contains("HttpRequestDenied"),
        "{denied}"
    );
    devhost.wait_for_output(|output| output.contains("disallowed destination"))?;
    drop(devhost);

    // Allowed once the template's variable names this server.
    let devhost =
        Devhost::start(fixture().variable("allowed_http", &format!("http://127.0.0.1:{}", server.port())))?;
    let allowed = devhost.get(&format!("/api/http?url={url}"))?.json()?;
    assert_eq!(allowed["status"], 200, "{allowed}");
    assert_eq!(allowed["body"], "hello from outside");
    Ok(())
}

fn postgres_allowed_and_denied() -> TestResult {
    let url = postgres().create_database()?;
    let encoded = url.replace('?', "%3F").replace('=', "%3D").replace('&', "%26");
    let port = postgres().port().to_string();

    let devhost = Devhost::start(fixture())?;
    let denied = devhost.get(&format!("/api/postgres?url={encoded}"))?.json()?;
    let expected = format!(r#"ConnectionFailed("address postgres://127.0.0.1:{port} is not permitted")"#);
    assert!(
        denied["error"].as_str().unwrap_or_default().contains(&expected),
        "{denied}"
    );
    drop(devhost);

    let devhost = Devhost::start(fixture().variable("pg_port", &port))?;
    let allowed = devhost.get(&format!("/api/postgres?url={encoded}"))?.json()?;
    assert_eq!(
        allowed["columns"],
        serde_json::json!([
            "one:DbDataType::Int32",
            "word:DbDataType::Str",
            "day:DbDataType::Date",
            "at:DbDataType::Datetime",
            "nothing:DbDataType::Str",
            "param:DbDataType::Int64"
        ]),
        "{allowed}"
    );
    assert_eq!(
        allowed["row"],
        serde_json::json!([
            "DbValue::Int32(1)",
            "DbValue::Str(\"text\")",
            "DbValue::Date((2024, 2, 29))",
            "DbValue::Datetime((2024, 2, 29, 12, 34, 56, 500000000))",
            "DbValue::DbNull",
            "DbValue::Int64(7)"
        ])
    );
    Ok(())
}

/// The fixture's `/api/sql`: `statements` run in order on one connection, each with `params`
/// (`int4:1`, `int8:1`, `str:x`, `null`); one result (`columns` and `rows`, or `error`) each.
fn run_sql(devhost: &Devhost, url: &str, statements: &[&str], params: &[&str]) -> anyhow::Result<Vec<Value>> {
    let mut query = vec![("url", url)];
    query.extend(statements.iter().map(|s| ("statement", *s)));
    query.extend(params.iter().map(|p| ("param", *p)));
    let response = HttpResponse::send(devhost.request("GET", "/api/sql").query(&query))?;
    ensure!(response.status == 200, "{}: {}", response.status, response.body);
    let results = response.json()?;
    let results = results.as_array().context("a result per statement")?;
    ensure!(results.len() == statements.len(), "{results:?}");
    Ok(results.clone())
}

/// devhost prepares a statement the first time, as Spin always does, and later sends it with
/// the parameter types PostgreSQL inferred then: values, columns and every conversion error
/// must be the same either way.
fn postgres_statements_answer_alike_every_time() -> TestResult {
    let url = postgres().create_database()?;
    let devhost = Devhost::start(fixture().variable("pg_port", &postgres().port().to_string()))?;
    let cases: [(&str, &[&str], &str); 6] = [
        (
            "SELECT $1::int8 + 1 AS next",
            &["int8:41"],
            r#"{"columns":["next"],"rows":[["DbValue::Int64(42)"]]}"#,
        ),
        (
            "SELECT $1 AS untyped",
            &["str:hi"],
            r#"{"columns":["untyped"],"rows":[["DbValue::Str(\"hi\")"]]}"#,
        ),
        (
            "SELECT $1::text IS NULL AS missing",
            &["null"],
            r#"{"columns":["missing"],"rows":[["DbValue::Boolean(true)"]]}"#,
        ),
        // No coercion: an int4 value for a parameter inferred as int8 is an error, as on Spin.
        (
            "SELECT $1::int8 AS wide",
            &["int4:7"],
            r#"WrongType { postgres: Int8, rust: \\\"i32\\\" }"#,
        ),
        (
            "SELECT $1::date AS day",
            &["str:2024-01-01"],
            r#"WrongType { postgres: Date, rust: \\\"alloc::string::String\\\" }"#,
        ),
        (
            "SELECT $1::text AS a, $2::text AS b",
            &["str:x"],
            "Parameters(1, 2)",
        ),
    ];
    for (statement, params, expected) in cases {
        let first = run_sql(&devhost, &url, &[statement], params)?.remove(0);
        let shown = first.to_string();
        ensure!(
            shown == expected || shown.contains(expected),
            "{statement}: {shown}"
        );
        for _ in 0..2 {
            let again = run_sql(&devhost, &url, &[statement], params)?.remove(0);
            ensure!(again == first, "{statement}: first {first}, then {again}");
        }
    }
    Ok(())
}

/// What a request leaves in its session (settings, temporary tables, advisory locks, an open
/// transaction) is gone for the next request on that connection, as with Spin's pool; what the
/// host itself keeps per connection (tokio-postgres's type look-ups) still works.
fn postgres_session_state_never_survives_a_request() -> TestResult {
    let url = postgres().create_database()?;
    let database = crate::events::database_name(&url)?;
    let devhost = Devhost::start(fixture().variable("pg_port", &postgres().port().to_string()))?;
    // Types PostgreSQL does not build in are looked up by a statement tokio-postgres prepares
    // once per connection: reading one in each request needs that statement to survive.
    postgres().psql(
        &database,
        "CREATE TYPE mood_a AS ENUM ('a'); CREATE TYPE mood_b AS ENUM ('b')",
    )?;

    let clean = reused_session(
        &devhost,
        &url,
        &[
            "SET application_name = 'leaked'",
            "CREATE TEMP TABLE leaked (x int)",
            "SELECT pg_advisory_lock(42)::text AS locked",
            "SELECT 'a'::mood_a AS custom",
        ],
        &[
            "SELECT current_setting('application_name') AS name",
            "SELECT to_regclass('pg_temp.leaked')::text AS temp_table",
            "SELECT count(*) AS locks FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()",
            "SELECT 'b'::mood_b AS custom",
        ],
    )?;
    assert_eq!(
        clean,
        [
            "DbValue::Str(\"\")",
            "DbValue::DbNull",
            "DbValue::Int64(0)",
            "DbValue::Unsupported([98])"
        ]
    );

    // A transaction left open ends with its request: the next use of the session is outside
    // it, and what it did is rolled back.
    let after = reused_session(
        &devhost,
        &url,
        &["BEGIN", "CREATE TABLE in_transaction (x int)"],
        &[
            "SELECT to_regclass('in_transaction')::text AS rolled_back",
            "SELECT pg_current_xact_id_if_assigned() IS NULL AS fresh_transaction",
        ],
    )?;
    assert_eq!(after, ["DbValue::DbNull", "DbValue::Boolean(true)"]);
    assert_eq!(
        postgres().psql(&database, "SELECT to_regclass('in_transaction') IS NULL")?,
        "t"
    );
    Ok(())
}

/// Runs `first` in one request, then `then` in later requests until one runs on the same
/// PostgreSQL session (pooled connections are reused): the first value of each of those.
fn reused_session(devhost: &Devhost, url: &str, first: &[&str], then: &[&str]) -> anyhow::Result<Vec<Value>> {
    const PID: &str = "SELECT pg_backend_pid() AS pid";
    let first = [&[PID], first].concat();
    let then = [&[PID], then].concat();
    let done = run_sql(devhost, url, &first, &[])?;
    ensure!(done.iter().all(|r| r.get("error").is_none()), "{done:?}");
    let session = done[0]["rows"][0][0].clone();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let probe = run_sql(devhost, url, &then, &[])?;
        if probe[0]["rows"][0][0] == session {
            return Ok(probe[1..].iter().map(|r| r["rows"][0][0].clone()).collect());
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "session {session} was never reused"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn service_chaining() -> TestResult {
    let devhost = Devhost::start(fixture())?;
    let chained = devhost
        .get("/api/http?url=http://private.spin.internal/hello")?
        .json()?;
    assert_eq!(chained["status"], 200, "{chained}");
    let body: Value = serde_json::from_str(chained["body"].as_str().unwrap_or_default())?;
    // As in Spin: a synthetic "/..." route whose path info is the whole path.
    assert_eq!(body["headers"]["spin-path-info"], "/hello");
    assert_eq!(body["headers"]["spin-raw-component-route"], "/...");
    assert_eq!(body["headers"]["spin-client-addr"], "0.0.0.0:0");
    // A private component has no route of its own.
    assert_eq!(
        devhost.get("/private")?.json()?["headers"]["spin-raw-component-route"],
        "/..."
    );
    // A component without the host in its allow-list may not chain.
    let denied = devhost.get("/http?url=http://private.spin.internal/hello")?;
    assert!(denied.body.contains("HttpRequestDenied"), "{}", denied.body);
    Ok(())
}

fn trap_gives_500_and_serving_continues() -> TestResult {
    let mut devhost = Devhost::start(fixture())?;
    for _ in 0..3 {
        let trapped = devhost.get("/api/trap")?;
        assert_eq!((trapped.status, trapped.body.as_str()), (500, ""));
    }
    assert_eq!(devhost.get("/api/exact")?.status, 200);
    assert!(devhost.is_running());
    devhost.wait_for_output(|output| output.contains("the fixture was asked to trap"))?;
    Ok(())
}

fn component_id_serves_a_subset() -> TestResult {
    let devhost = Devhost::start(fixture().component("exact"))?;
    assert_eq!(devhost.get("/api/exact")?.status, 200);
    assert_eq!(devhost.get("/api/other")?.status, 404);
    assert_eq!(devhost.get("/anything")?.status, 404);
    drop(devhost);
    // As with `spin up -c`: keeping a component that chains to one left out is an error.
    let message = Devhost::start_failure(fixture().component("api"))?;
    assert!(
        message.contains("cannot use service chaining to unselected component"),
        "{message}"
    );
    let message = Devhost::start_failure(fixture().component("nope"))?;
    assert!(message.contains("nope"), "{message}");
    Ok(())
}

fn component_output_is_forwarded() -> TestResult {
    let devhost = Devhost::start(fixture())?;
    devhost.get("/api/print?text=xyzzy")?;
    devhost.wait_for_output(|output| output.contains("[api] fixture says xyzzy"))?;
    Ok(())
}

fn start_up_errors_say_what_to_do() -> TestResult {
    let dir = tempfile::tempdir()?;
    let manifest = dir.path().join("spin.toml");
    std::fs::write(
        &manifest,
        "spin_manifest_version = 2\n[application]\nname = \"x\"\n[[trigger.http]]\nroute = \"/...\"\ncomponent = \"gone\"\n[component.gone]\nsource = \"missing.wasm\"\n",
    )?;
    let message = Devhost::start_failure(DevhostOptions::new(manifest.to_str().context("path")?))?;
    assert!(
        message.contains("missing.wasm") && message.contains("build"),
        "{message}"
    );

    std::fs::write(
        &manifest,
        "spin_manifest_version = 2\n[application]\nname = \"x\"\n[variables]\nfoo = { defualt = \"1\" }\n",
    )?;
    let message = Devhost::start_failure(DevhostOptions::new(manifest.to_str().context("path")?))?;
    assert!(message.contains("defualt"), "{message}");
    Ok(())
}

fn unprovided_imports_are_named() -> TestResult {
    // A component importing Spin's key-value store, which devhost does not provide.
    let dir = tempfile::tempdir()?;
    let wasm = wat::parse_str(
        r#"(component (import "fermyon:spin/key-value@2.0.0" (instance (export "exists" (func (param "key" string) (result bool))))))"#,
    )?;
    std::fs::write(dir.path().join("kv.wasm"), wasm)?;
    let manifest = dir.path().join("spin.toml");
    std::fs::write(
        &manifest,
        "spin_manifest_version = 2\n[application]\nname = \"x\"\n[[trigger.http]]\nroute = \"/...\"\ncomponent = \"kv\"\n[component.kv]\nsource = \"kv.wasm\"\n",
    )?;
    let message = Devhost::start_failure(DevhostOptions::new(manifest.to_str().context("path")?))?;
    assert!(
        message.contains("fermyon:spin/key-value@2.0.0") && message.contains("\"kv\""),
        "{message}"
    );
    Ok(())
}
