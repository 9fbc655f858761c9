//! devhost behaves like `spin up` for what the app uses, proven with the fixture component.

use anyhow::{Context, ensure};
use e2e::{Devhost, DevhostOptions, StaticServer};
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
        service_chaining,
        trap_gives_500_and_serving_continues,
        component_id_serves_a_subset,
        component_output_is_forwarded,
        start_up_errors_say_what_to_do,
        unprovided_imports_are_named,
    ]
}

fn fixture() -> DevhostOptions {
    DevhostOptions::new(FIXTURE).variable("secret_word", "swordfish")
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
    assert!(
        devhost.output().contains("disallowed destination"),
        "{}",
        devhost.output()
    );
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
    assert!(devhost.output().contains("the fixture was asked to trap"));
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
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !devhost.output().contains("[api] fixture says xyzzy") {
        ensure!(
            std::time::Instant::now() < deadline,
            "no component output in:\n{}",
            devhost.output()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
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
