//! The `process` and `multi_process` actions: an ffmpeg argument vector the caller wrote,
//! which is hostile input.
//!
//! Two layers keep it to its job:
//! - **Argument checks** ([`plan_chain`]), before any work, each naming the argument:
//!   every `-i` is an `s3://`, `gs://` or `http(s)://` URI our storage layer fetches into the
//!   chain's folder (never a path on the worker, a `concat` list, or another protocol);
//!   the output is the `output` URI, written in the chain's folder and then stored; filters
//!   that open files by name (`movie`, `amovie`, `subtitles`, `ass`, `sendcmd`, …), options
//!   that read or write files (`-filter_script`, `-attach`, `-vstats_file`, `-report`, …),
//!   multi-file and network muxers, absolute paths and URLs elsewhere are refused.
//! - **The OS sandbox** ([`crate::sandbox`]): ffmpeg runs with `file` as its only protocol,
//!   in the chain's folder, able to read only the system's program files and its inputs,
//!   write only that folder, and open no network socket. A worker whose kernel cannot
//!   enforce the filesystem rules refuses chains.

use super::io::refused;
use super::TaskIo;
use crate::error::{MediaError, Result};
use crate::fetch::InputUri;
use crate::ffmpeg::run::{ffmpeg_launched, ScaledProgress};
use crate::sandbox::{status_path, Confinement, SandboxReport};
use serde_json::{json, Value};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use transcoder_workflows::task::{Process, TaskOutput};

/// Filters that open files by name.
const FILE_FILTERS: [&str; 22] = [
    "movie",
    "amovie",
    "subtitles",
    "ass",
    "sendcmd",
    "asendcmd",
    "zmq",
    "azmq",
    "lut1d",
    "lut3d",
    "frei0r",
    "frei0r_src",
    "ladspa",
    "lv2",
    "sofalizer",
    "ocr",
    "dnn_processing",
    "dnn_classify",
    "dnn_detect",
    "sr",
    "derain",
    "vidstabtransform",
];

/// Filter options that name a file to read or write.
const FILE_OPTIONS: [&str; 9] = [
    "file",
    "filename",
    "stats_file",
    "textfile",
    "fontfile",
    "log_path",
    "result",
    "model",
    "sofa",
];

/// Options that read or write files of their own, or change ffmpeg's own settings.
const REFUSED_OPTIONS: [&str; 13] = [
    "-filter_script",
    "-filter_complex_script",
    "-attach",
    "-dump_attachment",
    "-vstats",
    "-vstats_file",
    "-passlogfile",
    "-report",
    "-progress",
    "-sdp_file",
    "-protocol_whitelist",
    "-protocol_blacklist",
    "-stats_file",
];

/// Formats that read lists of other files, write several files, or talk to the network.
const REFUSED_FORMATS: [&str; 12] = [
    "concat",
    "tee",
    "hls",
    "dash",
    "segment",
    "ssegment",
    "stream_segment",
    "rtp",
    "rtp_mpegts",
    "rtsp",
    "sap",
    "fifo",
];

/// Options whose value is a filter graph.
fn is_filter_option(name: &str) -> bool {
    let base = name.split(':').next().unwrap_or(name);
    matches!(
        base,
        "-vf" | "-af" | "-filter" | "-filter_complex" | "-lavfi"
    )
}

/// One input of a chain: the URI it names and its file name in the chain's folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainInput {
    pub uri: String,
    pub local: String,
}

/// A checked chain: its arguments after `ffmpeg` with inputs and output renamed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainPlan {
    pub args: Vec<String>,
    pub inputs: Vec<ChainInput>,
    pub output_local: String,
}

