//! The API contract (issue 6): openapi.yaml against what is served. The spec is served as the
//! file says; its paths are exactly the routes spin.toml and the components' route tables serve,
//! and each path's methods exactly those the app answers (every other method is 405 with
//! `Allow` naming the spec's methods). Also the regression tests of what schemathesis found
//! (tests/contract/run.sh).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, bail, ensure};
use e2e::{App, HttpResponse, NOTIFY_TOKEN, TOKEN, TestResult, assert_problem};
use serde_json::{Value, json};

const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

fn spec_text() -> Result<String> {
    let path = e2e::workspace_root().join("openapi.yaml");
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

fn spec() -> Result<Value> {
    serde_norway::from_str(&spec_text()?).context("openapi.yaml is not YAML")
}

/// Each path of the spec with its methods (upper case).
fn spec_operations(spec: &Value) -> Result<BTreeMap<String, BTreeSet<String>>> {
    let paths = spec["paths"].as_object().context("no paths")?;
    Ok(paths
        .iter()
        .map(|(path, item)| {
            let methods = item
                .as_object()
                .map(|item| {
                    item.keys()
                        .filter(|key| METHODS.contains(&key.to_uppercase().as_str()))
                        .map(|key| key.to_uppercase())
                        .collect()
                })
                .unwrap_or_default();
            (path.clone(), methods)
        })
        .collect())
}

/// A spec path with its parameters filled in: `{id}` becomes 1.
fn concrete(path: &str) -> String {
    path.replace("{id}", "1")
}

/// Sends `method` to `path` with the token the path takes (none for the spec itself).
fn send(app: &App, method: &str, path: &str) -> Result<HttpResponse> {
    let mut request = app.devhost.request(method, path);
    match path {
        "/openapi.yaml" => {}
        "/notifications/dispatch" => {
            request = request.header("authorization", format!("Bearer {NOTIFY_TOKEN}"))
        }
        _ => request = request.header("authorization", format!("Bearer {TOKEN}")),
    }
    HttpResponse::send(request)
}

#[e2e::test]
fn spec_is_served_without_a_token() -> TestResult {
    let app = App::start()?;
    let served = HttpResponse::send(app.devhost.request("GET", "/openapi.yaml"))?;
    assert_eq!(served.status, 200, "{}", served.body);
    assert_eq!(served.header("content-type"), Some("application/yaml"));
    ensure!(
        served.body == spec_text()?,
        "GET /openapi.yaml differs from openapi.yaml: rebuild event-fn (scripts/build)"
    );
    let head = HttpResponse::send(app.devhost.request("HEAD", "/openapi.yaml"))?;
    assert_eq!((head.status, head.body.as_str()), (200, ""));
    assert_eq!(head.header("content-type"), Some("application/yaml"));
    // A wrong token does not matter either: the spec is public.
    let with_token = HttpResponse::send(
        app.devhost
            .request("GET", "/openapi.yaml")
            .header("authorization", "Bearer wrong"),
    )?;
    assert_eq!(with_token.status, 200);
    let post = HttpResponse::send(app.devhost.request("POST", "/openapi.yaml"))?;
    assert_problem(&post, 405, &[])?;
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    // Everything else stays authenticated.
    for path in ["/events", "/subscriptions", "/notifications", "/openapi.yaml/x"] {
        let response = HttpResponse::send(app.devhost.request("GET", path))?;
        ensure!(
            response.status == 401 || (path == "/openapi.yaml/x" && response.status == 404),
            "{path}: {} {}",
            response.status,
            response.body
        );
    }
    Ok(())
}

/// Every `$ref` resolves, operation ids are unique, every operation answers something and
/// declares its path parameters, and every schema compiles as JSON Schema... as far as a
/// structural check goes: the deep checks are schemathesis's.
#[e2e::test]
fn spec_is_well_formed() -> TestResult {
    let spec = spec()?;
    ensure!(
        spec["openapi"].as_str().is_some_and(|v| v.starts_with("3.1.")),
        "openapi {}",
        spec["openapi"]
    );
    let mut refs = Vec::new();
    collect_refs(&spec, &mut refs);
    ensure!(!refs.is_empty(), "no $ref at all");
    for reference in &refs {
        let pointer = reference
            .strip_prefix('#')
            .with_context(|| format!("{reference}: only local references"))?;
        ensure!(spec.pointer(pointer).is_some(), "{reference} does not resolve");
    }
    let mut ids = BTreeSet::new();
    let resolve = |value: &Value| -> Value {
        match value["$ref"].as_str().and_then(|r| r.strip_prefix('#')) {
            Some(pointer) => spec.pointer(pointer).cloned().unwrap_or(Value::Null),
            None => value.clone(),
        }
    };
    let operations = spec["paths"]
        .as_object()
        .into_iter()
        .flatten()
        .chain(spec["webhooks"].as_object().into_iter().flatten());
    for (path, item) in operations {
        let shared: Vec<Value> = item["parameters"]
            .as_array()
            .map(|p| p.iter().map(&resolve).collect())
            .unwrap_or_default();
        for (method, operation) in item.as_object().into_iter().flatten() {
            if !METHODS.contains(&method.to_uppercase().as_str()) {
                continue;
            }
            let id = operation["operationId"]
                .as_str()
                .with_context(|| format!("{method} {path}: no operationId"))?;
            ensure!(ids.insert(id.to_owned()), "operationId {id} twice");
            let responses = operation["responses"]
                .as_object()
                .with_context(|| format!("{id}: no responses"))?;
            ensure!(!responses.is_empty(), "{id}: no responses");
            let parameters: Vec<Value> = operation["parameters"]
                .as_array()
                .map(|p| p.iter().map(&resolve).collect())
                .unwrap_or_default();
            let in_path: BTreeSet<&str> = shared
                .iter()
                .chain(&parameters)
                .filter(|p| p["in"] == "path")
                .filter_map(|p| p["name"].as_str())
                .collect();
            // A parameter may be part of a segment (`/feeds/{secret}.ics`).
            let templated: BTreeSet<&str> = path
                .split('{')
                .skip(1)
                .filter_map(|s| s.split_once('}').map(|(name, _)| name))
                .collect();
            ensure!(
                in_path == templated,
                "{id}: path parameters {in_path:?}, template {templated:?}"
            );
        }
    }
    // The problem schema the README documents, and the webhook's CloudEvent.
    let problem = &spec["components"]["schemas"]["Problem"]["properties"];
    for member in ["type", "title", "status", "detail", "errors"] {
        ensure!(problem.get(member).is_some(), "Problem has no {member}");
    }
    let cloud_event = &spec["components"]["schemas"]["CloudEvent"]["required"];
    ensure!(
        *cloud_event
            == json!([
                "specversion",
                "id",
                "source",
                "type",
                "time",
                "datacontenttype",
                "data"
            ]),
        "CloudEvent requires {cloud_event}"
    );
    Ok(())
}

fn collect_refs(value: &Value, into: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("$ref") {
                into.push(reference.clone());
            }
            map.values().for_each(|v| collect_refs(v, into));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, into)),
        _ => {}
    }
}

