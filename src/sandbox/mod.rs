//! Untrusted code — programs a model wrote, tests a client sent — runs only here: a child process
//! in its own session and process group, inside bubblewrap's namespaces (no network, its own PID
//! space, only the interpreter's files read-only and a fresh working directory writable: a tmpfs
//! of a fixed size, so a program fills its own small space, never the host's disk), under a
//! seccomp filter (`seccomp.rs`), rlimits on CPU seconds, memory, processes, file size and open
//! files, with a wall-clock limit that kills the whole group, capped output, and a cap on how many
//! run at once.
//!
//! Without `bwrap` (apt-get install bubblewrap) or without user namespaces, `Sandbox::new` fails
//! with what is missing: there is no fallback to running code unisolated.

mod cgroup;
pub mod harness;
mod seccomp;

pub use cgroup::CgroupMode;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

/// Languages the sandbox runs. One today; a language is an interpreter found at start-up and the
/// files it needs bound read-only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    Python,
}

impl Language {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Python => "python",
        }
    }
}

/// What one run may use.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    pub cpu_seconds: u64,
    pub memory_mb: u64,
    /// Processes (and threads) at once in one run.
    pub processes: u64,
    pub file_size_mb: u64,
    /// The writable working directory's size (a tmpfs): everything a run writes, together.
    pub disk_mb: u64,
    pub open_files: u64,
    pub wall_seconds: f64,
    /// Bytes kept of stdout and of stderr; a run that writes more is killed.
    pub output_bytes: usize,
    /// Runs at once; more wait their turn.
    pub concurrency: usize,
    /// cgroup v2 limits for the whole run (`pids.max`, `memory.max`) where the host offers them.
    pub cgroup: CgroupMode,
    /// A delegated cgroup v2 group, holding no process, to make runs' groups under; unset: the
    /// server's own group (it moves itself into a `server` leaf of it).
    pub cgroup_parent: Option<PathBuf>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            cpu_seconds: 10,
            memory_mb: 512,
            processes: 16,
            file_size_mb: 16,
            disk_mb: 64,
            open_files: 64,
            wall_seconds: 10.0,
            output_bytes: 1 << 20,
            concurrency: std::thread::available_parallelism().map_or(2, |n| n.get()),
            cgroup: CgroupMode::Auto,
            cgroup_parent: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("code execution needs bubblewrap's `bwrap` on PATH (apt-get install bubblewrap); no code runs without isolation")]
    NoBwrap,
    #[error("the {0} interpreter was not found: {1}")]
    NoInterpreter(&'static str, String),
    #[error("the sandbox does not start on this machine ({0}); bubblewrap needs unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1 or user.max_user_namespaces > 0)")]
    Broken(String),
    #[error("cgroup limits are required ([sandbox] cgroup = \"required\") but unavailable: {0}")]
    NoCgroup(#[from] cgroup::NoCgroup),
    #[error("running the sandbox: {0}")]
    Io(#[from] std::io::Error),
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Exited with this code.
    Exited(i32),
    /// Killed by this signal (the CPU limit is SIGKILL/SIGXCPU, the memory limit often SIGKILL).
    Signalled(i32),
    /// Ran past the wall-clock limit; the whole group was killed.
    TimedOut,
    /// Wrote more than the output cap; the whole group was killed.
    OutputLimit,
}

/// A finished run.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub status: RunStatus,
    pub stdout: String,
    pub stderr: String,
    pub seconds: f64,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.status == RunStatus::Exited(0)
    }
}

/// A program to run: files written into its fresh working directory, the one to run, its stdin.
#[derive(Debug, Clone, Default)]
pub struct Program {
    pub files: Vec<(String, String)>,
    pub main: String,
    pub stdin: String,
}

/// The sandbox a server (or the harness) runs code in.
pub struct Sandbox {
    pub language: Language,
    pub limits: Limits,
    bwrap: PathBuf,
    interpreter: PathBuf,
    /// Read-only binds beside /usr: the interpreter's install when it lives elsewhere.
    binds: Vec<PathBuf>,
    /// The compiled seccomp filters (`seccomp.rs`).
    filters: Vec<Vec<u8>>,
    /// Where runs' cgroups go, or why runs have rlimits only.
    cgroup: Result<cgroup::Parent, cgroup::NoCgroup>,
    permits: Arc<Semaphore>,
}

