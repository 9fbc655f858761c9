//! A PostgreSQL server of the harness's own, from the system's binaries, with the app's database
//! roles: the template database is bootstrapped as the superuser (`sql/bootstrap.sql`) and
//! migrated as the migration role, as every deployment does. Authentication is `trust` on
//! loopback, so a URL names a role and no password.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

const TEMPLATE: &str = "app_template";

/// psql as the harness runs it: no psqlrc, bare unaligned output, stop at the first error.
const PSQL_OPTIONS: [&str; 6] = [
    "--no-psqlrc",
    "--quiet",
    "--tuples-only",
    "--no-align",
    "-v",
    "ON_ERROR_STOP=1",
];

/// The roles the harness connects as (README.md, "Database roles").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `initdb`'s superuser: creates databases, bootstraps, and what tests inspect with.
    Superuser,
    /// Owns the schema and runs `sql/migrate.sh` (`sql/bootstrap.sql` makes it).
    Migrator,
    /// event-fn's role (`sql/004_roles.sql`).
    EventFn,
    /// notify-fn's role (`sql/004_roles.sql`).
    NotifyFn,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Superuser => "postgres",
            Role::Migrator => "event_platform_migrator",
            Role::EventFn => "event_fn",
            Role::NotifyFn => "notify_fn",
        }
    }

    /// `url` (one of this server's URLs) connecting as this role instead.
    pub fn in_url(self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
        let address = rest.split_once('@').map_or(rest, |(_, address)| address);
        format!("{scheme}://{}@{address}", self.name())
    }
}

pub struct Postgres {
    bindir: PathBuf,
    port: u16,
    dir: tempfile::TempDir,
    server: Mutex<Option<Child>>,
    /// The uid/gid the server runs as when the harness runs as root (PostgreSQL refuses root).
    user: Option<(u32, u32)>,
    next_database: AtomicUsize,
}

impl Postgres {
    /// Initializes a cluster in a new temporary directory, starts it on a free port and
    /// creates the template database, bootstrapped and with every migration in `sql/` applied.
    pub fn start() -> Result<Self> {
        let postgres = Self::start_empty()?;
        postgres.psql("postgres", &format!("CREATE DATABASE {TEMPLATE}"))?;
        postgres.bootstrap(TEMPLATE)?;
        postgres.migrate(TEMPLATE)?;
        Ok(postgres)
    }

