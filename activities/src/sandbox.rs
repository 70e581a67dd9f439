//! The OS sandbox a `process` chain's ffmpeg runs in (Linux): Landlock lets it read only
//! the system's program files and the chain's own inputs and write only its scratch folder;
//! seccomp refuses it network sockets (IPv4, IPv6, netlink, packet) and io_uring (which
//! could open sockets around that rule); no_new_privs keeps it from gaining rights.
//!
//! [`confine_self`] is called by the process that then executes ffmpeg (the binary's
//! hidden `sandbox-exec` command, single-threaded at that point): Landlock and seccomp
//! apply to the calling thread and carry over `exec`. Where the kernel enforces neither
//! filesystem rule, the chain is refused rather than run unconfined.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Paths every ffmpeg needs to read (its program, libraries, fonts, devices), where present.
const SYSTEM_READ: [&str; 12] = [
    "/usr",
    "/lib",
    "/lib64",
    "/bin",
    "/sbin",
    "/etc/ld.so.cache",
    "/etc/fonts",
    "/etc/alternatives",
    "/nix/store",
    "/dev/null",
    "/dev/urandom",
    "/proc/self",
];

/// What a chain may touch.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Confinement {
    /// Files and folders it may read, beside the system's.
    pub read: Vec<PathBuf>,
    /// The folders it may write (and read).
    pub write: Vec<PathBuf>,
    /// The largest file it may write (`RLIMIT_FSIZE`: a write past it fails and the
    /// kernel stops the process with SIGXFSZ). `None`: no limit.
    #[serde(default)]
    pub max_file_bytes: Option<u64>,
}

/// Which confinement applied, for the chain's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxReport {
    /// `fully enforced`, `partially enforced` or `not enforced`, with the kernel's ABI.
    pub landlock: String,
    /// What the seccomp filter refuses, or why none applied.
    pub seccomp: String,
    pub no_new_privs: bool,
    /// Whether the chain may run: Landlock's filesystem rules are in force.
    pub confined: bool,
    /// The file size limit in force, or why none applied.
    #[serde(default)]
    pub file_size: String,
}

/// Confines the calling thread (and what it executes next) to `c`.
pub fn confine_self(c: &Confinement) -> SandboxReport {
    let (landlock, no_new_privs, fs_enforced) = match landlock_rules(c) {
        Ok((text, nnp, enforced)) => (text, nnp, enforced),
        Err(e) => (format!("not enforced: {e}"), false, false),
    };
    let seccomp = match deny_network() {
        Ok(()) => "network sockets (IPv4, IPv6, netlink, packet) and io_uring refused".to_string(),
        Err(e) => format!("not applied: {e}"),
    };
    let (file_size, limited) = match c.max_file_bytes.map(limit_file_size) {
        None => ("no limit".to_string(), true),
        Some(Ok(bytes)) => (format!("files of at most {bytes} bytes"), true),
        Some(Err(e)) => (format!("not applied: {e}"), false),
    };
    SandboxReport {
        landlock,
        seccomp,
        no_new_privs,
        // A limit that was asked for and could not be set is a confinement that failed.
        confined: fs_enforced && limited,
        file_size,
    }
}

/// Sets `RLIMIT_FSIZE` (soft and hard, so the program cannot raise it) to `bytes`.
#[allow(unsafe_code)] // setrlimit(2)
fn limit_file_size(bytes: u64) -> Result<u64, String> {
    let limit = libc::rlimit {
        rlim_cur: bytes as libc::rlim_t,
        rlim_max: bytes as libc::rlim_t,
    };
    // SAFETY: setrlimit reads the struct we pass and changes only this process's limits.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &limit) };
    if rc == 0 {
        Ok(bytes)
    } else {
        Err(std::io::Error::last_os_error().to_string())
    }
}

fn landlock_rules(c: &Confinement) -> Result<(String, bool, bool), String> {
    use landlock::{
        path_beneath_rules, Access, AccessFs, AccessNet, Ruleset, RulesetAttr, RulesetCreatedAttr,
        RulesetStatus, Scope, ABI,
    };
    let abi = ABI::V6;
    let existing = |paths: &[PathBuf]| -> Vec<PathBuf> {
        paths.iter().filter(|p| p.exists()).cloned().collect()
    };
    let system: Vec<PathBuf> = SYSTEM_READ
        .iter()
        .map(PathBuf::from)
        .chain(gpu_devices())
        .collect();
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .map_err(|e| e.to_string())?
        // No TCP at all where the kernel can say so (ABI 4); seccomp covers the rest.
        .handle_access(AccessNet::from_all(abi))
        .map_err(|e| e.to_string())?
        // No signals to processes outside the sandbox, no abstract unix sockets (ABI 6).
        .scope(Scope::from_all(abi))
        .map_err(|e| e.to_string())?
        .create()
        .map_err(|e| e.to_string())?
        .add_rules(path_beneath_rules(
            existing(&system),
            AccessFs::from_read(abi),
        ))
        .map_err(|e| e.to_string())?
        .add_rules(path_beneath_rules(
            existing(&c.read),
            AccessFs::from_read(abi),
        ))
        .map_err(|e| e.to_string())?
        .add_rules(path_beneath_rules(
            existing(&c.write),
            AccessFs::from_all(abi),
        ))
        .map_err(|e| e.to_string())?
        .restrict_self()
        .map_err(|e| e.to_string())?;
    let kernel = match status.landlock {
        landlock::LandlockStatus::Available { effective_abi, .. } => format!("{effective_abi:?}"),
        other => format!("{other:?}"),
    };
    let (text, enforced) = match status.ruleset {
        RulesetStatus::FullyEnforced => ("fully enforced", true),
        RulesetStatus::PartiallyEnforced => ("partially enforced", true),
        RulesetStatus::NotEnforced => ("not enforced (the kernel has no Landlock)", false),
    };
    Ok((
        format!("{text} (Landlock {kernel})"),
        status.no_new_privs,
        enforced,
    ))
}

/// NVIDIA and DRM device nodes, so a chain may decode on the GPU.
fn gpu_devices() -> Vec<PathBuf> {
    let mut found = vec![PathBuf::from("/dev/dri")];
    if let Ok(entries) = std::fs::read_dir("/dev") {
        found.extend(entries.flatten().map(|e| e.path()).filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("nvidia"))
        }));
    }
    found
}

fn deny_network() -> Result<(), String> {
    use seccompiler::{
        SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
    };
    let domain = |family: i32| -> Result<SeccompRule, String> {
        SeccompRule::new(vec![SeccompCondition::new(
            0,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::Eq,
            family as u64,
        )
        .map_err(|e| e.to_string())?])
        .map_err(|e| e.to_string())
    };
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    rules.insert(
        libc::SYS_socket,
        vec![
            domain(libc::AF_INET)?,
            domain(libc::AF_INET6)?,
            domain(libc::AF_NETLINK)?,
            domain(libc::AF_PACKET)?,
        ],
    );
    // An empty rule list matches every call.
    rules.insert(libc::SYS_io_uring_setup, Vec::new());
    let arch = std::env::consts::ARCH
        .try_into()
        .map_err(|e| format!("{e:?}"))?;
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EACCES as u32),
        arch,
    )
    .map_err(|e| e.to_string())?;
    let program: seccompiler::BpfProgram = filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| e.to_string())?;
    seccompiler::apply_filter(&program).map_err(|e| e.to_string())
}

/// The folder a chain writes in, beside its status file (which it cannot write).
pub fn status_path(step_dir: &Path) -> PathBuf {
    step_dir.join("sandbox-status.json")
}
