//! `transcoder sandbox-exec`: confine this (still single-threaded) process, say what was
//! enforced, and become PROGRAM. How a worker runs a `process` chain's ffmpeg.

use crate::SandboxExecArgs;
use std::os::unix::process::CommandExt as _;
use std::process::ExitCode;
use transcoder_activities::sandbox::{confine_self, Confinement};

/// The exit status when the kernel could not confine PROGRAM (it is not run).
const NOT_CONFINED_EXIT: u8 = 97;

pub(crate) fn exec(args: SandboxExecArgs) -> ExitCode {
    use std::io::Write as _;
    // Opened before the confinement, which will not let this process open it afterwards
    // (so neither can the chain it becomes; the descriptor closes on exec).
    let mut status = match std::fs::File::create(&args.status) {
        Ok(file) => file,
        Err(e) => {
            eprintln!("sandbox: cannot write {}: {e}", args.status.display());
            return ExitCode::FAILURE;
        }
    };
    let report = confine_self(&Confinement {
        read: args.read,
        write: args.write,
        max_file_bytes: args.max_file_bytes,
    });
    let written = serde_json::to_vec(&report)
        .map_err(|e| e.to_string())
        .and_then(|bytes| status.write_all(&bytes).map_err(|e| e.to_string()));
    drop(status);
    if let Err(e) = written {
        eprintln!("sandbox: cannot write {}: {e}", args.status.display());
        return ExitCode::FAILURE;
    }
    if !report.confined {
        eprintln!("sandbox: not confined ({}); not running", report.landlock);
        return ExitCode::from(NOT_CONFINED_EXIT);
    }
    let Some((program, rest)) = args.program.split_first() else {
        return ExitCode::FAILURE;
    };
    // Only returns when the program could not be executed.
    let error = std::process::Command::new(program).args(rest).exec();
    eprintln!(
        "sandbox: cannot execute {}: {error}",
        program.to_string_lossy()
    );
    ExitCode::FAILURE
}