/// Checks a chain and renames its inputs and output to files in its folder; every problem
/// names the argument (`data.chainCmds[3]`).
pub fn plan_chain(field: &str, process: &Process) -> std::result::Result<ChainPlan, Vec<String>> {
    let chain = &process.chain;
    let at = |i: usize| format!("{field}.chainCmds[{i}]");
    let mut problems = Vec::new();
    let output_ext = extension(&process.output).unwrap_or_else(|| "out".into());
    let output_local = format!("output.{output_ext}");
    match InputUri::parse(&process.output) {
        Ok(InputUri::S3 { .. } | InputUri::Gs { .. }) => {}
        _ => problems.push(format!(
            "{field}.output must be an s3:// or gs:// URI (chains never write the worker's own files), got {:?}",
            shown(&process.output)
        )),
    }
    let mut args = Vec::new();
    let mut inputs = Vec::new();
    let mut pending_format: Option<String> = None;
    let mut outputs = 0;
    let mut i = 1;
    while i < chain.len() {
        let arg = chain[i].as_str();
        let value = chain.get(i + 1).map(String::as_str);
        let base = arg.split(':').next().unwrap_or(arg);
        if arg == process.output {
            outputs += 1;
            args.push(output_local.clone());
            i += 1;
            continue;
        }
        if REFUSED_OPTIONS.contains(&base) || arg.starts_with("-/") {
            problems.push(format!(
                "{}: {arg} reads or writes files of its own and is refused",
                at(i)
            ));
        } else if arg == "-i" {
            match (value, pending_format.as_deref()) {
                (None, _) => problems.push(format!("{}: -i has no value", at(i))),
                (Some(graph), Some("lavfi")) => {
                    check_graph(&at(i + 1), graph, &mut problems);
                    args.extend([arg.to_string(), graph.to_string()]);
                }
                (Some(uri), _) => {
                    match InputUri::parse(uri) {
                        Ok(parsed) => {
                            let ext = parsed.extension().unwrap_or_else(|| "bin".into());
                            let local = format!("input-{}.{ext}", inputs.len());
                            inputs.push(ChainInput {
                                uri: uri.to_string(),
                                local: local.clone(),
                            });
                            args.extend(["-protocol_whitelist".into(), "file".into(), arg.to_string(), local]);
                        }
                        Err(_) => problems.push(format!(
                            "{}: input {:?} must be an s3://, gs:// or http(s):// URI: chains read only what the storage layer fetches, never the worker's files or other protocols",
                            at(i + 1),
                            shown(uri)
                        )),
                    }
                }
            }
            pending_format = None;
            i += 2;
            continue;
        } else if arg == "-f" {
            match value {
                Some(format) if REFUSED_FORMATS.contains(&format) => problems.push(format!(
                    "{}: the {format} format reads lists of other files, writes several files or uses the network, and is refused",
                    at(i + 1)
                )),
                Some(format) => pending_format = Some(format.to_string()),
                None => problems.push(format!("{}: -f has no value", at(i))),
            }
        } else if is_filter_option(arg) {
            if let Some(graph) = value {
                check_graph(&at(i + 1), graph, &mut problems);
                args.extend([arg.to_string(), graph.to_string()]);
                i += 2;
                continue;
            }
        } else if arg.contains("://") || arg.starts_with('/') || arg.starts_with("..") {
            problems.push(format!(
                "{}: {:?} names a path or URL outside the chain's inputs and output",
                at(i),
                shown(arg)
            ));
        }
        args.push(arg.to_string());
        i += 1;
    }
    if outputs == 0 {
        problems.push(format!(
            "{field}.output {:?} does not appear in {field}.chainCmds as the output file",
            shown(&process.output)
        ));
    }
    if problems.is_empty() {
        Ok(ChainPlan {
            args,
            inputs,
            output_local,
        })
    } else {
        Err(problems)
    }
}

/// Refuses filters of `graph` that open files by name.
fn check_graph(at: &str, graph: &str, problems: &mut Vec<String>) {
    for filter in graph.split([',', ';']) {
        // Strip link labels (`[in]`, `[v0]`) before the filter's name.
        let mut rest = filter.trim();
        while let Some(after) = rest.strip_prefix('[') {
            rest = after.split_once(']').map_or("", |(_, r)| r).trim_start();
        }
        let (name, options) = rest.split_once('=').unwrap_or((rest, ""));
        let name = name.split('@').next().unwrap_or(name).trim();
        if FILE_FILTERS.contains(&name) {
            problems.push(format!(
                "{at}: the {name} filter opens files by name and is refused (give media as -i inputs; burn subtitles with the ENCODING task)"
            ));
            continue;
        }
        for option in options.split(':') {
            if let Some((key, _)) = option.split_once('=') {
                if FILE_OPTIONS.contains(&key.trim()) {
                    problems.push(format!(
                        "{at}: the {name} filter's {key} option names a file and is refused"
                    ));
                }
            }
        }
    }
}

fn extension(uri: &str) -> Option<String> {
    InputUri::parse(uri).ok().and_then(|u| u.extension())
}

/// What a problem may quote of an argument: at most 120 characters, no query string.
fn shown(arg: &str) -> String {
    transcoder_workflows::job::redact_uri(arg)
        .chars()
        .take(120)
        .collect()
}

