//! cgroup v2 limits for a whole run, where the host offers them: each run gets a cgroup of its
//! own with `pids.max` (every process and thread of the run together, whoever's uid they run
//! as) and `memory.max` (all its processes' memory together, page cache included), and
//! `cgroup.kill` ends whatever is left when the run is over. rlimits stay on either way; they are
//! the only limits where cgroup v2 is absent (a v1 host, a read-only `/sys/fs/cgroup`) or its
//! controllers are not ours to delegate.
//!
//! Runs are made under a parent cgroup that must hold no process itself (cgroup v2 lets a cgroup
//! either hold processes or hand controllers to children). `[sandbox] cgroup_parent` names one
//! the operator delegated (systemd `Delegate=yes`); otherwise the server moves itself into a
//! `server` leaf of its own cgroup and makes runs beside it, which works when it is alone there
//! (a systemd service, a container's PID 1).

use std::ffi::CString;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Whether runs get cgroup limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupMode {
    /// Where the host offers cgroup v2 with the pids or memory controller; rlimits only otherwise.
    #[default]
    Auto,
    /// Start-up fails unless runs get cgroup limits.
    Required,
    /// rlimits only.
    Off,
}

/// The controllers a run's cgroup limits, of the two we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Controllers {
    pub pids: bool,
    pub memory: bool,
}

impl Controllers {
    /// Of a `cgroup.controllers` (or `subtree_control`) line.
    pub fn parse(line: &str) -> Self {
        let has = |c: &str| line.split_whitespace().any(|w| w == c);
        Self { pids: has("pids"), memory: has("memory") }
    }

    fn any(self) -> bool {
        self.pids || self.memory
    }

    fn enable_line(self) -> String {
        [("+pids", self.pids), ("+memory", self.memory)].iter().filter(|(_, on)| *on).map(|(c, _)| *c).collect::<Vec<_>>().join(" ")
    }
}

/// The cgroup v2 mount point, from `/proc/self/mountinfo` text.
pub fn mount_point(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        if right.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        Some(PathBuf::from(unescape(left.split_whitespace().nth(4)?)))
    })
}

/// This process's cgroup v2 path (relative to the mount), from `/proc/self/cgroup` text.
pub fn own_path(proc_cgroup: &str) -> Option<&str> {
    proc_cgroup.lines().find_map(|l| l.strip_prefix("0::"))
}

/// mountinfo escapes spaces, tabs, newlines and backslashes as octal.
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        match rest.get(i + 1..i + 4).and_then(|o| u8::from_str_radix(o, 8).ok()) {
            Some(b) => {
                out.push(b as char);
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out + rest
}

/// Why runs have rlimits only.
#[derive(Debug, thiserror::Error)]
pub enum NoCgroup {
    #[error("off in the config")]
    Off,
    #[error("no cgroup v2 hierarchy is mounted (a cgroup v1 host)")]
    NotMounted,
    #[error("this process is in no cgroup v2 group")]
    NoGroup,
    #[error("{} offers neither the pids nor the memory controller", .0.display())]
    NoControllers(PathBuf),
    #[error("{what} {}: {source}", path.display())]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("enabling {controllers} for child cgroups of {}: {source} (it must hold no process of its own; delegate one with [sandbox] cgroup_parent)", path.display())]
    Busy { controllers: String, path: PathBuf, source: std::io::Error },
    #[error("a run inside its cgroup failed: {0}")]
    ProbeFailed(String),
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> NoCgroup {
    let path = path.to_path_buf();
    move |source| NoCgroup::Io { what, path, source }
}

/// Where runs' cgroups are made, with the controllers enabled for them.
#[derive(Debug)]
pub struct Parent {
    pub dir: PathBuf,
    pub controllers: Controllers,
}

impl Parent {
    /// The configured parent, or this process's own cgroup (after moving the process into a
    /// `server` leaf). Err says why runs get rlimits only.
    pub fn set_up(configured: Option<&Path>) -> Result<Self, NoCgroup> {
        let mountinfo = read(Path::new("/proc/self/mountinfo"))?;
        let mount = mount_point(&mountinfo).ok_or(NoCgroup::NotMounted)?;
        let dir = match configured {
            Some(p) => p.to_path_buf(),
            None => {
                let own = read(Path::new("/proc/self/cgroup"))?;
                let rel = own_path(&own).ok_or(NoCgroup::NoGroup)?;
                match rel.trim_start_matches('/') {
                    "" => mount,
                    rel => mount.join(rel),
                }
            }
        };
        let offered = Controllers::parse(&read(&dir.join("cgroup.controllers"))?);
        if !offered.any() {
            return Err(NoCgroup::NoControllers(dir));
        }
        let enabled = Controllers::parse(&read(&dir.join("cgroup.subtree_control"))?);
        if enabled != offered {
            if configured.is_none() {
                move_self_into(&dir.join("server"))?;
            }
            if let Err(source) = std::fs::write(dir.join("cgroup.subtree_control"), offered.enable_line()) {
                if configured.is_none() {
                    // Back where it started: someone else shares the group (a shell, a supervisor).
                    let _ = std::fs::write(dir.join("cgroup.procs"), std::process::id().to_string());
                    let _ = std::fs::remove_dir(dir.join("server"));
                }
                return Err(NoCgroup::Busy { controllers: offered.enable_line(), path: dir, source });
            }
        }
        Ok(Self { dir, controllers: offered })
    }

    /// A fresh cgroup for one run, its limits written.
    pub fn run_group(&self, name: &str, processes: u64, memory_bytes: u64) -> std::io::Result<RunGroup> {
        let dir = self.dir.join(name);
        std::fs::create_dir(&dir)?;
        let group = RunGroup { procs: CString::new(dir.join("cgroup.procs").into_os_string().into_encoded_bytes())?, dir };
        if self.controllers.pids {
            std::fs::write(group.dir.join("pids.max"), processes.to_string())?;
        }
        if self.controllers.memory {
            std::fs::write(group.dir.join("memory.max"), memory_bytes.to_string())?;
            // Without swap off, memory.max would push the run into swap instead of stopping it.
            let swap = group.dir.join("memory.swap.max");
            if swap.exists() {
                std::fs::write(swap, "0")?;
            }
        }
        Ok(group)
    }

    pub fn describe(&self, processes: u64, memory_mb: u64) -> String {
        let mut parts = Vec::new();
        if self.controllers.pids {
            parts.push(format!("pids.max {processes}"));
        }
        if self.controllers.memory {
            parts.push(format!("memory.max {memory_mb} MB"));
        }
        format!("cgroup v2 limits for the whole run ({}) under {}", parts.join(", "), self.dir.display())
    }
}

fn read(p: &Path) -> Result<String, NoCgroup> {
    std::fs::read_to_string(p).map_err(io("reading", p))
}

/// cgroup v2 hands controllers only to children of a cgroup without processes: the server
/// moves into a leaf of its own (all its threads go with it).
fn move_self_into(leaf: &Path) -> Result<(), NoCgroup> {
    match std::fs::create_dir(leaf) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io("creating", leaf)(e)),
    }
    std::fs::write(leaf.join("cgroup.procs"), std::process::id().to_string()).map_err(io("moving the server into", leaf))
}

