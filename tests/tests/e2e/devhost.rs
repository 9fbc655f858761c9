//! devhost behaves like `spin up` for what the app uses, proven with the fixture component.

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, ensure};
use e2e::{Answer, Devhost, DevhostOptions, HttpResponse, StubServer, TestResult, database_name, postgres};
use serde_json::Value;

const FIXTURE: &str = "devhost/fixture/spin.toml";

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

#[e2e::test(devhost_only)]
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

#[e2e::test(devhost_only)]
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

#[e2e::test(devhost_only)]
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

#[e2e::test(devhost_only)]
fn required_variable_missing_fails_start() -> TestResult {
    let message = Devhost::start_failure(DevhostOptions::new(FIXTURE))?;
    assert!(
        message.contains("secret_word") && message.contains("SPIN_VARIABLE_SECRET_WORD"),
        "{message}"
    );
    Ok(())
}

#[e2e::test(devhost_only)]
fn outbound_http_allowed_and_denied() -> TestResult {
    let server = StubServer::answering(Answer::Body(200, "hello from outside".to_owned()));
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

/// As Spin's client does, an outgoing request carries the URI's authority as `Host` (an
/// HTTP/1.1 request without one is invalid, and Node's server refuses it with 400).
#[e2e::test(devhost_only)]
fn outbound_http_sends_the_authority_as_host() -> TestResult {
    let server = StubServer::start();
    let authority = format!("127.0.0.1:{}", server.port());
    let devhost = Devhost::start(fixture().variable("allowed_http", &format!("http://{authority}")))?;
    let answer = devhost
        .get(&format!("/api/http?url=http://{authority}/somewhere"))?
        .json()?;
    assert_eq!(answer["status"], 200, "{answer}");
    let received = server.received();
    assert_eq!(received.len(), 1, "{received:#?}");
    assert_eq!(
        received[0].headers.get("host").and_then(|v| v.to_str().ok()),
        Some(authority.as_str())
    );
    Ok(())
}

#[e2e::test(devhost_only)]
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
#[e2e::test(devhost_only)]
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
#[e2e::test(devhost_only)]
fn postgres_session_state_never_survives_a_request() -> TestResult {
    let url = postgres().create_database()?;
    let database = database_name(&url)?;
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

#[e2e::test(devhost_only)]
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

#[e2e::test(devhost_only)]
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

#[e2e::test(devhost_only)]
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

#[e2e::test(devhost_only)]
fn component_output_is_forwarded() -> TestResult {
    let devhost = Devhost::start(fixture())?;
    devhost.get("/api/print?text=xyzzy")?;
    devhost.wait_for_output(|output| output.contains("[api] fixture says xyzzy"))?;
    Ok(())
}

#[e2e::test(devhost_only)]
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

#[e2e::test(devhost_only)]
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

/// Sends `request` as it is, bytes a client library would refuse to send included, and returns
/// the status and body of the answer.
fn raw_request(devhost: &Devhost, request: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
    let address = devhost.base_url().strip_prefix("http://").context("address")?;
    let mut stream = std::net::TcpStream::connect(address)?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    stream.write_all(request)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let head_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .with_context(|| format!("no response head: {:?}", String::from_utf8_lossy(&response)))?;
    let head = String::from_utf8_lossy(&response[..head_end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status: {head}"))?;
    Ok((status, response[head_end + 4..].to_vec()))
}

/// Spin 3.6.3 refuses a request with a header value that is not UTF-8 with an empty 500 before
/// any component runs (`prepare_request_headers`); Spin's own routes are answered before that.
#[e2e::test(devhost_only)]
fn header_value_not_utf8_is_an_empty_500_before_any_component_runs() -> TestResult {
    let devhost = Devhost::start(fixture().component("api").component("private"))?;
    let request = |path: &str, key: &[u8]| {
        [
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nIdempotency-Key: ")
                .as_bytes(),
            key,
            b"\r\n\r\n",
        ]
        .concat()
    };
    let refused = raw_request(&devhost, &request("/api/print?text=refused", b"caf\xe9!"))?;
    assert_eq!(refused, (500, Vec::new()));
    // The same request with a UTF-8 value runs the component.
    let accepted = raw_request(&devhost, &request("/api/print?text=accepted", "café!".as_bytes()))?;
    assert_eq!(accepted.0, 200);
    let output = devhost.wait_for_output(|output| output.contains("[api] fixture says accepted"))?;
    assert!(!output.contains("fixture says refused"), "{output}");
    assert!(output.contains("invalid utf-8 sequence"), "{output}");
    // Spin answers its health check and unrouted paths before it looks at the headers.
    let health = raw_request(&devhost, &request("/.well-known/spin/health", b"\xff"))?;
    assert_eq!(health, (200, b"OK".to_vec()));
    assert_eq!(
        raw_request(&devhost, &request("/elsewhere", b"\xff"))?,
        (404, Vec::new())
    );
    Ok(())
}

/// A guest may grow a memory to 256 MiB, whether instances come from the pooling allocator's
/// slots or are allocated on demand; past that its allocation fails and it traps.
#[e2e::test(devhost_only)]
fn memory_is_capped_with_either_instance_allocator() -> TestResult {
    for allocator in ["pooling", "on-demand"] {
        let mut devhost = Devhost::start(fixture().env("DEVHOST_INSTANCE_ALLOCATOR", allocator))?;
        let below = devhost.get("/api/grow?mib=64")?;
        assert_eq!(below.status, 200, "{allocator}: {}", below.body);
        assert_eq!(below.json()?["grown_mib"], 64, "{allocator}");
        let above = devhost.get("/api/grow?mib=320")?;
        assert_eq!((above.status, above.body.as_str()), (500, ""), "{allocator}");
        devhost.wait_for_output(|output| output.contains("[api] memory allocation of"))?;
        assert_eq!(devhost.get("/api/exact")?.status, 200, "{allocator}");
        assert!(devhost.is_running(), "{allocator}");
    }
    Ok(())
}

fn cache_entries(dir: &Path) -> anyhow::Result<usize> {
    Ok(std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|entry| entry.path().extension().is_some_and(|e| e == "cwasm"))
        .count())
}

/// Loading a cached component runs its machine code: devhost uses a cache directory only if
/// it belongs to devhost's user and no one else may write to it.
#[e2e::test(devhost_only)]
fn compilation_cache_only_in_a_directory_no_one_else_may_write() -> TestResult {
    let base = tempfile::tempdir()?;
    let cache = base.path().join("cache");
    std::fs::create_dir(&cache)?;
    let start = || {
        Devhost::start(
            fixture()
                .component("exact")
                .env("DEVHOST_CACHE_DIR", &cache.display().to_string()),
        )
    };
    let refused = |devhost: &Devhost, reason: &str| -> TestResult {
        assert_eq!(devhost.get("/api/exact")?.status, 200);
        let output = devhost.wait_for_output(|output| output.contains("not using the compilation cache"))?;
        assert!(output.contains(reason), "{output}");
        Ok(())
    };

    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777))?;
    refused(&start()?, "(mode 0777)")?;
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o770))?;
    refused(&start()?, "(mode 0770)")?;
    assert_eq!(cache_entries(&cache)?, 0);

    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700))?;
    let devhost = start()?;
    assert_eq!(devhost.get("/api/exact")?.status, 200);
    assert!(
        !devhost.output().contains("compilation cache"),
        "{}",
        devhost.output()
    );
    assert_eq!(cache_entries(&cache)?, 1);
    drop(devhost);

    // Only root can give the directory to another user.
    if std::fs::metadata(base.path())?.uid() == 0 {
        std::os::unix::fs::chown(&cache, Some(65534), None)?;
        refused(&start()?, "belongs to uid 65534")?;
    } else {
        eprintln!("not root: the cache directory of another user is checked by devhost's unit tests");
    }
    Ok(())
}

