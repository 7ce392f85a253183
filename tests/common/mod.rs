//! Starts the real `thinkscale` binary on the real test model, on a free port.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn model_path() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(p.exists(), "test model missing: run models/fetch.sh");
    p
}

pub struct Server {
    pub child: Child,
    pub base: String,
    pub client: reqwest::blocking::Client,
    /// Remote mode: the engine this one runs over.
    pub inner: Option<Box<Server>>,
    pub kind: Kind,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `THINKSCALE_TEST_BACKEND`: `remote` makes every test server a thinkscale running over a second
/// thinkscale process that holds the model (`serve --backend URL`); `llama-server` puts llama.cpp's
/// own server there instead (`LLAMA_SERVER` names the binary, scripts/llama-server.sh builds it).
/// The suite runs in all three modes.
pub fn remote_mode() -> bool {
    std::env::var("THINKSCALE_TEST_BACKEND").is_ok_and(|v| v == "remote" || v == "llama-server")
}

pub fn llama_server_mode() -> bool {
    std::env::var("THINKSCALE_TEST_BACKEND").is_ok_and(|v| v == "llama-server")
}

/// Whether two requests for the same greedy text get the same tokens. Over llama-server they need
/// not: its logits depend on how the requests in flight are batched and on what its prompt cache
/// holds (its documentation says so of `cache_prompt`), so tests compare separately generated
/// texts only over thinkscale's engine.
pub fn reproducible() -> bool {
    !llama_server_mode()
}

/// The process a test server is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Thinkscale,
    LlamaServer,
}

/// Flags (taking a value) that configure the engine: only the inner server of remote mode gets them.
const ENGINE_FLAGS: [&str; 4] = ["--model", "--threads", "--ctx-size", "--verifier-model"];
/// Flags (taking a value) that guard the API clients call: only the outer server gets them.
const CLIENT_FLAGS: [&str; 2] = ["--api-key", "--cors-origin"];

impl Server {
    pub fn start(extra: &[&str]) -> Server {
        if !remote_mode() {
            return Self::embedded(extra);
        }
        let (mut inner, mut outer) = (Vec::new(), Vec::new());
        let mut it = extra.iter();
        while let Some(&flag) = it.next() {
            let takes_value = !matches!(flag, "--test-hooks" | "--no-jinja");
            let value = if takes_value { it.next().copied() } else { None };
            let pair = std::iter::once(flag).chain(value);
            if ENGINE_FLAGS.contains(&flag) {
                inner.extend(pair);
            } else if CLIENT_FLAGS.contains(&flag) {
                outer.extend(pair);
            } else {
                let both: Vec<&str> = pair.collect();
                inner.extend(both.iter().copied());
                outer.extend(both);
            }
        }
        let engine = Self::replica(&inner);
        let mut s = Self::launch(&["--backend", &engine.base], &outer);
        s.inner = Some(Box::new(engine));
        s
    }

    /// A server holding the test model.
    pub fn embedded(extra: &[&str]) -> Server {
        Self::embedded_on(free_port(), extra)
    }

    fn embedded_on(port: u16, extra: &[&str]) -> Server {
        // One compute thread per server: the suite runs several servers at once on few cores, and
        // llama.cpp's threads spin at barriers, so oversubscribed cores slow every server far more
        // than their share (in CI a 200-token request took over a minute).
        let model = model_path().display().to_string();
        let mut base = vec!["--threads", "1"];
        if !extra.contains(&"--model") {
            base.extend(["--model", model.as_str()]);
        }
        Self::launch_on(port, &base, extra)
    }

    /// An engine to run remote mode over: a thinkscale holding the test model, or in llama-server
    /// mode a llama-server on it, given the flags of ours it has (model, threads, context, slots).
    pub fn replica(extra: &[&str]) -> Server {
        Self::replica_on(free_port(), extra)
    }