    /// A cluster as `initdb` leaves it: no database of the app's and none of its roles (only
    /// `create_empty_database` then; `create_database` needs `start`'s template).
    pub fn start_empty() -> Result<Self> {
        let bindir = find_bindir()?;
        let user = if unsafe { libc::geteuid() } == 0 {
            Some(unprivileged_user()?)
        } else {
            None
        };
        let dir = tempfile::Builder::new().prefix("e2e-postgres-").tempdir()?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))?;
        }
        let postgres = Self {
            bindir,
            port: crate::free_port(),
            dir,
            server: Mutex::new(None),
            user,
            next_database: AtomicUsize::new(0),
        };
        postgres.init_and_start()?;
        Ok(postgres)
    }

    fn init_and_start(&self) -> Result<()> {
        let data = self.data_dir();
        let output = self
            .command("initdb")
            .args([
                "--auth=trust",
                "--username=postgres",
                "--encoding=UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .output()
            .with_context(|| format!("running {}", self.bindir.join("initdb").display()))?;
        if !output.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        self.launch()
    }

    /// Starts the server process on the existing data directory.
    fn launch(&self) -> Result<()> {
        let mut command = self.command("postgres");
        command
            .arg("-D")
            .arg(self.data_dir())
            .args(["-p", &self.port.to_string(), "-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", self.dir.path().display()))
            // Several devhosts, each pooling up to 64 connections, share this server.
            .args(["-c", "max_connections=600", "-c", "shared_buffers=128MB"])
            // A throwaway server: durability is not worth the time.
            .args([
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(
                self.dir.path().join("server.log"),
            )?));
        crate::die_with_parent(&mut command, libc::SIGQUIT);
        *self.server() = Some(command.spawn().context("starting postgres")?);
        self.wait_ready()
    }

    fn server(&self) -> std::sync::MutexGuard<'_, Option<Child>> {
        self.server
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn wait_ready(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new(self.bindir.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"])
                .status()
                .with_context(|| format!("running {}", self.bindir.join("pg_isready").display()))?
                .success();
            if ready {
                return Ok(());
            }
            if let Some(server) = self.server().as_mut()
                && let Some(status) = server.try_wait()?
            {
                bail!("postgres exited with {status}: {}", self.log());
            }
            if Instant::now() > deadline {
                bail!("postgres did not become ready: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server, as if the database went down.
    pub fn stop(&self) -> Result<()> {
        if let Some(mut server) = self.server().take() {
            // Fast shutdown: sessions end, and what was committed is on disk when it comes back.
            unsafe { libc::kill(server.id() as i32, libc::SIGINT) };
            server.wait()?;
        }
        Ok(())
    }

    /// Starts the server again after `stop`, on the same port and data.
    pub fn restart(&self) -> Result<()> {
        self.stop()?;
        self.launch()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A new, empty, migrated database, owned by the migration role as a bootstrapped one is;
    /// returns its connection URL (as the superuser: `Role::in_url` for another role).
    pub fn create_database(&self) -> Result<String> {
        let name = self.new_database_name();
        self.psql(
            "postgres",
            &format!(
                "CREATE DATABASE {name} TEMPLATE {TEMPLATE} OWNER {}",
                Role::Migrator.name()
            ),
        )?;
        Ok(self.url(&name))
    }

    /// A new database with nothing in it (no bootstrap, no migration); returns its name.
    pub fn create_empty_database(&self) -> Result<String> {
        let name = self.new_database_name();
        self.psql("postgres", &format!("CREATE DATABASE {name}"))?;
        Ok(name)
    }

    fn new_database_name(&self) -> String {
        let n = self.next_database.fetch_add(1, Ordering::SeqCst);
        format!("test_{}_{n}", std::process::id())
    }

    /// The URL of `database` as the superuser.
    pub fn url(&self, database: &str) -> String {
        self.url_as(Role::Superuser, database)
    }

    pub fn url_as(&self, role: Role, database: &str) -> String {
        format!(
            "postgres://{}@127.0.0.1:{}/{database}?sslmode=disable",
            role.name(),
            self.port
        )
    }

    /// Runs SQL as the superuser and returns psql's unaligned, tuples-only output.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String> {
        self.psql_as(Role::Superuser, database, sql)
    }

    /// Runs SQL as `role`; an error carries psql's message (e.g. "permission denied ...").
    pub fn psql_as(&self, role: Role, database: &str, sql: &str) -> Result<String> {
        let output = Command::new(self.bindir.join("psql"))
            .arg(self.url_as(role, database))
            .args(PSQL_OPTIONS)
            .args(["-c", sql])
            .output()?;
        if !output.status.success() {
            bail!("psql {sql:?} failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(String::from_utf8(output.stdout)?.trim().to_owned())
    }

    /// An open psql session on `database` as the superuser, for a test that holds a lock or a
    /// transaction while the app runs.
    pub fn session(&self, database: &str) -> Result<Session> {
        let mut child = Command::new(self.bindir.join("psql"))
            .arg(self.url(database))
            .args(PSQL_OPTIONS)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take().context("psql's stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("psql's stdout")?);
        Ok(Session { child, stdin, stdout })
    }

    /// Runs `sql/bootstrap.sql` on `database` as the superuser: the migration role, owning it.
    pub fn bootstrap(&self, database: &str) -> Result<String> {
        let root = crate::workspace_root();
        let mut command = Command::new(self.bindir.join("psql"));
        command
            .arg(self.url(database))
            .args(["--no-psqlrc", "--quiet", "-v", "ON_ERROR_STOP=1", "-f"])
            .arg(root.join("sql/bootstrap.sql"));
        run(&mut command, "sql/bootstrap.sql")
    }

    /// Applies `sql/` with the project's one migration procedure, as the migration role.
    pub fn migrate(&self, database: &str) -> Result<String> {
        self.migrate_from(&crate::workspace_root().join("sql"), Role::Migrator, database)
    }

    /// Runs `sql/migrate.sh` over the migrations in `dir` as `role`.
    pub fn migrate_from(&self, dir: &Path, role: Role, database: &str) -> Result<String> {
        let root = crate::workspace_root();
        let mut command = Command::new("sh");
        command
            .arg(root.join("sql/migrate.sh"))
            .arg(dir)
            .env("DATABASE_URL", self.url_as(role, database))
            .env("PATH", path_with(&self.bindir));
        run(&mut command, "sql/migrate.sh")
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bindir.join(program));
        if let Some((uid, gid)) = self.user {
            command.uid(uid).gid(gid);
        }
        command.current_dir(self.dir.path());
        command
    }
}

impl Postgres {
    /// Stops the server and removes its directory; for a `Postgres` that is never dropped.
    pub fn shutdown(&self) {
        let _ = self.stop();
        let _ = std::fs::remove_dir_all(self.dir.path());
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// The directory of `initdb` and `postgres`: `$PG_BINDIR`, the PATH, or Debian's
/// `/usr/lib/postgresql/<version>/bin` (newest first).
pub fn find_bindir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BINDIR") {
        return Ok(PathBuf::from(dir));
    }
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .find(|dir| dir.join("initdb").is_file() && dir.join("postgres").is_file());
    // Resolve links, so the other server tools (pg_isready) are found beside initdb.
    if let Some(dir) = on_path.and_then(|dir| std::fs::canonicalize(dir.join("initdb")).ok()) {
        return dir
            .parent()
            .map(Path::to_path_buf)
            .context("initdb has no directory");
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            Some((
                entry.file_name().to_str()?.parse().ok()?,
                entry.path().join("bin"),
            ))
        })
        .filter(|(_, bin): &(u32, PathBuf)| bin.join("initdb").is_file())
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).context(
        "no PostgreSQL server binaries found: install them (Debian: apt-get install postgresql) or set PG_BINDIR",
    )
}

/// The `postgres` user Debian's package creates, else `nobody`.
fn unprivileged_user() -> Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    for wanted in ["postgres", "nobody"] {
        for line in passwd.lines() {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() > 3 && fields[0] == wanted {
                return Ok((fields[2].parse()?, fields[3].parse()?));
            }
        }
    }
    bail!("running as root and no unprivileged user (postgres or nobody) exists to run PostgreSQL")
}

/// Runs `command` (`what`, for the error); its standard output.
fn run(command: &mut Command, what: &str) -> Result<String> {
    let output = command.output().with_context(|| format!("running {what}"))?;
    if !output.status.success() {
        bail!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?)
}

fn path_with(dir: &Path) -> std::ffi::OsString {
    let mut paths = vec![dir.to_path_buf()];
    if let Some(path) = std::env::var_os("PATH") {
        paths.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(paths).unwrap_or_default()
}

/// A psql session kept open (`Postgres::session`): a transaction begun in it stays open, with
/// its locks, until the test commits it or drops the session.
pub struct Session {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Session {
    /// Runs `sql` and returns its output once psql has run all of it.
    pub fn run(&mut self, sql: &str) -> Result<String> {
        const DONE: &str = "-- session: done --";
        writeln!(self.stdin, "{sql}\nSELECT '{DONE}';")?;
        self.stdin.flush()?;
        let mut output = String::new();
        loop {
            let mut line = String::new();
            if self.stdout.read_line(&mut line)? == 0 {
                let mut error = String::new();
                if let Some(stderr) = self.child.stderr.as_mut() {
                    stderr.read_to_string(&mut error)?;
                }
                bail!("psql ended running {sql:?}: {error}");
            }
            if line.trim() == DONE {
                return Ok(output.trim().to_owned());
            }
            output.push_str(&line);
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