/// Runs one chain: fetches its inputs, runs ffmpeg confined by `launcher`, stores its
/// output. `field` is where the chain sits in the payload (`data`, `data.processes[2]`).
pub async fn run_chain(
    io: &TaskIo<'_>,
    launcher: Option<&Path>,
    field: &str,
    process: &Process,
    work: &Path,
    progress: &ScaledProgress,
) -> Result<Value> {
    let refuse = |detail: String| refused(field, detail);
    let plan = plan_chain(field, process).map_err(|problems| refuse(problems.join("; ")))?;
    let output = TaskOutput::Uri(process.output.clone());
    io.check_output(&format!("{field}.output"), &output)?;
    let Some(launcher) = launcher else {
        return Err(refuse(
            "this worker has no sandbox launcher, so chains cannot be confined and are refused"
                .into(),
        ));
    };
    let folder = work.join("chain");
    std::fs::create_dir_all(&folder).map_err(MediaError::io("creating", &folder))?;
    let mut read: Vec<PathBuf> = Vec::new();
    for (k, input) in plan.inputs.iter().enumerate() {
        let fetched = io
            .input(
                &format!("{field}.chainCmds (input {k})"),
                &input.uri,
                &folder,
                &format!("fetched-{k}"),
            )
            .await?;
        let local = folder.join(&input.local);
        if fetched != local {
            // A local-store object is read in place: a link in the folder, the object allowed.
            if fetched.starts_with(&folder) {
                std::fs::rename(&fetched, &local).map_err(MediaError::io("renaming", &fetched))?;
            } else {
                let target = std::fs::canonicalize(&fetched)
                    .map_err(MediaError::io("resolving", &fetched))?;
                std::os::unix::fs::symlink(&target, &local)
                    .map_err(MediaError::io("linking", &local))?;
                read.push(target);
            }
        }
    }
    // No file the chain writes may outgrow what this worker accepts as an input.
    let max_file_bytes = io.fetch.max_bytes;
    let confinement = Confinement {
        read,
        write: vec![folder.clone()],
        max_file_bytes: Some(max_file_bytes),
    };
    let status = status_path(work);
    let mut launcher_args: Vec<OsString> = vec![
        "sandbox-exec".into(),
        "--status".into(),
        status.clone().into(),
    ];
    for path in &confinement.read {
        launcher_args.extend(["--read".into(), path.clone().into()]);
    }
    for path in &confinement.write {
        launcher_args.extend(["--write".into(), path.clone().into()]);
    }
    launcher_args.extend(["--max-file-bytes".into(), max_file_bytes.to_string().into()]);
    launcher_args.push("--".into());
    let mut args: Vec<OsString> = crate::ffmpeg::FfmpegArgs::new().into_vec();
    args.extend(plan.args.iter().map(OsString::from));
    let ran = ffmpeg_launched(launcher, &launcher_args, &args, &folder, 0.0, progress).await;
    let report: Option<SandboxReport> = std::fs::read(&status)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    match (&report, ran) {
        (Some(r), _) if !r.confined => {
            return Err(refuse(format!(
                "this worker's kernel cannot confine the chain (Landlock {}), so it is refused",
                r.landlock
            )))
        }
        (None, _) => {
            return Err(MediaError::Verification(
                "the sandbox launcher did not report what it enforced".into(),
            ))
        }
        (_, Err(MediaError::Tool { .. })) if wrote_to_the_limit(&folder, max_file_bytes) => {
            return Err(refuse(format!(
                "the chain wrote a file of {max_file_bytes} bytes, the most a chain may write (TRANSCODER_MAX_INPUT_BYTES)"
            )));
        }
        (_, Err(MediaError::Tool { detail, .. })) => {
            return Err(refuse(format!("ffmpeg failed: {detail}")));
        }
        (_, Err(e)) => return Err(e),
        (Some(_), Ok(())) => {}
    }
    let produced = folder.join(&plan.output_local);
    match std::fs::metadata(&produced) {
        Ok(m) if m.len() > 0 => {}
        _ => {
            return Err(refuse(format!(
                "the chain wrote nothing to {}",
                shown(&process.output)
            )))
        }
    }
    let delivered = io
        .output(&format!("{field}.output"), &output, &produced)
        .await?;
    Ok(json!({
        "output": delivered.location,
        "size_bytes": delivered.size_bytes,
        "verified": delivered.verified,
        "sandbox": report,
    }))
}