    pub fn replica_on(port: u16, extra: &[&str]) -> Server {
        if !llama_server_mode() {
            return Self::embedded_on(port, extra);
        }
        let flag = |name: &str| extra.iter().position(|f| *f == name).and_then(|i| extra.get(i + 1)).map(|v| v.to_string());
        let model = flag("--model").unwrap_or_else(|| model_path().display().to_string());
        let threads = flag("--threads").unwrap_or_else(|| "1".into());
        let bin = std::env::var("LLAMA_SERVER")
            .unwrap_or_else(|_| format!("{}/target/llama-server/build/bin/llama-server", env!("CARGO_MANIFEST_DIR")));
        // Served under the file's name, as thinkscale names a model (llama-server's default is the path).
        let alias = std::path::Path::new(&model).file_stem().unwrap().to_string_lossy().to_string();
        let mut cmd = Command::new(&bin);
        #[rustfmt::skip]
        cmd.args(["--host", "127.0.0.1", "--port", &port.to_string(), "-m", &model, "--alias", &alias, "-t", &threads, "-tb", &threads,
                  "-np", &flag("--parallel").unwrap_or_else(|| "8".into()),
                  "-c", &flag("--ctx-size").unwrap_or_else(|| "16384".into()), "--metrics", "--no-webui"]);
        cmd.stdout(Stdio::null());
        Self::spawn(cmd, port, Kind::LlamaServer)
    }

    /// Start `thinkscale serve` with these flags on a free port and wait for its /health.
    pub fn launch(base: &[&str], extra: &[&str]) -> Server {
        Self::launch_on(free_port(), base, extra)
    }

    pub fn launch_on(port: u16, base: &[&str], extra: &[&str]) -> Server {
        Self::spawn(Self::serve(port, base, extra), port, Kind::Thinkscale)
    }

    fn serve(port: u16, base: &[&str], extra: &[&str]) -> Command {
        let mut args = vec!["serve".to_string(), "--port".into(), port.to_string()];
        args.extend(base.iter().chain(extra).map(|s| s.to_string()));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_thinkscale"));
        cmd.args(&args).env("RUST_LOG", "warn").stdout(Stdio::null());
        cmd
    }

    /// A server holding the test model whose log (RUST_LOG = `filter`) goes to `log`.
    pub fn logging(filter: &str, log: &std::path::Path, extra: &[&str]) -> Server {
        let port = free_port();
        let model = model_path().display().to_string();
        let mut cmd = Self::serve(port, &["--threads", "1", "--model", &model], extra);
        cmd.env("RUST_LOG", filter).stdout(std::fs::File::create(log).unwrap());
        Self::spawn(cmd, port, Kind::Thinkscale)
    }

    /// The server on the test model run under QEMU's user-mode emulation of `cpu` (`Haswell`,
    /// `Nehalem`): what a host with only that CPU's instruction sets runs. Emulated code is tens of
    /// times slower, so start-up gets ten minutes.
    pub fn emulated(cpu: &str, extra: &[&str]) -> Server {
        let port = free_port();
        let model = model_path().display().to_string();
        let serve = Self::serve(port, &["--threads", "1", "--model", &model, "--parallel", "1"], extra);
        let mut cmd = Command::new("qemu-x86_64");
        cmd.args(["-cpu", cpu]).arg(serve.get_program()).args(serve.get_args()).env("RUST_LOG", "warn").stdout(Stdio::null());
        Self::spawn_within(cmd, port, Kind::Thinkscale, Duration::from_secs(600))
    }

    fn spawn(cmd: Command, port: u16, kind: Kind) -> Server {
        Self::spawn_within(cmd, port, kind, Duration::from_secs(90))
    }

    fn spawn_within(mut cmd: Command, port: u16, kind: Kind, startup: Duration) -> Server {
        // A server shared through a static is never dropped: let the kernel end it with the tests.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        // llama-server logs every request: its output goes to a file, for a failure's investigation.
        let stderr = match kind {
            Kind::LlamaServer => {
                let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/llama-server/logs");
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::File::create(dir.join(format!("{port}.log"))).unwrap().into()
            }
            Kind::Thinkscale => Stdio::inherit(),
        };
        let child = cmd
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {:?}: {e} (llama-server mode: run scripts/llama-server.sh)", cmd.get_program()));
        let s = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::blocking::Client::builder().timeout(Duration::from_secs(300)).build().unwrap(),
            inner: None,
            kind,
        };
        let deadline = Instant::now() + startup;
        loop {
            if let Ok(r) = s.client.get(format!("{}/health", s.base)).send() {
                if r.status() == 200 {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "server did not become healthy");
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    /// Start a server owned by a thread that lives as long as the test process: the kernel's
    /// parent-death signal follows the spawning thread, not the process.
    pub fn start_shared() -> Server {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            tx.send(Server::start(&[])).unwrap();
            loop {
                std::thread::park();
            }
        });
        rx.recv().unwrap()
    }

