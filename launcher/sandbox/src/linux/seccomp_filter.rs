//! The seccomp filter: a deny-list, built once before fork.
//!
//! Why not an allow-list: the sandbox runs arbitrary C programs *and* the
//! whole gcc tool chain, and every libc update may start using a new system
//! call; a list broad enough for all of that is as long as the kernel's
//! list. The namespaces and Landlock already decide what the program can
//! reach; this filter removes the kernel interfaces that those layers do not
//! cover or that widen the kernel's attack surface.
//!
//! Program layout: a short hand-written prefix (x32 system calls denied,
//! `clone3` answered with `ENOSYS` so that libc falls back to `clone`,
//! whose flags a filter can read), then seccompiler's program (architecture
//! check that kills on a foreign ABI, then the per-call rules).

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch, sock_filter,
};

use crate::error::SpawnError;

/// System calls denied outright, with `EPERM`.
const DENIED: &[(i64, &str)] = &[
    (libc::SYS_ptrace, "ptrace"),
    (libc::SYS_process_vm_readv, "process_vm_readv"),
    (libc::SYS_process_vm_writev, "process_vm_writev"),
    (libc::SYS_process_madvise, "process_madvise"),
    (libc::SYS_pidfd_getfd, "pidfd_getfd"),
    (libc::SYS_kcmp, "kcmp"),
    (libc::SYS_mount, "mount"),
    (libc::SYS_umount2, "umount2"),
    (libc::SYS_pivot_root, "pivot_root"),
    (libc::SYS_chroot, "chroot"),
    (libc::SYS_fsopen, "fsopen"),
    (libc::SYS_fsconfig, "fsconfig"),
    (libc::SYS_fsmount, "fsmount"),
    (libc::SYS_fspick, "fspick"),
    (libc::SYS_move_mount, "move_mount"),
    (libc::SYS_open_tree, "open_tree"),
    (libc::SYS_mount_setattr, "mount_setattr"),
    (libc::SYS_unshare, "unshare"),
    (libc::SYS_setns, "setns"),
    (libc::SYS_bpf, "bpf"),
    (libc::SYS_perf_event_open, "perf_event_open"),
    (libc::SYS_userfaultfd, "userfaultfd"),
    (libc::SYS_kexec_load, "kexec_load"),
    (libc::SYS_kexec_file_load, "kexec_file_load"),
    (libc::SYS_init_module, "init_module"),
    (libc::SYS_finit_module, "finit_module"),
    (libc::SYS_delete_module, "delete_module"),
    (libc::SYS_keyctl, "keyctl"),
    (libc::SYS_add_key, "add_key"),
    (libc::SYS_request_key, "request_key"),
    (libc::SYS_open_by_handle_at, "open_by_handle_at"),
    (libc::SYS_name_to_handle_at, "name_to_handle_at"),
    // io_uring performs socket, open and connect operations without the
    // system calls this filter and older Landlock ABIs see.
    (libc::SYS_io_uring_setup, "io_uring_setup"),
    (libc::SYS_io_uring_enter, "io_uring_enter"),
    (libc::SYS_io_uring_register, "io_uring_register"),
    (libc::SYS_swapon, "swapon"),
    (libc::SYS_swapoff, "swapoff"),
    (libc::SYS_reboot, "reboot"),
    (libc::SYS_acct, "acct"),
    (libc::SYS_quotactl, "quotactl"),
    (libc::SYS_syslog, "syslog"),
    (libc::SYS_vhangup, "vhangup"),
    // The program has no business reaching a socket by path: its one
    // channel is fd 3, already connected. Landlock only covers path
    // sockets from ABI 9 on.
    (libc::SYS_connect, "connect"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_iopl, "iopl"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_ioperm, "ioperm"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_uselib, "uselib"),
];

/// Namespace flags `clone` may not carry (the program may fork, never
/// build namespaces of its own).
const CLONE_NEW_FLAGS: &[libc::c_int] = &[
    libc::CLONE_NEWNS,
    libc::CLONE_NEWCGROUP,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
];

/// `BPF_LD | BPF_W | BPF_ABS` etc., from `linux/filter.h`.
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JEQ_K: u16 = 0x15;
#[cfg(target_arch = "x86_64")]
const BPF_JMP_JGE_K: u16 = 0x35;
const BPF_RET_K: u16 = 0x06;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
/// Offset of `nr` in `struct seccomp_data`.
const SECCOMP_DATA_NR: u32 = 0;
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// The compiled filter and a description for the layer report.
pub(crate) struct Filter {
    pub program: Vec<sock_filter>,
    pub detail: String,
}

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

