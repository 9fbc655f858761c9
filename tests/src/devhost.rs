//! The app's server processes (devhost, or the runtime `E2E_RUNTIME` names: see
//! `runtime.rs`), and an HTTP client for them.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::runtime::Runtime;

pub struct DevhostOptions {
    /// The manifest, relative to the workspace root.
    pub manifest: PathBuf,
    /// `SPIN_VARIABLE_*` and other environment for the process.
    pub env: Vec<(String, String)>,
    /// `-c` (`--component-id`) values (all components when empty).
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

    /// Sets an environment variable of the process.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
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

/// How long a runtime may take to serve (a first start compiles the components).
const START_TIMEOUT: Duration = Duration::from_secs(120);

impl Devhost {
    /// Starts the app on devhost (or the runtime `E2E_RUNTIME` names) and waits until it
    /// serves: until it prints `Serving http://...` on stdout, as devhost and Spin do, or, when
    /// its port is known beforehand, until `/.well-known/spin/health` answers.
    pub fn start(options: DevhostOptions) -> Result<Self> {
        let runtime = Runtime::current();
        let root = crate::workspace_root();
        let listen = match (options.listen, runtime) {
            (Some(address), _) => address,
            (None, Runtime::Devhost) => "127.0.0.1:0".to_owned(),
            (None, Runtime::Named(_)) => format!("127.0.0.1:{}", crate::free_port()),
        };
        let mut command = runtime.command()?;
        command
            .current_dir(&root)
            .arg("--from")
            .arg(root.join(&options.manifest))
            .arg("--listen")
            .arg(&listen)
            .env("DEVHOST_CACHE_DIR", root.join("target/devhost-cache"))
            .envs(options.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for id in &options.component_ids {
            command.args(["-c", id]);
        }
        crate::die_with_parent(&mut command, libc::SIGKILL);
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", runtime.name()))?;
        let output = Arc::new(Mutex::new(String::new()));
        let serving = Arc::new(Mutex::new(None));
        let stderr = child.stderr.take().context("stderr")?;
        let stdout = child.stdout.take().context("stdout")?;
        let readers = [
            drain(stderr, output.clone(), None),
            drain(stdout, output.clone(), Some(serving.clone())),
        ];
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        // With port 0 (devhost's "pick one"), only the line it prints says which port it got.
        let known_base_url = (!listen.ends_with(":0")).then(|| format!("http://{listen}"));
        let deadline = std::time::Instant::now() + START_TIMEOUT;
        let base_url = loop {
            if let Some(url) = lock(&serving).clone() {
                break url;
            }
            if let Some(base_url) = &known_base_url
                && is_healthy(&client, base_url)
            {
                break base_url.clone();
            }
            if let Some(status) = child.try_wait()? {
                for reader in readers {
                    let _ = reader.join();
                }
                bail!(
                    "{} exited ({status}) before serving:\n{}",
                    runtime.name(),
                    lock(&output)
                );
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "{} did not serve within {START_TIMEOUT:?}:\n{}",
                    runtime.name(),
                    lock(&output)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
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
        lock(&self.output).clone()
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

    /// The process's resident memory (VmRSS), in KiB.
    pub fn resident_kib(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .context("VmRSS in /proc/<pid>/status")
    }

    /// Runs `work` while sampling the resident memory every 5 ms: its result, and the peak
    /// (in KiB) seen while it ran.
    pub fn peak_resident_kib<T>(&self, work: impl FnOnce() -> Result<T>) -> Result<(T, u64)> {
        let sampling = std::sync::atomic::AtomicBool::new(true);
        std::thread::scope(|scope| {
            let sampler = scope.spawn(|| {
                let mut peak = 0;
                loop {
                    peak = peak.max(self.resident_kib().unwrap_or(u64::MAX));
                    if !sampling.load(std::sync::atomic::Ordering::Relaxed) {
                        return peak;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            });
            let done = work();
            sampling.store(false, std::sync::atomic::Ordering::Relaxed);
            let peak = sampler.join().unwrap_or(u64::MAX);
            done.map(|output| (output, peak))
        })
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

/// Copies a pipe's lines into `into`; with `serving`, the URL of a `Serving http://...` line
/// goes there too.
fn drain(
    stream: impl Read + Send + 'static,
    into: Arc<Mutex<String>>,
    serving: Option<Arc<Mutex<Option<String>>>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if let Some(serving) = &serving
                && let Some(url) = line.trim().strip_prefix("Serving ")
            {
                lock(serving).get_or_insert_with(|| url.to_owned());
            }
            let mut output = lock(&into);
            output.push_str(&line);
            output.push('\n');
        }
    })
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Whether the Spin HTTP trigger's own health route answers `200`.
fn is_healthy(client: &reqwest::blocking::Client, base_url: &str) -> bool {
    client
        .get(format!("{base_url}/.well-known/spin/health"))
        .timeout(Duration::from_secs(1))
        .send()
        .is_ok_and(|response| response.status().is_success())
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
