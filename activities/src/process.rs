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