/// Run as root, each run drops to a uid of its own from this range: RLIMIT_NPROC never binds
/// root, and counts every process of a uid, so runs sharing one would share one process budget.
const UID_BASE: u32 = 0x4000_0000;
static NEXT_UID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl Sandbox {
    /// Finds bwrap and the interpreter, then runs a trivial program to prove isolation works here.
    pub async fn new(language: Language, limits: Limits) -> Result<Self, SandboxError> {
        let bwrap = which("bwrap").ok_or(SandboxError::NoBwrap)?;
        let (interpreter, binds) = match language {
            Language::Python => python()?,
        };
        let permits = Arc::new(Semaphore::new(limits.concurrency.max(1)));
        let filters = seccomp::programs().map_err(|e| SandboxError::Broken(format!("compiling the seccomp filter: {e}")))?;
        let cgroup = match limits.cgroup {
            CgroupMode::Off => Err(cgroup::NoCgroup::Off),
            CgroupMode::Auto | CgroupMode::Required => cgroup::Parent::set_up(limits.cgroup_parent.as_deref()),
        };
        let cgroup = match (limits.cgroup, cgroup) {
            (CgroupMode::Required, Err(why)) => return Err(why.into()),
            (_, c) => c,
        };
        let mut sb = Self { language, limits, bwrap, interpreter, binds, filters, cgroup, permits };
        let mut trouble = sb.probe().await;
        if let (Some(why), CgroupMode::Auto, Ok(_)) = (&trouble, sb.limits.cgroup, &sb.cgroup) {
            // A host whose cgroups look usable but are not: rlimits only, said in the log.
            sb.cgroup = Err(cgroup::NoCgroup::ProbeFailed(why.clone()));
            trouble = sb.probe().await;
        }
        match trouble {
            Some(why) => Err(SandboxError::Broken(why)),
            None => Ok(sb),
        }
    }

    /// Runs a trivial program; what went wrong, if it did not print its answer.
    async fn probe(&self) -> Option<String> {
        let probe = Program { main: "main.py".into(), files: vec![("main.py".into(), "print(6 * 7)".into())], stdin: String::new() };
        match self.run(&probe).await {
            Ok(run) if run.ok() && run.stdout.trim() == "42" => None,
            Ok(run) => Some(format!("{:?}: {}", run.status, run.stderr.trim())),
            Err(e) => Some(e.to_string()),
        }
    }

    /// What contains a run, for the start-up log.
    pub fn guards(&self) -> String {
        format!(
            "bubblewrap namespaces (user, pid, net, ipc, uts, mount); seccomp deny-list of {} syscalls and namespace flags on clone; \
             a {} MB tmpfs as the only writable place; per-process rlimits (cpu, address space, processes, file size, open files); {}",
            seccomp::DENIED_COUNT,
            self.limits.disk_mb,
            match &self.cgroup {
                Ok(p) => p.describe(self.limits.processes, self.limits.memory_mb),
                Err(why) => format!("no cgroup limits: {why}"),
            }
        )
    }

    /// Runs a program to its end or its limits. Errors only when the machine cannot start it;
    /// whatever the program does is in the returned `Run`.
    // Long on purpose: one sequence of steps on one child (write files, build the bwrap command,
    // spawn, read capped output, enforce the wall clock, reap), each the next's precondition.
    pub async fn run(&self, program: &Program) -> Result<Run, SandboxError> {
        let _permit = self.permits.acquire().await.map_err(|_| SandboxError::Broken("closed".into()))?;
        let dir = WorkDir::new()?;
        for (name, text) in &program.files {
            // Names are ours, never a client's; refuse anything that is not a plain file name.
            if name.contains('/') || name.starts_with('.') {
                return Err(SandboxError::Broken(format!("bad file name {name:?}")));
            }
            std::fs::write(dir.0.join(name), text)?;
        }
        let as_root = unsafe { libc::geteuid() } == 0;
        let uid = UID_BASE + NEXT_UID.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 0x10000;
        if as_root {
            chown_tree(&dir.0, uid)?;
        }
        let mb = 1024 * 1024;
        let group = match &self.cgroup {
            Ok(parent) => {
                Some(parent.run_group(&format!("run-{}", uuid::Uuid::new_v4()), self.limits.processes, self.limits.memory_mb * mb)?)
            }
            Err(_) => None,
        };
        let join = group.as_ref().map(|g| g.procs.clone());
        let mut cmd = tokio::process::Command::new(&self.bwrap);
        cmd.args(["--unshare-all", "--die-with-parent", "--new-session", "--ro-bind", "/usr", "/usr"]);
        for top in ["bin", "lib", "lib64", "sbin"] {
            let p = Path::new("/").join(top);
            match std::fs::read_link(&p) {
                Ok(target) => cmd.arg("--symlink").arg(target).arg(&p),
                Err(_) if p.is_dir() => cmd.arg("--ro-bind").arg(&p).arg(&p),
                Err(_) => continue,
            };
        }
        for b in &self.binds {
            cmd.arg("--ro-bind").arg(b).arg(b);
        }
        // The root bwrap builds is a tmpfs, remounted read-only: the working directory, a tmpfs of
        // `disk_mb`, is the only place a program writes (no /tmp). Our files are bound into it
        // read-only from the host directory.
        cmd.args(["--proc", "/proc", "--dev", "/dev", "--size"])
            .arg((self.limits.disk_mb * 1024 * 1024).to_string())
            .args(["--tmpfs", "/sandbox"]);
        for (name, _) in &program.files {
            cmd.arg("--ro-bind").arg(dir.0.join(name)).arg(Path::new("/sandbox").join(name));
        }
        let filters = self.filters.iter().map(|f| seccomp::memfd(f)).collect::<Result<Vec<_>, _>>()?;
        let filter_fds: Vec<i32> = filters.iter().map(std::os::fd::AsRawFd::as_raw_fd).collect();
        for fd in &filter_fds {
            cmd.arg("--add-seccomp-fd").arg(fd.to_string());
        }
        cmd.args(["--chdir", "/sandbox", "--remount-ro", "/", "--"]);
        cmd.arg(&self.interpreter).args(["-I", "-B"]).arg(&program.main);
        cmd.env_clear().env("PATH", "/usr/bin:/bin").env("HOME", "/sandbox").env("TMPDIR", "/sandbox").env("LANG", "C.UTF-8");
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        let limits = self.limits.clone();
        // Threads count against RLIMIT_NPROC for their user: as another user, add our own.
        let nproc = if as_root { limits.processes } else { limits.processes + tasks_of(unsafe { libc::getuid() }) };
        unsafe {
            cmd.pre_exec(move || {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The filters' descriptors reach bwrap: in this child only, not close-on-exec.
                for &fd in &filter_fds {
                    if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                // Into the run's cgroup while still allowed to (before dropping to the run's uid).
                if let Some(procs) = &join {
                    cgroup::join(procs)?;
                }
                let set = [
                    (libc::RLIMIT_CPU, limits.cpu_seconds),
                    (libc::RLIMIT_AS, limits.memory_mb * mb),
                    (libc::RLIMIT_NPROC, nproc),
                    (libc::RLIMIT_FSIZE, limits.file_size_mb * mb),
                    (libc::RLIMIT_NOFILE, limits.open_files),
                    (libc::RLIMIT_CORE, 0),
                ];
                for (res, v) in set {
                    let r = libc::rlimit { rlim_cur: v, rlim_max: v };
                    if libc::setrlimit(res, &r) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if as_root && (libc::setgroups(0, std::ptr::null()) != 0 || libc::setgid(uid) != 0 || libc::setuid(uid) != 0) {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let started = Instant::now();
        let mut child = cmd.spawn()?;
        drop(filters); // bwrap holds its own copies
        let group = child.id().map(|p| p as i32);
        let kill = || {
            if let Some(g) = group {
                // The group, then bwrap's --die-with-parent takes the PID namespace with it.
                unsafe { libc::kill(-g, libc::SIGKILL) };
            }
        };
        let mut stdin = child.stdin.take();
        let input = program.stdin.clone();
        let feed = async move {
            if let Some(s) = stdin.as_mut() {
                let _ = s.write_all(input.as_bytes()).await;
            }
            drop(stdin);
        };
        let cap = self.limits.output_bytes;
        let (out, err) = (child.stdout.take(), child.stderr.take());
        let reading = async { tokio::join!(feed, capped(out, cap), capped(err, cap)) };
        let wall = Duration::from_secs_f64(self.limits.wall_seconds);
        let (status, stdout, stderr) = match tokio::time::timeout(wall, reading).await {
            Ok(((), (o, over_o), (e, over_e))) if over_o || over_e => {
                kill();
                let _ = child.wait().await;
                (RunStatus::OutputLimit, o, e)
            }
            Ok(((), (o, _), (e, _))) => {
                // Output closed: the program ended, or gave its pipes to a child still running.
                let status = match tokio::time::timeout(wall.saturating_sub(started.elapsed()), child.wait()).await {
                    Ok(Ok(s)) => exit_status(s),
                    _ => {
                        kill();
                        let _ = child.wait().await;
                        RunStatus::TimedOut
                    }
                };
                (status, o, e)
            }
            Err(_) => {
                kill();
                let _ = child.wait().await;
                (RunStatus::TimedOut, Vec::new(), Vec::new())
            }
        };
        Ok(Run {
            status,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

fn exit_status(s: std::process::ExitStatus) -> RunStatus {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        // bwrap's init reports a program killed by a signal as the shell does: 128 + signal.
        (Some(c), _) if (129..160).contains(&c) => RunStatus::Signalled(c - 128),
        (Some(c), _) => RunStatus::Exited(c),
        (None, Some(sig)) => RunStatus::Signalled(sig),
        _ => RunStatus::Exited(-1),
    }
}

/// Reads to the end, keeping `cap` bytes; true when more came (the reader stops there).
async fn capped<R: AsyncRead + Unpin>(r: Option<R>, cap: usize) -> (Vec<u8>, bool) {
    let Some(mut r) = r else { return (Vec::new(), false) };
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return (out, false),
            Ok(n) if out.len() + n > cap => {
                out.extend_from_slice(&buf[..cap - out.len()]);
                return (out, true);
            }
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// A fresh private directory, removed with everything the program left in it.
struct WorkDir(PathBuf);

impl WorkDir {
    fn new() -> std::io::Result<Self> {
        let p = std::env::temp_dir().join(format!("thinkscale-sandbox-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir(&p)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700))?;
        Ok(Self(p))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn chown_tree(dir: &Path, id: u32) -> std::io::Result<()> {
    std::os::unix::fs::chown(dir, Some(id), Some(id))?;
    for e in std::fs::read_dir(dir)? {
        std::os::unix::fs::chown(e?.path(), Some(id), Some(id))?;
    }
    Ok(())
}

/// Tasks (threads included) this uid runs now, as RLIMIT_NPROC counts them.
fn tasks_of(uid: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0 };
    let mut n = 0;
    for e in dir.flatten() {
        let Ok(status) = std::fs::read_to_string(e.path().join("status")) else { continue };
        let field = |k: &str| status.lines().find_map(|l| l.strip_prefix(k)).map(str::trim).unwrap_or("");
        if field("Uid:").split_whitespace().next() == Some(&uid.to_string()) {
            n += field("Threads:").parse::<u64>().unwrap_or(1);
        }
    }
    n
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|path| std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file()))
}

/// The real Python 3 executable (not a shim or venv link) and its install, bound read-only when
/// it lives outside /usr.
fn python() -> Result<(PathBuf, Vec<PathBuf>), SandboxError> {
    // The system's own Python first: a user's install (pyenv under /root) may be unreadable to
    // the unprivileged user runs drop to.
    let system = PathBuf::from("/usr/bin/python3");
    let py = if system.is_file() {
        system
    } else {
        which("python3").ok_or_else(|| SandboxError::NoInterpreter("python", "python3 is not on PATH".into()))?
    };
    let out = std::process::Command::new(py)
        .args(["-c", "import os, sys; print(os.path.realpath(sys.executable)); print(os.path.realpath(sys.base_prefix))"])
        .output()
        .map_err(|e| SandboxError::NoInterpreter("python", e.to_string()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let (Some(exe), Some(prefix)) = (lines.next(), lines.next()) else {
        return Err(SandboxError::NoInterpreter("python", String::from_utf8_lossy(&out.stderr).into_owned()));
    };
    let binds = if Path::new(prefix).starts_with("/usr") { Vec::new() } else { vec![PathBuf::from(prefix)] };
    Ok((PathBuf::from(exe), binds))
}
