//! devhost processes serving the compiled components, and an HTTP client for them.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};

pub struct DevhostOptions {
    /// The manifest, relative to the workspace root.
    pub manifest: PathBuf,
    /// `SPIN_VARIABLE_*` and other environment for the process.
    pub env: Vec<(String, String)>,
    /// `--component-id` values (all components when empty).
    pub component_ids: Vec<String>,
    /// The address to listen on; a free port when `None`.
    pub listen: Option<String>,
}

impl DevhostOptions {
    pub fn new(manifest: &str) -> Self {
        Self {
            manifest: PathBuf::from(manifest),
            env: Vec::new(),
            component_ids: Vec::new(),
            listen: None,
        }
    }

    /// Sets a Spin variable through its `SPIN_VARIABLE_<NAME>` environment variable.
    pub fn variable(mut self, name: &str, value: &str) -> Self {
        self.env
            .push((format!("SPIN_VARIABLE_{}", name.to_uppercase()), value.to_owned()));
        self
    }

    pub fn component(mut self, id: &str) -> Self {
        self.component_ids.push(id.to_owned());
        self
    }

    pub fn listen(mut self, address: &str) -> Self {
        self.listen = Some(address.to_owned());
        self
    }
}

pub struct Devhost {
    child: Child,
    base_url: String,
    output: Arc<Mutex<String>>,
    client: reqwest::blocking::Client,
}

/// The devhost binary: `$DEVHOST_BIN`, else the release build in the workspace's target dir.
pub fn devhost_binary() -> Result<PathBuf> {
    let path = std::env::var_os("DEVHOST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("target/release/devhost"));
    if !path.is_file() {
        bail!(
            "{} is missing: build it with `cargo build --release -p devhost` (scripts/test does)",
            path.display()
        );
    }
    Ok(path)
}

impl Devhost {
    /// Starts devhost on a free port and waits until it serves.
    pub fn start(options: DevhostOptions) -> Result<Self> {
        let root = crate::workspace_root();
        let mut command = Command::new(devhost_binary()?);
        command
            .current_dir(&root)
            .arg("--from")
            .arg(root.join(&options.manifest))
            .arg("--listen")
            .arg(options.listen.as_deref().unwrap_or("127.0.0.1:0"))
            .env("DEVHOST_CACHE_DIR", root.join("target/devhost-cache"))
            .envs(options.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for id in &options.component_ids {
            command.args(["--component-id", id]);
        }
        crate::die_with_parent(&mut command, libc::SIGKILL);
        let mut child = command.spawn().context("starting devhost")?;
        let output = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().context("devhost stderr")?;
        drain(stderr, output.clone());
        let mut stdout = BufReader::new(child.stdout.take().context("devhost stdout")?);
        let mut base_url = None;
        let mut line = String::new();
        while base_url.is_none() && stdout.read_line(&mut line)? > 0 {
            if let Some(url) = line.trim().strip_prefix("Serving ") {
                base_url = Some(url.to_owned());
            }
            line.clear();
        }
        drain(stdout, output.clone());
        let Some(base_url) = base_url else {
            let status = child.wait()?;
            std::thread::sleep(Duration::from_millis(50));
            bail!(
                "devhost exited ({status}) before serving:\n{}",
                output.lock().map(|o| o.clone()).unwrap_or_default()
            );
        };
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self {
            child,
            base_url,
            output,
            client,
        })
    }

    /// Runs devhost to completion expecting it to fail at start-up; returns what it printed.
    pub fn start_failure(options: DevhostOptions) -> Result<String> {
        match Self::start(options) {
            Ok(_) => bail!("devhost started, but it should have refused to"),
            Err(error) => Ok(format!("{error:#}")),
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Everything devhost printed so far (component output included).
    pub fn output(&self) -> String {
        self.output.lock().map(|o| o.clone()).unwrap_or_default()
    }

    /// devhost's output once `found` holds for it. Output is read from pipes by other threads,
    /// so a line printed while serving a request may arrive after its response: tests that
    /// look for one wait for it here, for up to ten seconds.
    pub fn wait_for_output(&self, found: impl Fn(&str) -> bool) -> Result<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let output = self.output();
            if found(&output) {
                return Ok(output);
            }
            if std::time::Instant::now() >= deadline {
                bail!("devhost never printed what was expected; its output:\n{output}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The devhost process's id (e.g. to read its memory in /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// A request to `path` on this devhost.
    pub fn request(&self, method: &str, path: &str) -> reqwest::blocking::RequestBuilder {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a valid method");
        self.client.request(method, format!("{}{path}", self.base_url))
    }

    pub fn get(&self, path: &str) -> Result<HttpResponse> {
        HttpResponse::send(self.request("GET", path))
    }
}

impl Drop for Devhost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- devhost output ---\n{}", self.output());
        }
    }
}

fn drain(stream: impl Read + Send + 'static, into: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if let Ok(mut output) = into.lock() {
                output.push_str(&line);
                output.push('\n');
            }
        }
    });
}

/// A response read whole.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl HttpResponse {
    pub fn send(request: reqwest::blocking::RequestBuilder) -> Result<Self> {
        let response = request.send()?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.text()?;
        Ok(Self {
            status,
            headers,
            body,
        })
    }

    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_str(&self.body).with_context(|| format!("body is not JSON: {:?}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}
