//! The steps the child takes between clone and exec, and the fixed-size
//! report it writes to the parent when one fails.

use crate::layers::LayerName;
use crate::limits::RlimitResource;

/// One step of the child's set-up. The discriminant travels through the
/// error pipe, so the values are fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    SyncRead = 1,
    DeathSignal = 2,
    MountPrivate = 3,
    Hostname = 4,
    Setsid = 5,
    Dup = 6,
    Chdir = 7,
    Rlimit = 8,
    NoNewPrivs = 9,
    Landlock = 10,
    Seccomp = 11,
    Setgroups = 12,
    Setresgid = 13,
    Setresuid = 14,
    CloseRange = 15,
    SignalMask = 16,
    Exec = 17,
}

impl Stage {
    const ALL: [Stage; 17] = [
        Stage::SyncRead,
        Stage::DeathSignal,
        Stage::MountPrivate,
        Stage::Hostname,
        Stage::Setsid,
        Stage::Dup,
        Stage::Chdir,
        Stage::Rlimit,
        Stage::NoNewPrivs,
        Stage::Landlock,
        Stage::Seccomp,
        Stage::Setgroups,
        Stage::Setresgid,
        Stage::Setresuid,
        Stage::CloseRange,
        Stage::SignalMask,
        Stage::Exec,
    ];

    pub(crate) fn from_code(code: u32) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| *s as u32 == code)
    }

    pub(crate) fn describe(self) -> &'static str {
        match self {
            Stage::SyncRead => "waiting for the parent (uid/gid maps)",
            Stage::DeathSignal => "prctl(PR_SET_PDEATHSIG)",
            Stage::MountPrivate => "mount(/, MS_REC|MS_PRIVATE)",
            Stage::Hostname => "sethostname",
            Stage::Setsid => "setsid",
            Stage::Dup => "dup2 of stdin/stdout/stderr/channel",
            Stage::Chdir => "chdir to the working folder",
            Stage::Rlimit => "setrlimit",
            Stage::NoNewPrivs => "prctl(PR_SET_NO_NEW_PRIVS)",
            Stage::Landlock => "landlock_restrict_self",
            Stage::Seccomp => "seccomp(SECCOMP_SET_MODE_FILTER)",
            Stage::Setgroups => "setgroups(0)",
            Stage::Setresgid => "setresgid",
            Stage::Setresuid => "setresuid",
            Stage::CloseRange => "close_range(CLOSE_RANGE_CLOEXEC)",
            Stage::SignalMask => "sigprocmask",
            Stage::Exec => "execve",
        }
    }

    /// The layer that owns this step, when `namespaces` says whether the
    /// identity steps belong to the namespace set-up.
    pub(crate) fn layer(self, namespaces: bool) -> Option<LayerName> {
        match self {
            Stage::MountPrivate | Stage::Hostname => Some(LayerName::Namespaces),
            Stage::Setgroups | Stage::Setresgid | Stage::Setresuid if namespaces => {
                Some(LayerName::Namespaces)
            }
            Stage::Rlimit => Some(LayerName::Rlimits),
            Stage::NoNewPrivs => Some(LayerName::NoNewPrivs),
            Stage::Landlock => Some(LayerName::Landlock),
            Stage::Seccomp => Some(LayerName::Seccomp),
            _ => None,
        }
    }
}

/// What the child writes to the error pipe: stage, detail (the rlimit
/// resource for [`Stage::Rlimit`]), errno. 12 bytes, native endian; the
/// pipe is local.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Report {
    pub stage: u32,
    pub detail: u32,
    pub errno: i32,
}

pub(crate) const REPORT_LEN: usize = 12;

impl Report {
    pub(crate) fn encode(self) -> [u8; REPORT_LEN] {
        let mut b = [0u8; REPORT_LEN];
        b[..4].copy_from_slice(&self.stage.to_ne_bytes());
        b[4..8].copy_from_slice(&self.detail.to_ne_bytes());
        b[8..].copy_from_slice(&self.errno.to_ne_bytes());
        b
    }

    pub(crate) fn decode(b: &[u8; REPORT_LEN]) -> Report {
        let word = |i: usize| [b[i], b[i + 1], b[i + 2], b[i + 3]];
        Report {
            stage: u32::from_ne_bytes(word(0)),
            detail: u32::from_ne_bytes(word(4)),
            errno: i32::from_ne_bytes(word(8)),
        }
    }

    /// Human-readable stage, e.g. `setrlimit RLIMIT_NPROC`.
    pub(crate) fn stage_text(&self) -> String {
        match Stage::from_code(self.stage) {
            Some(Stage::Rlimit) => {
                let name = RlimitResource::ALL
                    .get(self.detail as usize)
                    .map(|r| r.name())
                    .unwrap_or("unknown resource");
                format!("setrlimit {name}")
            }
            Some(s) => s.describe().to_owned(),
            None => format!("unknown stage {}", self.stage),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip_and_name_their_stage() {
        let r = Report {
            stage: Stage::Rlimit as u32,
            detail: 3,
            errno: libc::EPERM,
        };
        assert_eq!(Report::decode(&r.encode()), r);
        assert_eq!(r.stage_text(), "setrlimit RLIMIT_NPROC");
        let r = Report {
            stage: 999,
            detail: 0,
            errno: 1,
        };
        assert_eq!(r.stage_text(), "unknown stage 999");
        for s in Stage::ALL {
            assert_eq!(Stage::from_code(s as u32), Some(s));
        }
        assert_eq!(Stage::Setresuid.layer(true), Some(LayerName::Namespaces));
        assert_eq!(Stage::Setresuid.layer(false), None);
        assert_eq!(Stage::Landlock.layer(false), Some(LayerName::Landlock));
    }
}
