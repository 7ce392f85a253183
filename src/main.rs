//! thinkscale: an OpenAI-compatible GGUF server that makes test-time compute a per-request knob.

use std::sync::Arc;

use clap::{Parser, Subcommand};

use thinkscale::api::router;
use thinkscale::backend::embedded::engine::Engine;
use thinkscale::config::{Config, ServeArgs};
use thinkscale::service::Service;

#[derive(Parser)]
#[command(
    name = "thinkscale",
    version,
    about = "OpenAI-compatible llama.cpp server with per-request thinking budgets, self-consistency and verifiers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a GGUF model over the OpenAI API
    Serve(ServeArgs),
    /// Measure accuracy against thinking budget and samples on any OpenAI-compatible server
    #[command(subcommand)]
    Eval(thinkscale::eval::EvalCommand),
    /// Bare llama-cpp-2 decode loop (no HTTP): the ceiling the server is measured against
    BenchCeiling(CeilingCli),
}

#[derive(clap::Args)]
struct CeilingCli {
    #[arg(long, default_value = "models/SmolLM2-135M-Instruct.Q4_1.gguf")]
    model: std::path::PathBuf,
    #[arg(long, value_delimiter = ',', default_value = "1,4,8,16")]
    seqs: Vec<usize>,
    /// Tokens generated per sequence (end-of-generation is banned so every run is this long)
    #[arg(long, default_value_t = 128)]
    tokens: usize,
    #[arg(long, default_value = "Write a story about a robot who learns to paint.")]
    prompt: String,
    #[arg(long, default_value_t = 16384)]
    ctx_size: u32,
    #[arg(long, default_value_t = 16)]
    parallel: u32,
    #[arg(long)]
    threads: Option<i32>,
    #[arg(long, default_value_t = 512)]
    batch_size: u32,
    #[arg(long)]
    gpu_layers: Option<u32>,
    /// KV cache element type, as `serve --cache-type`
    #[arg(long, value_enum, env = "THINKSCALE_CACHE_TYPE", default_value = "q8_0")]
    cache_type: thinkscale::config::CacheType,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The log starts once the command is known: serve's config may name an OTLP collector. The
    // guard is held to the end: dropping it flushes the last spans.
    match cli.command {
        Command::Serve(args) => {
            let cfg = Config::load(&args)?;
            let _telemetry = thinkscale::telemetry::init(cfg.otlp_endpoint.as_deref())?;
            serve(cfg)
        }
        Command::Eval(cmd) => {
            let _telemetry = thinkscale::telemetry::init(None)?;
            thinkscale::eval::main(cmd)
        }
        Command::BenchCeiling(c) => {
            let _telemetry = thinkscale::telemetry::init(None)?;
            let threads = c.threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get() as i32).unwrap_or(4));
            let rows = thinkscale::backend::embedded::engine::ceiling::run(&thinkscale::backend::embedded::engine::ceiling::CeilingArgs {
                model: &c.model,
                gpu_layers: c.gpu_layers,
                prompt: &c.prompt,
                seqs: &c.seqs,
                tokens: c.tokens,
                ctx_size: c.ctx_size,
                parallel: c.parallel,
                threads,
                n_batch: c.batch_size,
                cache: c.cache_type,
            })?;
            println!("{}", serde_json::to_string_pretty(&rows)?);
            Ok(())
        }
    }
}

/// libgomp reads its wait policy once, as the process loads: to apply the configured one, run
/// this binary again with it in the environment (the same process id, so supervisors see nothing).
/// A policy the operator set in the environment is left alone.
#[cfg(unix)]
fn apply_cpu_wait(cfg: &Config) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let Some((key, value)) = cfg.cpu_wait.omp_env() else { return Ok(()) };
    if std::env::var_os("OMP_WAIT_POLICY").is_some() || std::env::var_os("GOMP_SPINCOUNT").is_some() {
        return Ok(());
    }
    let err = std::process::Command::new(std::env::current_exe()?).args(std::env::args_os().skip(1)).env(key, value).exec();
    Err(anyhow::anyhow!("re-running with {key}={value}: {err}"))
}

#[cfg(not(unix))]
fn apply_cpu_wait(_: &Config) -> anyhow::Result<()> {
    Ok(())
}