    /// The server holding the model: this one, or in remote mode the engine under it (its
    /// KV cache and decode metrics are the engine's).
    pub fn engine(&self) -> &Server {
        self.inner.as_deref().unwrap_or(self)
    }

    /// Wait until the engine decodes nothing: stopped or cancelled sequences are released (over
    /// a remote engine, once it sees their streams closed).
    pub fn wait_engine_idle(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.engine().metric("thinkscale_active_sequences") != 0.0 {
            assert!(Instant::now() < deadline, "stopped sequences still decoding");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self.client.post(self.url(path)).json(body).send().unwrap();
        let status = r.status().as_u16();
        let text = r.text().unwrap();
        (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}")))
    }

    pub fn post_raw(&self, path: &str, body: Vec<u8>) -> (u16, Value) {
        let r = self.client.post(self.url(path)).header("content-type", "application/json").body(body).send().unwrap();
        let status = r.status().as_u16();
        let text = r.text().unwrap();
        (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}")))
    }

    pub fn chat(&self, body: &Value) -> Value {
        let (status, v) = self.post("/v1/chat/completions", body);
        assert_eq!(status, 200, "{v}");
        v
    }

    /// Stream a request and return every `data:` payload before `[DONE]` (asserting it came).
    pub fn stream(&self, path: &str, body: &Value) -> Vec<Value> {
        let r = self.client.post(self.url(path)).json(body).send().unwrap();
        assert_eq!(r.status(), 200);
        let mut out = Vec::new();
        let mut done = false;
        for line in BufReader::new(r).lines() {
            let line = line.unwrap();
            if let Some(data) = line.strip_prefix("data: ") {
                assert!(!done, "data after [DONE]");
                if data == "[DONE]" {
                    done = true;
                } else {
                    out.push(serde_json::from_str(data).unwrap());
                }
            }
        }
        assert!(done, "stream ended without [DONE]");
        out
    }

    pub fn metrics(&self) -> String {
        self.client.get(self.url("/metrics")).send().unwrap().text().unwrap()
    }

    /// Whether the engine under this server is thinkscale's own (tests of what it does inside —
    /// one prefill shared by forks, KV cells freed — have nothing to check on llama-server).
    pub fn engine_is_thinkscale(&self) -> bool {
        self.engine().kind == Kind::Thinkscale
    }

    /// Value of a metric line such as `thinkscale_active_sequences` (on llama-server, its own name
    /// for the same figure).
    pub fn metric(&self, name: &str) -> f64 {
        let name = match (self.kind, name) {
            (Kind::Thinkscale, n) => n,
            (Kind::LlamaServer, "thinkscale_active_sequences") => "llamacpp:requests_processing",
            (Kind::LlamaServer, n) => panic!("llama-server has no metric for {n}"),
        };
        self.metrics()
            .lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("metric {name} missing"))
    }

    /// Send SIGTERM and return the exit code.
    pub fn terminate(&mut self) -> i32 {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.exit_code(Duration::from_secs(60))
    }

    /// Wait for the process to exit on its own and return its exit code.
    pub fn exit_code(&mut self, within: Duration) -> i32 {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "server did not exit within {within:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Concatenated `delta.<field>` of choice `index` in chat chunks.
pub fn joined(chunks: &[Value], index: u64, field: &str) -> String {
    chunks
        .iter()
        .flat_map(|c| c["choices"].as_array().cloned().unwrap_or_default())
        .filter(|c| c["index"] == index)
        .filter_map(|c| c["delta"][field].as_str().map(str::to_string))
        .collect()
}

/// Assert the OpenAI error shape.
pub fn assert_error(v: &Value) {
    let e = &v["error"];
    assert!(e["message"].is_string(), "{v}");
    assert!(e["type"].is_string(), "{v}");
    assert!(e.get("param").is_some() && e.get("code").is_some(), "{v}");
}

pub fn read_all(mut r: impl Read) -> String {
    let mut s = String::new();
    r.read_to_string(&mut s).unwrap();
    s
}

/// Assert two `usage` objects count the same tokens. The cached share of the prompt may differ:
/// it depends on what the server's slots held when each request came.
pub fn assert_same_usage(a: &Value, b: &Value) {
    let counts = |u: &Value| {
        let mut u = u.clone();
        u.as_object_mut().expect("usage is an object").remove("prompt_tokens_details");
        u
    };
    assert_eq!(counts(a), counts(b));
}