/// One run's cgroup. The child joins it between fork and exec (`join`); dropping it kills what is
/// left inside and removes it.
pub struct RunGroup {
    dir: PathBuf,
    /// Its `cgroup.procs`, for `join`.
    pub procs: CString,
}

/// Moves the calling process into the group whose `cgroup.procs` this is. Only
/// async-signal-safe calls: it runs in the child between fork and exec.
pub fn join(procs: &std::ffi::CStr) -> std::io::Result<()> {
    unsafe {
        let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // "0" is the writing process itself.
        let n = libc::write(fd, b"0".as_ptr().cast(), 1);
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if n != 1 {
            return Err(err);
        }
    }
    Ok(())
}

impl Drop for RunGroup {
    fn drop(&mut self) {
        let _ = std::fs::write(self.dir.join("cgroup.kill"), "1");
        if std::fs::remove_dir(&self.dir).is_ok() {
            return;
        }
        // Killed processes take a moment to leave; a cgroup with members cannot be removed.
        let dir = std::mem::take(&mut self.dir);
        std::thread::spawn(move || {
            for _ in 0..100 {
                std::thread::sleep(std::time::Duration::from_millis(20));
                if std::fs::remove_dir(&dir).is_ok() {
                    return;
                }
            }
            tracing::warn!(cgroup = %dir.display(), "a sandbox run's cgroup could not be removed");
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_v2_mount_and_the_own_path() {
        let v1 = "30 25 0:26 / /sys/fs/cgroup/pids rw,relatime shared:9 - cgroup cgroup rw,pids\n";
        assert_eq!(mount_point(v1), None);
        let v2 = format!("{v1}35 25 0:30 / /sys/fs/cgroup rw,nosuid shared:10 - cgroup2 cgroup2 rw,nsdelegate\n");
        assert_eq!(mount_point(&v2), Some(PathBuf::from("/sys/fs/cgroup")));
        let spaced = "35 25 0:30 / /mnt/my\\040cgroups rw - cgroup2 none rw\n";
        assert_eq!(mount_point(spaced), Some(PathBuf::from("/mnt/my cgroups")));
        assert_eq!(
            own_path("9:name=systemd:/\n4:memory:/x\n0::/system.slice/thinkscale.service\n"),
            Some("/system.slice/thinkscale.service")
        );
        assert_eq!(own_path("4:memory:/x\n"), None);
    }

    #[test]
    fn reads_which_controllers_are_offered() {
        assert_eq!(Controllers::parse("cpuset cpu io memory hugetlb pids rdma"), Controllers { pids: true, memory: true });
        assert_eq!(Controllers::parse("hugetlb"), Controllers { pids: false, memory: false });
        // A controller's name is a whole word, not a prefix.
        assert_eq!(Controllers::parse("memory_x pidsfoo"), Controllers { pids: false, memory: false });
        assert_eq!(Controllers { pids: true, memory: false }.enable_line(), "+pids");
        assert_eq!(Controllers { pids: true, memory: true }.enable_line(), "+pids +memory");
    }
}