fn serve(cfg: Config) -> anyhow::Result<()> {
    if !cfg.backends.is_empty() {
        return serve_remote(cfg);
    }
    let cfg = Arc::new(cfg);
    apply_cpu_wait(&cfg)?;
    if !cfg.model.exists() {
        anyhow::bail!("model file {} not found; fetch the default model with `models/fetch.sh` or pass --model PATH", cfg.model.display());
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let state = Service::new(cfg.clone())?.with_code_exec().await?;
        let addr = format!("{}:{}", cfg.host, cfg.port);
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        tracing::info!(%addr, model = %cfg.model.display(), "listening; loading model");
        // Load in the background so /health can answer 503 while it happens. A model that fails
        // to load stops the server with an error (as llama-server does) rather than leaving it
        // answering 503 as if still loading.
        let failed = Arc::new(tokio::sync::Notify::new());
        let (st, c, f) = (state.clone(), cfg.clone(), failed.clone());
        // Loads the model, then watches the engine thread until it ends: at shutdown once the
        // queue closes, or early when it fails (a panic), which stops the server with an error
        // so an orchestrator restarts it.
        let loader = tokio::task::spawn_blocking(move || match Engine::start(&c) {
            Ok((engine, handle)) => {
                tracing::info!(
                    n_ctx = engine.n_ctx, parallel = engine.parallel, gpu_layers = engine.model.gpu_layers,
                    devices = ?thinkscale::backend::embedded::engine::model::devices(), thinking_markers = ?engine.model.think_markers,
                    "model ready"
                );
                let failure = st.engine_failure.clone();
                report_engine_panic(failure.clone());
                let _ = st.backend.set(Arc::new(engine));
                // This thread must not keep the engine's queue open: the engine ends when it closes.
                drop(st);
                thinkscale::metrics::metrics().engine_up.set(1);
                let joined = handle.join();
                thinkscale::metrics::metrics().engine_up.set(0);
                match joined {
                    Ok(()) => Ok(()),
                    Err(payload) => {
                        let reason = failure.get().cloned().unwrap_or_else(|| engine_failed(&*payload));
                        tracing::error!(%reason, "stopping: in-flight requests were answered with an error");
                        // /health says why for a moment before the server goes.
                        std::thread::sleep(std::time::Duration::from_secs(2));
                        f.notify_one();
                        Err(anyhow::anyhow!(reason))
                    }
                }
            }
            Err(e) => {
                f.notify_one();
                Err(e.context("model failed to load"))
            }
        });
        let stop = async move {
            tokio::select! { _ = shutdown_signal() => {}, _ = failed.notified() => {} }
        };
        axum::serve(listener, router(state.clone())).with_graceful_shutdown(stop).await?;
        tracing::info!("HTTP server drained; stopping the engine");
        // Dropping the last Engine handle closes the queue; the loop finishes in-flight work and
        // exits, and the loader's watch returns.
        drop(state);
        loader.await??;
        anyhow::Ok(())
    })
}

/// Records a panic on the engine thread as it starts, before the default hook prints its
/// backtrace: symbolizing one can take a second, and until the thread has unwound /health would
/// still call the engine up.
fn report_engine_panic(failure: Arc<std::sync::OnceLock<String>>) {
    let print = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().name() == Some(thinkscale::backend::embedded::engine::THREAD) {
            let _ = failure.set(engine_failed(info.payload()));
            thinkscale::metrics::metrics().engine_up.set(0);
        }
        print(info);
    }));
}

fn engine_failed(payload: &(dyn std::any::Any + Send)) -> String {
    let what = payload.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| payload.downcast_ref::<String>().cloned());
    format!("the engine failed: {}", what.as_deref().unwrap_or("unknown panic"))
}

/// `serve --backend URL...`: test-time compute over remote engines; no model is loaded here.
fn serve_remote(mut cfg: Config) -> anyhow::Result<()> {
    anyhow::ensure!(
        cfg.reasoning.verifier_model.is_none(),
        "--verifier-model needs the embedded engine; it cannot be combined with --backend"
    );
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let remote = thinkscale::backend::remote::Remote::connect(&cfg).await?;
        // Clients ask for the engines' model unless an alias was given.
        cfg.model_alias.get_or_insert_with(|| remote.model().to_string());
        let cfg = Arc::new(cfg);
        let state = Service::new(cfg.clone())?.with_code_exec().await?;
        let _ = state.backend.set(Arc::new(remote));
        thinkscale::metrics::metrics().engine_up.set(1);
        let addr = format!("{}:{}", cfg.host, cfg.port);
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        tracing::info!(%addr, backends = ?cfg.backends, model = %cfg.model_id(), "listening");
        axum::serve(listener, router(state)).with_graceful_shutdown(shutdown_signal()).await?;
        anyhow::Ok(())
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutdown signal received: refusing new connections, finishing in-flight requests");
}