/// The routes the components serve, from the route tables they export (`ROUTES`): each path
/// (`:id` written `{id}`) with the methods it allows.
fn code_routes() -> BTreeMap<String, BTreeSet<String>> {
    event_fn::ROUTES
        .iter()
        .chain(&notify_fn::ROUTES)
        .map(|route| {
            let path = route
                .path
                .split('/')
                .map(|s| match s.strip_prefix(':') {
                    Some(name) => format!("{{{name}}}"),
                    None => s.to_owned(),
                })
                .collect::<Vec<_>>()
                .join("/");
            (path, route.methods().map(str::to_owned).collect())
        })
        .collect()
}

/// spin.toml's HTTP routes.
fn manifest_routes() -> Result<Vec<String>> {
    let text = std::fs::read_to_string(e2e::workspace_root().join("spin.toml"))?;
    let manifest: toml::Table = toml::from_str(&text)?;
    let triggers = manifest["trigger"]["http"]
        .as_array()
        .context("no [[trigger.http]]")?;
    Ok(triggers
        .iter()
        .filter_map(|t| t.get("route").and_then(|r| r.as_str()).map(str::to_owned))
        .collect())
}

fn route_serves(route: &str, path: &str) -> bool {
    match route.strip_suffix("/...") {
        Some(prefix) => path == prefix || path.starts_with(&format!("{prefix}/")),
        None => route == path,
    }
}

