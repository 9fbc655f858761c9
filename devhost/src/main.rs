//! devhost: runs this app's Spin components from `spin.toml` on wasmtime, like `spin up`, for
//! the end-to-end tests, the benchmark and the local run without a Spin CLI. See README.md.

mod app;
mod body;
mod cache;
mod engine;
mod host;
mod manifest;
mod outbound;
mod outgoing_http;
mod postgres;
mod router;
mod server;
mod spin_variables;
mod stdio;
mod variables;

#[cfg(test)]
mod vendored_wit_tests;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;

use crate::app::{App, LoadOptions};
use crate::engine::InstanceAllocator;
use crate::manifest::Manifest;
use crate::router::Router;
use crate::server::Server;

#[derive(Parser)]
#[command(
    version,
    about = "Runs the Spin components of a spin.toml on wasmtime, like `spin up`"
)]
struct Cli {
    /// The Spin manifest.
    #[arg(short = 'f', long = "from", default_value = "spin.toml")]
    manifest: PathBuf,
    /// Address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: String,
    /// Serve only this component (repeatable), like `spin up --component-id`.
    #[arg(short = 'c', long = "component-id")]
    component_ids: Vec<String>,
    /// Directory for compiled components (defaults to $XDG_CACHE_HOME/devhost or ~/.cache/devhost).
    #[arg(long, env = "DEVHOST_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Compile the components on every start instead of using the cache.
    #[arg(long)]
    no_cache: bool,
    /// How instances get their memory: `pooling` (slots reserved up front; falls back to
    /// `on-demand` where the system refuses the reservation) or `on-demand`. Either way a linear
    /// memory may grow to 256 MiB.
    #[arg(long, env = "DEVHOST_INSTANCE_ALLOCATOR", value_enum, default_value_t = InstanceAllocator::Pooling)]
    instance_allocator: InstanceAllocator,
    /// Trap the instance when a PostgreSQL query returns no rows, naming the statement: Spin
    /// 4.0.0-4.0.2 never answer such a query (spinframework/spin issue #3671), so an app that
    /// runs there must not issue one. Off by default, which is Spin 3.6's behaviour.
    #[arg(long, env = "DEVHOST_EMPTY_QUERY_TRAP", value_parser = clap::builder::BoolishValueParser::new())]
    empty_query_trap: bool,
}

fn main() {
    if let Err(error) = run(Cli::parse()) {
        eprintln!("Error: {error:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let manifest = Manifest::load(&cli.manifest)?;
    let cache_dir = if cli.no_cache {
        None
    } else {
        cli.cache_dir.or_else(default_cache_dir)
    };
    let app = App::load(
        &manifest,
        &LoadOptions {
            manifest_path: &cli.manifest,
            component_ids: &cli.component_ids,
            cache_dir,
            allocator: cli.instance_allocator,
            trap_empty_queries: cli.empty_query_trap,
        },
    )?;
    let router = Router::build(&manifest.trigger.http, |id| app.component(id).is_some())?;
    // One worker thread unless TOKIO_WORKER_THREADS says otherwise. Every request maps fresh
    // pages into a pooled instance slot and returns them (copy-on-write faults, madvise), and
    // each of those flushes the TLB of every CPU running another devhost thread, by IPI.
    // Measured with wrk on 2 CPUs: one thread serves GET /events/{id} ~1.5x faster.
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        runtime.worker_threads(1);
    }
    let runtime = runtime.enable_all().build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&cli.listen)
            .await
            .with_context(|| format!("cannot listen on {}", cli.listen))?;
        let base_url = format!("http://{}", listener.local_addr()?);
        println!("\nServing {base_url}");
        println!("Available Routes:");
        for (component, route) in router.routes() {
            println!("  {component}: {base_url}{route}");
        }
        let server = Arc::new(Server::new(Arc::new(app), router));
        tokio::select! {
            result = server.serve(listener) => result,
            _ = shutdown_signal() => Ok(()),
        }
    })?;
    // Instances may still be streaming bodies; they are not waited for.
    runtime.shutdown_background();
    Ok(())
}

async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("devhost"))
}