/// `--empty-query-trap` plays Spin 4.0.0-4.0.2, where a query with no rows never returns: the
/// instance traps, naming the statement. Off, such a query answers no columns and no rows.
#[e2e::test(devhost_only)]
fn empty_query_trap_names_the_statement() -> TestResult {
    const EMPTY: &str = "SELECT 1 AS one WHERE false";
    let url = postgres().create_database()?;
    let port = postgres().port().to_string();
    let off = fixture()
        .variable("pg_port", &port)
        .env("DEVHOST_EMPTY_QUERY_TRAP", "0");
    let devhost = Devhost::start(off)?;
    let empty = run_sql(&devhost, &url, &[EMPTY], &[])?.remove(0);
    assert_eq!(empty, serde_json::json!({ "columns": [], "rows": [] }));
    drop(devhost);

    let on = fixture()
        .variable("pg_port", &port)
        .env("DEVHOST_EMPTY_QUERY_TRAP", "1");
    let devhost = Devhost::start(on)?;
    let rows = run_sql(&devhost, &url, &["SELECT 1 AS one"], &[])?.remove(0);
    assert_eq!(rows["rows"], serde_json::json!([["DbValue::Int32(1)"]]));
    let query = [("url", url.as_str()), ("statement", EMPTY)];
    let trapped = HttpResponse::send(devhost.request("GET", "/api/sql").query(&query))?;
    assert_eq!((trapped.status, trapped.body.as_str()), (500, ""));
    devhost.wait_for_output(|output| output.contains("--empty-query-trap") && output.contains(EMPTY))?;
    Ok(())
}