#[e2e::test]
fn spec_paths_are_the_routes_served() -> TestResult {
    let spec = spec()?;
    let operations = spec_operations(&spec)?;
    let in_spec: BTreeSet<String> = operations.keys().cloned().collect();
    let routes = code_routes();
    let in_code: BTreeSet<String> = routes.keys().cloned().collect();
    let missing: Vec<_> = in_code.difference(&in_spec).collect();
    let extra: Vec<_> = in_spec.difference(&in_code).collect();
    ensure!(
        missing.is_empty() && extra.is_empty(),
        "served but not in openapi.yaml: {missing:?}; in openapi.yaml but not routed by a component: {extra:?}"
    );
    for (path, methods) in &routes {
        ensure!(
            operations.get(path) == Some(methods),
            "{path}: the route table allows {methods:?}, openapi.yaml documents {:?}",
            operations.get(path)
        );
    }
    let manifest = manifest_routes()?;
    for path in &in_spec {
        ensure!(
            manifest.iter().any(|route| route_serves(route, path)),
            "{path} is in openapi.yaml but no spin.toml route reaches it"
        );
    }
    for route in &manifest {
        ensure!(
            in_spec.iter().any(|path| route_serves(route, path)),
            "spin.toml routes {route} but openapi.yaml has no path under it"
        );
    }
    // And live: each spec path reaches a component that knows it (not devhost's empty 404,
    // not a router's catch-all); a path next to them does not.
    let app = App::start()?;
    for path in &in_spec {
        let method = if path.ends_with("/redeliver") || path.ends_with("/dispatch") {
            "POST"
        } else {
            "GET"
        };
        let response = send(&app, method, &concrete(path))?;
        ensure!(
            !unrouted(&response),
            "{method} {path}: unrouted ({} {:?})",
            response.status,
            response.body
        );
    }
    for path in [
        "/events/1/x",
        "/notifications/1/x",
        "/subscriptions/1/x",
        "/nothing",
    ] {
        let response = send(&app, "GET", path)?;
        ensure!(
            unrouted(&response),
            "{path} is served but not in the spec: {}",
            response.status
        );
    }
    Ok(())
}

/// devhost's 404 for a path no route reaches (empty body), or a component's catch-all.
fn unrouted(response: &HttpResponse) -> bool {
    response.status == 404
        && (response.body.is_empty() || response.body.contains("is not a resource of this API"))
}

