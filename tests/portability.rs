//! One build runs on every x86-64 CPU: the server binary, started under QEMU's emulation of an
//! AVX2-only CPU (Haswell) and of an SSE4.2-only one (Nehalem, no AVX at all), picks the llama.cpp
//! CPU variant for that CPU, passes its start-up warm-up decode, and answers a chat request. Code
//! built for this machine's AVX-512 would die there with SIGILL (QEMU 7.2 emulates AVX2, not
//! AVX-512). One short request per CPU: emulation is slow.

mod common;

use common::Server;
use serde_json::json;

fn answers_on(cpu: &str, variant: &str) {
    let s = Server::emulated(cpu, &[]);
    let health: serde_json::Value = s.client.get(s.url("/health")).send().unwrap().json().unwrap();
    assert_eq!(health["cpu"]["variant"], variant, "{cpu}: {health}");
    let features = health["cpu"]["features"].as_array().unwrap();
    assert!(!features.iter().any(|f| f.as_str().unwrap().starts_with("AMX")), "{features:?}");
    let r = s.chat(&json!({
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "max_tokens": 12, "temperature": 0
    }));
    let text = r["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(text.contains("Paris"), "{cpu}: {text:?}");
}

#[test]
fn runs_on_an_avx2_cpu() {
    answers_on("Haswell", "haswell");
}

#[test]
fn runs_on_an_sse42_cpu() {
    answers_on("Nehalem", "sse42");
}

/// The start-up log names the CPU variant; a fatal signal inside a decode (what a faulting kernel
/// does) leaves a last line saying what the engine was running, and the process dies of it, for
/// an orchestrator to restart.
#[test]
fn a_fatal_signal_in_a_decode_is_logged_and_ends_the_process() {
    use std::os::unix::process::ExitStatusExt;
    let dir = std::env::temp_dir().join(format!("thinkscale-signal-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (out, err) = (dir.join("stdout.log"), dir.join("stderr.log"));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_thinkscale"));
    // No core file from the signal this test causes.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            let none = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            libc::setrlimit(libc::RLIMIT_CORE, &none);
            Ok(())
        });
    }
    let mut child = cmd
        .args(["serve", "--test-hooks", "--threads", "1", "--port", &port.to_string(), "--model"])
        .arg(common::model_path())
        .env("RUST_LOG", "info")
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::blocking::Client::builder().timeout(std::time::Duration::from_secs(60)).build().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while !client.get(format!("{base}/health")).send().is_ok_and(|r| r.status() == 200) {
        assert!(std::time::Instant::now() < deadline, "server did not become healthy");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let health: serde_json::Value = client.get(format!("{base}/health")).send().unwrap().json().unwrap();
    let variant = health["cpu"]["variant"].as_str().unwrap().to_string();
    let log = std::fs::read_to_string(&out).unwrap();
    let line = log.lines().find(|l| l.contains("llama.cpp CPU backend")).unwrap_or_else(|| panic!("no CPU backend line in {log}"));
    assert!(line.contains(&format!("variant={variant}")) && line.contains("features="), "{line}");
    assert_eq!(client.post(format!("{base}/debug/engine-signal")).json(&json!({})).send().unwrap().status(), 200);
    // The request's decode raises the signal; the connection then drops with the process.
    let _ = client
        .post(format!("{base}/v1/chat/completions"))
        .json(&json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}))
        .send();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGSEGV), "{status:?}");
    let stderr = std::fs::read_to_string(&err).unwrap();
    assert!(stderr.contains("fatal signal SIGSEGV while the engine was decoding a batch of"), "{stderr}");
    assert!(stderr.contains(&format!("llama.cpp CPU backend: {variant}")), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