/// Whether a file in `folder` reached `limit` bytes (the chain was stopped by the limit).
fn wrote_to_the_limit(folder: &Path, limit: u64) -> bool {
    std::fs::read_dir(folder)
        .map(|entries| {
            entries
                .flatten()
                .any(|e| e.metadata().is_ok_and(|m| m.len() >= limit))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(args: &[&str], output: &str) -> Process {
        Process {
            chain: args.iter().map(|s| s.to_string()).collect(),
            output: output.into(),
        }
    }

    fn problems(args: &[&str], output: &str) -> String {
        plan_chain("data", &chain(args, output))
            .expect_err("refused")
            .join("\n")
    }

    #[test]
    fn inputs_and_the_output_become_files_in_the_chains_folder() {
        let plan = plan_chain(
            "data",
            &chain(
                &[
                    "ffmpeg",
                    "-ss",
                    "2",
                    "-i",
                    "s3://b/in.mp4",
                    "-f",
                    "lavfi",
                    "-i",
                    "sine=frequency=440",
                    "-vf",
                    "scale=640:-2,fps=30000/1001",
                    "-c:v",
                    "libx264",
                    "s3://b/out/small.mp4",
                ],
                "s3://b/out/small.mp4",
            ),
        )
        .unwrap();
        assert_eq!(
            plan.args,
            [
                "-ss",
                "2",
                "-protocol_whitelist",
                "file",
                "-i",
                "input-0.mp4",
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440",
                "-vf",
                "scale=640:-2,fps=30000/1001",
                "-c:v",
                "libx264",
                "output.mp4"
            ]
        );
        assert_eq!(plan.inputs[0].uri, "s3://b/in.mp4");
    }

    #[test]
    fn hostile_chains_are_refused_naming_the_argument() {
        let out = "s3://b/o.mp4";
        let p = problems(&["ffmpeg", "-i", "/etc/passwd", out], out);
        assert!(
            p.contains("data.chainCmds[2]") && p.contains("must be an s3://"),
            "{p}"
        );
        let p = problems(
            &["ffmpeg", "-i", "concat:/etc/passwd|/etc/shadow", out],
            out,
        );
        assert!(p.contains("data.chainCmds[2]"), "{p}");
        let p = problems(
            &[
                "ffmpeg",
                "-f",
                "concat",
                "-safe",
                "0",
                "-i",
                "s3://b/list.txt",
                out,
            ],
            out,
        );
        assert!(p.contains("the concat format"), "{p}");
        let p = problems(
            &["ffmpeg", "-f", "lavfi", "-i", "movie=/etc/passwd", out],
            out,
        );
        assert!(
            p.contains("data.chainCmds[4]") && p.contains("movie filter"),
            "{p}"
        );
        let p = problems(
            &[
                "ffmpeg",
                "-i",
                "s3://b/in.mp4",
                "-vf",
                "[in]scale=2:2,subtitles=/etc/x.srt[out]",
                out,
            ],
            out,
        );
        assert!(p.contains("subtitles filter"), "{p}");
        let p = problems(
            &[
                "ffmpeg",
                "-i",
                "s3://b/in.mp4",
                "-filter_complex",
                "amovie@a=/x.wav",
                out,
            ],
            out,
        );
        assert!(p.contains("amovie filter"), "{p}");
        let p = problems(
            &[
                "ffmpeg",
                "-i",
                "s3://b/in.mp4",
                "-vf",
                "drawtext=textfile=/etc/passwd",
                out,
            ],
            out,
        );
        assert!(p.contains("textfile option"), "{p}");
        let p = problems(
            &["ffmpeg", "-i", "s3://b/in.mp4", out, "/tmp/escape.mp4"],
            out,
        );
        assert!(
            p.contains("data.chainCmds[4]") && p.contains("outside the chain"),
            "{p}"
        );
        let p = problems(&["ffmpeg", "-i", "s3://b/in.mp4", "-f", "hls", out], out);
        assert!(p.contains("the hls format"), "{p}");
        let p = problems(
            &[
                "ffmpeg",
                "-filter_script:v",
                "/x",
                "-i",
                "s3://b/in.mp4",
                out,
            ],
            out,
        );
        assert!(p.contains("-filter_script:v reads or writes"), "{p}");
        let p = problems(
            &[
                "ffmpeg",
                "-i",
                "s3://b/in.mp4",
                "http://evil.example/up",
                out,
            ],
            out,
        );
        assert!(p.contains("outside the chain"), "{p}");
        // The output must be a URI of the store, and appear in the chain.
        let p = problems(
            &["ffmpeg", "-i", "s3://b/in.mp4", "/volume/o.mp4"],
            "/volume/o.mp4",
        );
        assert!(
            p.contains("data.output must be an s3:// or gs:// URI"),
            "{p}"
        );
        let p = problems(&["ffmpeg", "-i", "s3://b/in.mp4", "s3://b/other.mp4"], out);
        assert!(p.contains("does not appear in data.chainCmds"), "{p}");
    }
}