#[e2e::test]
fn spec_methods_are_the_methods_served() -> TestResult {
    let spec = spec()?;
    let app = App::start()?;
    let event = app.create("contract", "2024-11-15")?;
    let subscription = app
        .send(
            "POST",
            "/subscriptions",
            &[("content-type", "application/json")],
            Some(r#"{"url": "https://hooks.example.invalid/x"}"#),
        )?
        .json()?;
    // Real ids, so that methods reach the handler rather than stopping at "no such id".
    let with_ids = |path: &str| -> String {
        let id = if path.starts_with("/events/") {
            event["id"].to_string()
        } else if path.starts_with("/subscriptions/") {
            subscription["id"].to_string()
        } else {
            "1".to_owned()
        };
        path.replace("{id}", &id)
    };
    for (path, methods) in spec_operations(&spec)? {
        let concrete_path = with_ids(&path);
        for method in METHODS {
            if methods.contains(method) {
                continue;
            }
            let response = send(&app, method, &concrete_path)?;
            ensure!(
                response.status == 405,
                "{method} {path} is not in openapi.yaml, but the app answers {} {:?}",
                response.status,
                response.body
            );
            let allowed: BTreeSet<String> = response
                .header("allow")
                .with_context(|| format!("{method} {path}: 405 without Allow"))?
                .split(',')
                .map(|m| m.trim().to_owned())
                .collect();
            ensure!(
                allowed == methods,
                "{path}: the app allows {allowed:?}, openapi.yaml documents {methods:?}"
            );
        }
        // And every documented method is answered by a handler (not 405).
        for method in &methods {
            let response = send(&app, method, &concrete_path)?;
            if response.status == 405 {
                bail!("{method} {path} is in openapi.yaml, but the app answers 405");
            }
        }
    }
    Ok(())
}

/// schemathesis (stateful phase): `GET /events?q=` with a NUL character was a 503, PostgreSQL
/// refusing U+0000 in text. Now a 400 naming `q`, and the API keeps serving.
#[e2e::test]
fn regression_nul_in_list_query_is_a_400() -> TestResult {
    let app = App::start()?;
    app.create("a b", "2024-11-15")?;
    for query in ["q=a%00b", "q=%00", "from=2024-01-01&q=%C3%A8%00%C2%81"] {
        assert_problem(&app.get(&format!("/events?{query}"))?, 400, &["q"])
            .with_context(|| query.to_owned())?;
    }
    let head = app.send("HEAD", "/events?q=%00", &[], None)?;
    assert_eq!(head.status, 400);
    let found = app.get("/events?q=a%20b")?;
    assert_eq!(found.status, 200);
    assert_eq!(found.json()?.as_array().map(Vec::len), Some(1));
    Ok(())
}

/// The same class of failure in the body: a title or description with U+0000 was a 503 on
/// POST, PUT and PATCH. Now a 400 naming the field; nothing is written.
#[e2e::test]
fn regression_nul_in_event_text_is_a_400() -> TestResult {
    let app = App::start()?;
    let json_type = [("content-type", "application/json")];
    let post = |body: Value| app.send("POST", "/events", &json_type, Some(&body.to_string()));
    assert_problem(
        &post(json!({"title": "a\u{0}b", "date": "2024-11-15"}))?,
        400,
        &["title"],
    )?;
    assert_problem(
        &post(json!({"title": "ok", "description": "\u{0}", "date": "2024-11-15"}))?,
        400,
        &["description"],
    )?;
    let id = app.create("ok", "2024-11-15")?["id"].clone();
    let path = format!("/events/{id}");
    assert_problem(
        &app.send(
            "PUT",
            &path,
            &json_type,
            Some(&json!({"title": "\u{0}", "description": "x\u{0}", "date": "2024-11-15"}).to_string()),
        )?,
        400,
        &["description", "title"],
    )?;
    assert_problem(
        &app.send(
            "PATCH",
            &path,
            &[("content-type", "application/merge-patch+json")],
            Some(&json!({"description": "\u{0}"}).to_string()),
        )?,
        400,
        &["description"],
    )?;
    let event = app.get(&path)?.json()?;
    assert_eq!(
        (event["title"].as_str(), event["description"].as_str()),
        (Some("ok"), None)
    );
    assert_eq!(app.count("events")?, 1);
    assert_eq!(app.count("notifications")?, 1);
    Ok(())
}

/// schemathesis (stateful phase, use_after_free): `OPTIONS /events/{id}` answered 204 with
/// `Allow` for an event just deleted (it never looked the event up). Now 404 like every other
/// method on a missing event; 204 while it exists.
#[e2e::test]
fn regression_options_on_a_deleted_event_is_a_404() -> TestResult {
    let app = App::start()?;
    let id = app.create("t", "2024-11-15")?["id"].clone();
    let path = format!("/events/{id}");
    let options = app.send("OPTIONS", &path, &[], None)?;
    assert_eq!(
        (options.status, options.header("allow")),
        (204, Some("GET, HEAD, PUT, PATCH, DELETE, OPTIONS"))
    );
    assert_eq!(app.send("DELETE", &path, &[("if-match", "*")], None)?.status, 204);
    assert_problem(&app.send("OPTIONS", &path, &[], None)?, 404, &[])?;
    assert_problem(&app.send("OPTIONS", "/events/424242", &[], None)?, 404, &[])?;
    Ok(())
}
