//! The harness itself: every test file is compiled in, the suite runs on a runtime
//! `E2E_RUNTIME` names (and skips devhost's own tests there, saying so), and the stub server
//! answers as scripted.

use std::collections::BTreeMap;
use std::io::Read;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use e2e::{Answer, Framing, StubServer, TestResult, registered, workspace_root};

/// A file in tests/e2e/ that main.rs does not declare as a module is never compiled, so its
/// tests would never run: each file must contribute at least one registered test.
#[e2e::test]
fn every_test_file_is_a_module() -> TestResult {
    let dir = workspace_root().join("tests/tests/e2e");
    let modules: Vec<&str> = registered().iter().map(|test| test.module()).collect();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if path.extension().is_some_and(|e| e == "rs") && stem != "main" {
            ensure!(
                modules.contains(&stem),
                "{} has no registered test: declare `mod {stem};` in main.rs and each test with #[e2e::test]",
                path.display()
            );
        }
    }
    Ok(())
}

/// Runs this test binary with `E2E_RUNTIME` set and `arguments`; each test's outcome by name
/// (`ok`, `ignored (...)`, …), and the summary line.
fn run_suite(runtime: &str, arguments: &[&str]) -> Result<(BTreeMap<String, String>, String)> {
    let output = std::process::Command::new(std::env::current_exe()?)
        .env("E2E_RUNTIME", runtime)
        .args(["--color", "never"])
        .args(arguments)
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    ensure!(
        output.status.success(),
        "E2E_RUNTIME={runtime:?} e2e {arguments:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let outcomes = stdout
        .lines()
        .filter_map(|line| line.strip_prefix("test "))
        .filter_map(|line| line.split_once(" ... "))
        .map(|(name, outcome)| (name.trim().to_owned(), outcome.trim().to_owned()))
        .collect();
    let summary = stdout
        .lines()
        .find(|line| line.starts_with("test result:"))
        .context("no summary")?
        .to_owned();
    Ok((outcomes, summary))
}

/// The plumbing of `E2E_RUNTIME`, with devhost as the named runtime: devhost's own tests are
/// reported skipped, not passed; an app test passes on a runtime started as `<command> --from
/// <manifest> --listen 127.0.0.1:<port> [-c <id>]...` on ports the harness picked, found
/// serving through its health route when it prints nothing on stdout.
#[e2e::test]
fn a_named_runtime_serves_the_suite_and_devhost_tests_are_skipped() -> TestResult {
    let devhost = e2e::devhost_binary()?.display().to_string();
    let (outcomes, summary) = run_suite(&devhost, &["devhost::"])?;
    let devhost_tests: Vec<String> = registered()
        .iter()
        .filter(|test| test.devhost_only)
        .map(|test| test.full_name())
        .collect();
    ensure!(devhost_tests.len() >= 10, "{devhost_tests:?}");
    let skipped = format!("ignored (devhost only: the app runs on `{devhost}` (E2E_RUNTIME))");
    for test in &devhost_tests {
        ensure!(
            outcomes.get(test) == Some(&skipped),
            "{test}: {:?}",
            outcomes.get(test)
        );
    }
    ensure!(
        summary.contains(&format!("0 passed; 0 failed; {} ignored", devhost_tests.len())),
        "{summary}"
    );

    // A wrapper records the command line, and sends stdout to stderr, so that no `Serving`
    // line is seen and only the health route can tell that the app is up.
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("arguments");
    let wrapper = dir.path().join("runtime.sh");
    std::fs::write(
        &wrapper,
        format!(
            "printf '%s\\n' \"$*\" >> '{}'\nexec '{devhost}' \"$@\" 1>&2\n",
            log.display()
        ),
    )?;
    let runtime = format!("sh {}", wrapper.display());
    let test = "notify::split_deployment_with_notify_fn_down";
    let (outcomes, summary) = run_suite(&runtime, &["--exact", test])?;
    ensure!(
        outcomes.get(test).map(String::as_str) == Some("ok"),
        "{outcomes:?}"
    );
    ensure!(summary.contains("1 passed; 0 failed"), "{summary}");
    let started = std::fs::read_to_string(&log)?;
    let manifest = workspace_root().join("spin.toml");
    let mut components = Vec::new();
    for line in started.lines() {
        let rest = line
            .strip_prefix(&format!("--from {} --listen 127.0.0.1:", manifest.display()))
            .with_context(|| format!("started as {line:?}"))?;
        let (port, rest) = rest.split_once(' ').with_context(|| line.to_owned())?;
        ensure!(port.parse::<u16>()? != 0, "{line}");
        components.push(rest.to_owned());
    }
    components.sort();
    ensure!(
        components == ["-c event-fn", "-c notify-fn", "-c notify-fn"],
        "{started}"
    );
    Ok(())
}

#[e2e::test]
fn stub_server_answers_as_scripted() -> TestResult {
    let server = StubServer::start();
    server.script(&[
        Answer::Body(201, "made".to_owned()),
        Answer::Status(202),
        Answer::Redirect(307, "http://127.0.0.1:9/elsewhere".to_owned()),
        Answer::HangUp,
        Answer::Trickle(Duration::from_millis(50)),
        Answer::Endless,
        Answer::Silence,
    ]);
    // A connection per request, so that each answer meets a fresh one.
    let client = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()?;
    let url = server.url();

    let made = client.post(&url).body("fixed").send()?;
    assert_eq!(made.status(), 201);
    assert_eq!(made.text()?, "made");
    let streamed = reqwest::blocking::Body::new(std::io::Cursor::new(b"streamed".to_vec()));
    assert_eq!(client.post(&url).body(streamed).send()?.status(), 202);
    let redirect = client.get(&url).send()?;
    assert_eq!(redirect.status(), 307);
    assert_eq!(redirect.headers()["location"], "http://127.0.0.1:9/elsewhere");
    assert!(client.get(&url).send().is_err(), "the hang-up was answered");

    let mut trickle = client.get(&url).send()?;
    assert_eq!(trickle.status(), 200);
    let started = Instant::now();
    let mut bytes = [0; 4];
    trickle.read_exact(&mut bytes)?;
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "{:?}",
        started.elapsed()
    );
    drop(trickle);

    let endless = client.get(&url).send()?;
    assert_eq!(endless.status(), 200);
    let size = 16 * 1024 * 1024;
    assert_eq!(
        std::io::copy(&mut endless.take(size), &mut std::io::sink())?,
        size
    );

    let silence = client.get(&url).timeout(Duration::from_millis(300)).send();
    assert!(silence.is_err_and(|error| error.is_timeout()));
    assert_eq!(client.get(&url).send()?.status(), 200, "the default answer");

    let received = server.received();
    assert_eq!(received.len(), 8, "{received:#?}");
    assert_eq!(
        (received[0].method.as_str(), received[0].path.as_str()),
        ("POST", "/hook")
    );
    assert_eq!(
        (received[0].framing, received[0].body.as_str()),
        (Framing::ContentLength(5), "fixed")
    );
    assert_eq!(
        (received[1].framing, received[1].body.as_str()),
        (Framing::Chunked, "streamed")
    );
    assert_eq!(received[2].framing, Framing::None);
    assert!(received.iter().all(|r| !r.signature_valid));

    server.refuse_connections();
    let refused = client.get(&url).send();
    assert!(refused.is_err_and(|error| error.is_connect()));
    Ok(())
}
