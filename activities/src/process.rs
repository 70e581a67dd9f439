//! Child processes die with us: on Linux the kernel sends SIGKILL to a child whose parent
//! goes away, so a `kill -9` of a worker leaves no ffmpeg (or dev server) encoding for nobody.

/// Sets `PR_SET_PDEATHSIG` on the child `cmd` will start (no-op off Linux). A tokio
/// `Command` passes its `as_std_mut()`.
#[allow(unsafe_code)] // prctl in the child before exec
pub fn die_with_parent(cmd: &mut std::process::Command) {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl is async-signal-safe and only touches the child being set up.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

/// Takes an exclusive, non-blocking `flock(2)` on `file`: `Ok(true)` when this process now
/// holds it, `Ok(false)` when another process does. The kernel releases it when the holder
/// exits, however it exits (`kill -9` included), which is what makes it a liveness test.
#[allow(unsafe_code)] // flock(2)
pub fn try_lock_exclusive(file: &std::fs::File) -> std::io::Result<bool> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: flock(2) on a file descriptor the caller owns; no memory is shared.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(err)
    }
}

/// Space on the filesystem holding a folder, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskSpace {
    /// Available to an unprivileged writer.
    pub free: u64,
    pub total: u64,
}

/// [`DiskSpace`] of the filesystem holding `dir`; `None` when it cannot be read.
#[allow(unsafe_code)] // statvfs(3)
pub fn disk_space(dir: &std::path::Path) -> Option<DiskSpace> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct we own; the path is NUL-terminated.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut st) != 0 {
            return None;
        }
        let unit = st.f_frsize as u64;
        Some(DiskSpace {
            free: (st.f_bavail as u64).saturating_mul(unit),
            total: (st.f_blocks as u64).saturating_mul(unit),
        })
    }
}
