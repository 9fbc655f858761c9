"""The servers under test, each a process of its own started and stopped by the run: the app
and the floor on a Spin-compatible runtime (devhost by default, or any `up`-compatible command:
`CMD --from FILE --listen ADDR`, e.g. `spin up`), and the native baseline (bench/native)."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time
import tomllib
from pathlib import Path

from .client import http_request
from .common import BENCH, ROOT, die_with_parent, free_port

DEVHOST = Path(os.environ.get("DEVHOST_BIN", ROOT / "target/release/devhost"))
NATIVE = Path(os.environ.get("BENCH_NATIVE_BIN", ROOT / "target/release/bench-native"))
APP_MANIFEST = ROOT / "spin.toml"
FLOOR_MANIFEST = BENCH / "floor" / "spin.toml"
# The floor's writes with their notification rows, installed in its database for --floor outbox.
FLOOR_OUTBOX_SQL = BENCH / "floor" / "outbox.sql"



class Server:
    """A process in a session of its own (a runtime may start children), its output in a log
    file, ready once it answers HTTP on its port."""

    def __init__(self, name: str, command: list, env: dict, logdir: Path, port: int):
        self.name = name
        self.base_url = f"http://127.0.0.1:{port}"
        self.log_path = logdir / f"{name}-{int(time.time() * 1000)}.log"
        self.started = time.monotonic()
        with open(self.log_path, "w") as log_file:
            self.process = subprocess.Popen([str(c) for c in command], cwd=ROOT, env=env, stdout=log_file,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True, preexec_fn=die_with_parent())

    def wait_until(self, path: str, token: str | None = None, status: int | None = None, limit_s: float = 120):
        """Polls `path` until it answers (with `status` when given); the time since launch in ms."""
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log()}")
            if time.monotonic() - self.started > limit_s:
                self.stop()
                raise RuntimeError(f"{self.name} did not answer within {limit_s} s:\n{self.log()}")
            try:
                answered, _, _ = http_request(self.base_url, "GET", path, token, timeout=5)
            except OSError:
                time.sleep(0.001)
                continue
            if status is None or answered == status:
                return round((time.monotonic() - self.started) * 1000, 1)
            time.sleep(0.001)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    @property
    def pid(self) -> int:
        return self.process.pid

    def reset_peak_rss(self) -> None:
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        except OSError:
            pass

    def peak_rss_mib(self) -> float | None:
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
        except OSError:
            return None
        return None

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *_) -> None:
        self.stop()


def spin_variables(manifest: Path, values: dict) -> dict:
    """SPIN_VARIABLE_* for the variables the manifest declares; fails on a required one we lack."""
    declared = tomllib.loads(manifest.read_text()).get("variables", {})
    missing = [name for name, spec in declared.items() if spec.get("required") and name not in values]
    if missing:
        raise RuntimeError(f"{manifest.relative_to(ROOT)} requires variables the bench cannot set: {missing}")
    return {f"SPIN_VARIABLE_{name.upper()}": values[name] for name in declared if name in values}


class Runtime:
    """How the app and the floor are started: devhost, or an `up`-compatible command."""

    def __init__(self, command: str | None, trap_empty_queries: bool):
        self.command = shlex.split(command) if command else [str(DEVHOST)]
        self.description = command or "devhost"
        # devhost's own flag (--no-cache, for a cold start without a cache) only where it is devhost.
        self.is_devhost = Path(self.command[0]).name == "devhost"
        self.trap_empty_queries = trap_empty_queries

    def check(self) -> None:
        program = self.command[0]
        if not (Path(program).is_file() or shutil.which(program)):
            hint = "run scripts/build (bench/run does)" if program == str(DEVHOST) else "check --runtime"
            raise SystemExit(f"{program} is missing: {hint}")

    def env(self, manifest: Path, variables: dict) -> dict:
        env = dict(os.environ, **spin_variables(manifest, variables))
        if self.trap_empty_queries:
            env["DEVHOST_EMPTY_QUERY_TRAP"] = "1"
        return env

    def launch(self, name: str, manifest: Path, env: dict, logdir: Path, *extra: str) -> Server:
        port = free_port()
        return Server(name, [*self.command, "--from", manifest, "--listen", f"127.0.0.1:{port}", *extra], env,
                      logdir, port)

    def start(self, name: str, manifest: Path, variables: dict, logdir: Path) -> Server:
        env = self.env(manifest, variables)
        env["DEVHOST_CACHE_DIR"] = str(ROOT / "target/bench-devhost-cache")
        server = self.launch(name, manifest, env, logdir)
        server.wait_until("/.well-known/spin/health")
        return server

    def cold_start(self, manifest: Path, variables: dict, token: str, logdir: Path, cache_dir: Path | None,
                   runs: int) -> list[float]:
        """Launch to the first 200 of GET /events?limit=1, `runs` times; without a cache dir,
        with devhost's --no-cache."""
        env = self.env(manifest, variables)
        extra = []
        if cache_dir is None:
            extra.append("--no-cache")
        else:
            env["DEVHOST_CACHE_DIR"] = str(cache_dir)
        times = []
        for _ in range(runs):
            with self.launch("cold-start", manifest, env, logdir, *extra) as server:
                times.append(server.wait_until("/events?limit=1", token, status=200, limit_s=60))
        return times


def start_native(database_url: str, token: str, spin_pool: bool, logdir: Path) -> Server:
    if not NATIVE.is_file():
        raise SystemExit(f"{NATIVE} is missing: run cargo build --release -p bench-native (bench/run does)")
    env = dict(os.environ, DATABASE_URL=database_url, API_TOKEN=token,
               BENCH_NATIVE_POOL="spin" if spin_pool else "fast")
    port = free_port()
    server = Server("native-spinpool" if spin_pool else "native", [NATIVE, "--listen", f"127.0.0.1:{port}"], env,
                    logdir, port)
    server.wait_until("/events?limit=1", token, status=200)
    return server


def wasm_sizes() -> dict:
    """The size of each component's .wasm, app and floor."""
    sizes = {}
    for manifest in (APP_MANIFEST, FLOOR_MANIFEST):
        for component, spec in tomllib.loads(manifest.read_text()).get("component", {}).items():
            source = manifest.parent / spec.get("source", "")
            sizes[component] = source.stat().st_size if source.is_file() else None
    return sizes
