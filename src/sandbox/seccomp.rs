//! The syscall filter every sandboxed program runs under (bwrap loads it right before it starts the
//! program). A deny-list, not an allow-list: Python and whatever a program starts must keep every
//! ordinary syscall, while the kernel surface that a namespace sandbox alone leaves open is shut:
//! new namespaces (a fresh user namespace hands the program a full set of capabilities inside
//! it), mounts, tracing and other processes' memory, keyrings, eBPF, perf, userfaultfd and
//! io_uring (the sources of most recent local privilege escalations), module and kexec loading,
//! and clock, host and swap administration. Denied calls fail with EPERM, as under Docker's and
//! Firecracker's profiles, so a program sees an error it can handle, not a kill.
//!
//! clone3 takes its flags in a struct a filter cannot read, so it gets ENOSYS, on which glibc
//! falls back to clone, whose flags are checked. Two filters, since one filter has one action.

use std::collections::BTreeMap;

use seccompiler::{BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule};

/// Syscalls no sandboxed program may make.
const DENIED: &[i64] = &[
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_open_tree,
    libc::SYS_move_mount,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_mount_setattr,
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_reboot,
    libc::SYS_syslog,
    libc::SYS_acct,
    libc::SYS_quotactl,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_adjtimex,
    libc::SYS_sethostname,
    libc::SYS_setdomainname,
    libc::SYS_iopl,
    libc::SYS_ioperm,
    libc::SYS_vhangup,
];

pub const DENIED_COUNT: usize = DENIED.len();

/// clone flags that create a namespace.
const NAMESPACE_FLAGS: [i32; 7] = [
    libc::CLONE_NEWNS,
    libc::CLONE_NEWCGROUP,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
];

/// The filters, compiled to raw `struct sock_filter` arrays as bwrap's `--add-seccomp-fd` reads them.
pub fn programs() -> Result<Vec<Vec<u8>>, seccompiler::BackendError> {
    let arch = std::env::consts::ARCH.try_into()?;
    let mut denied: BTreeMap<i64, Vec<SeccompRule>> = DENIED.iter().map(|&nr| (nr, Vec::new())).collect();
    // clone with any namespace flag: one rule per flag (a syscall's rules are alternatives).
    let per_flag = NAMESPACE_FLAGS
        .iter()
        .map(|&f| {
            let set = SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(f as u64), f as u64)?;
            SeccompRule::new(vec![set])
        })
        .collect::<Result<Vec<_>, _>>()?;
    denied.insert(libc::SYS_clone, per_flag);
    let deny = SeccompFilter::new(denied, SeccompAction::Allow, SeccompAction::Errno(libc::EPERM as u32), arch)?;
    let clone3 =
        SeccompFilter::new([(libc::SYS_clone3, Vec::new())].into(), SeccompAction::Allow, SeccompAction::Errno(libc::ENOSYS as u32), arch)?;
    [deny, clone3].into_iter().map(|f| BpfProgram::try_from(f).map(|p| raw(&p))).collect()
}

fn raw(program: &BpfProgram) -> Vec<u8> {
    program.iter().flat_map(|i| [&i.code.to_ne_bytes()[..], &[i.jt, i.jf], &i.k.to_ne_bytes()].concat()).collect()
}

/// An in-memory file holding `bytes`, positioned at its start, for bwrap to read. It is
/// close-on-exec: the sandbox clears that in the child alone.
pub fn memfd(bytes: &[u8]) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::io::{Seek, Write};
    use std::os::fd::{FromRawFd, OwnedFd};
    // SAFETY: memfd_create returns a new descriptor this function owns from here on.
    let fd = unsafe { libc::memfd_create(c"thinkscale-seccomp".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    file.write_all(bytes)?;
    file.rewind()?;
    Ok(file.into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn compiles_to_whole_instructions() {
        let programs = super::programs().unwrap();
        assert_eq!(programs.len(), 2);
        for p in &programs {
            assert!(!p.is_empty() && p.len() % 8 == 0, "{}", p.len());
        }
    }
}