fn seccomp_error(e: seccompiler::BackendError) -> SpawnError {
    SpawnError::Prepare {
        step: "building the seccomp filter",
        source: std::io::Error::other(e.to_string()),
    }
}

fn cond(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, SpawnError> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value).map_err(seccomp_error)
}

pub(crate) fn build() -> Result<Filter, SpawnError> {
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| SpawnError::Prepare {
        step: "seccomp target architecture",
        source: std::io::Error::other(e.to_string()),
    })?;

    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for (nr, _) in DENIED {
        rules.insert(*nr, Vec::new());
    }
    // socket and socketpair: AF_UNIX only, and no AF_UNIX datagram socket: an
    // unconnected one could sendto() a path such as /dev/log without
    // connect(), and so could a connected one (an address given to sendto()
    // overrides the peer). AF_UNIX SOCK_RAW is a datagram socket too
    // (af_unix.c maps it to SOCK_DGRAM). The program's own channel is fd 3.
    for nr in [libc::SYS_socket, libc::SYS_socketpair] {
        let mut deny = vec![
            SeccompRule::new(vec![cond(0, SeccompCmpOp::Ne, libc::AF_UNIX as u64)?])
                .map_err(seccomp_error)?,
        ];
        for datagram in [libc::SOCK_DGRAM, libc::SOCK_RAW] {
            deny.push(
                SeccompRule::new(vec![
                    cond(0, SeccompCmpOp::Eq, libc::AF_UNIX as u64)?,
                    cond(1, SeccompCmpOp::MaskedEq(0xf), datagram as u64)?,
                ])
                .map_err(seccomp_error)?,
            );
        }
        rules.insert(nr, deny);
    }
    let mut clone_rules = Vec::new();
    for flag in CLONE_NEW_FLAGS {
        let flag = *flag as u64;
        clone_rules.push(
            SeccompRule::new(vec![cond(0, SeccompCmpOp::MaskedEq(flag), flag)?])
                .map_err(seccomp_error)?,
        );
    }
    rules.insert(libc::SYS_clone, clone_rules);

    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(seccomp_error)?;
    let body: BpfProgram = filter.try_into().map_err(seccomp_error)?;

    let mut program = vec![stmt(BPF_LD_W_ABS, SECCOMP_DATA_NR)];
    #[cfg(target_arch = "x86_64")]
    {
        // x32 system calls reuse x86-64 numbers with bit 30 set; deny them
        // all rather than mirror every rule.
        program.push(jump(BPF_JMP_JGE_K, X32_SYSCALL_BIT, 0, 1));
        program.push(stmt(BPF_RET_K, SECCOMP_RET_ERRNO | libc::EPERM as u32));
    }
    program.push(jump(BPF_JMP_JEQ_K, libc::SYS_clone3 as u32, 0, 1));
    program.push(stmt(BPF_RET_K, SECCOMP_RET_ERRNO | libc::ENOSYS as u32));
    program.extend(body);
    if program.len() > usize::from(u16::MAX) || program.len() > 4096 {
        return Err(SpawnError::Prepare {
            step: "seccomp filter size",
            source: std::io::Error::other(format!(
                "{} instructions, the kernel accepts at most 4096",
                program.len()
            )),
        });
    }

    let names: Vec<&str> = DENIED.iter().map(|(_, n)| *n).collect();
    let detail = format!(
        "deny-list, EPERM: {}; socket() and socketpair() other than AF_UNIX stream/seqpacket; clone() with CLONE_NEW*; x32 calls; clone3 answers ENOSYS; foreign-architecture calls kill the process",
        names.join(", ")
    );
    Ok(Filter { program, detail })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_builds_and_starts_with_the_prefix() {
        let f = build().unwrap();
        assert!(f.program.len() > DENIED.len());
        assert_eq!(f.program[0], stmt(BPF_LD_W_ABS, SECCOMP_DATA_NR));
        assert!(f.detail.contains("ptrace"));
        assert!(f.detail.contains("clone3 answers ENOSYS"));
        // The last instruction of seccompiler's body is the default action.
        assert_eq!(f.program.last().unwrap().code, BPF_RET_K);
    }
}
