//! The small media tasks RunPod ffmpeg workers take beside a full transcode, read and
//! checked before any work: the task style (`{"task": NAME, "parameters": {…}}`) and the
//! action style (`{"action": NAME, "data": {…}}`), with the parameter names users send
//! today. Every problem names its parameter.
//!
//! The workflow that runs them is `task_workflow`; the activities' names are in
//! `activities::MediaTaskActivities`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Where a task writes its result: an object URI, or a presigned HTTPS PUT URL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskOutput {
    Uri(String),
    PutUrl(String),
}

/// `STAGE_OBJECT`: copy one object into a bucket.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageObject {
    pub source_uri: String,
    pub dest_uri: String,
}

/// `DOWNSAMPLING`: re-encode to a height (aspect kept) as MP4.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Downsampling {
    pub input_uri: String,
    pub output: TaskOutput,
    pub height: u32,
}

/// A video task (`DOWNSAMPLING`, `ENCODING` with burned subtitles) on a picture at least
/// this long, read from and written to objects of the worker's stores, is made in chunks;
/// a shorter one in one activity, where chunks would cost more than they save.
pub const CHUNKED_FROM_SECONDS: f64 = 120.0;

/// What a long `DOWNSAMPLING` is made of when it is cut into chunks: its source and output
/// as objects of this worker's stores, the probe, and the size chosen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DownsamplePlan {
    pub source: crate::media::ObjectRef,
    pub dest: crate::media::ObjectRef,
    pub probe: crate::media::ProbeResult,
    pub width: u32,
    pub height: u32,
    pub source_width: u32,
    pub source_height: u32,
    pub upscale_refused: bool,
    /// Key prefix of the parts (in `dest`'s bucket); plans recorded before it was carried
    /// use `{dest}.parts/`.
    #[serde(default)]
    pub parts: Option<String>,
    /// Where the joined output goes when `dest` is only its place in the parts folder.
    #[serde(default)]
    pub deliver: Option<TaskDelivery>,
    /// Copies the plan made (a source that is not a store object), removed with the parts.
    #[serde(default)]
    pub staged: Vec<crate::media::ObjectRef>,
}

/// The picture of a video task (`DOWNSAMPLING`, `ENCODING` that burns subtitles in) from a
/// source `video`, at `size`: deinterlaced when it is interlaced, HDR tone mapped to SDR
/// BT.709, 8-bit 4:2:0, `subtitles` drawn, an IDR frame every 2 s. One run and the chunks'
/// pieces make it with the same filters; the pieces also put it on a constant-rate grid.
pub fn task_picture(
    video: &crate::media::VideoInfo,
    size: (u32, u32),
    encoder: crate::media::PictureEncoder,
    subtitles: Option<crate::media::ObjectRef>,
) -> crate::media::MezzanineVideo {
    crate::media::MezzanineVideo {
        frame_rate: video.output_frame_rate(),
        gop_seconds: 2,
        tone_map_from: video.hdr_transfer(),
        deinterlace: video.is_interlaced(),
        size: Some(size),
        encoder,
        subtitles,
    }
}

/// A chunked task's joined output, in its parts folder, to be delivered where the payload
/// asked (a presigned PUT URL, `gs://`) by `task_deliver`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskDelivery {
    /// The payload field naming the output, for messages.
    pub field: String,
    pub output: TaskOutput,
    pub object: crate::media::ObjectRef,
}

/// How a task's output sound is made from a track: one rule for the one-run and the
/// chunked forms of a task.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SoundRule {
    /// Silence after a track shorter than the output (never with a copy).
    pub pad: bool,
    /// An AAC track is copied untouched; anything else is encoded at `bitrate_kbps`.
    pub copy_aac: bool,
    pub bitrate_kbps: u32,
}

impl SoundRule {
    /// `DOWNSAMPLING`: the source's sound, AAC kept as it is.
    pub const DOWNSAMPLED: SoundRule = SoundRule {
        pad: false,
        copy_aac: true,
        bitrate_kbps: 128,
    };
    /// `ENCODING` with a sound track given: encoded, padded with silence to the video's end.
    pub const GIVEN: SoundRule = SoundRule {
        pad: true,
        copy_aac: false,
        bitrate_kbps: 192,
    };
    /// `ENCODING` in the legacy form: the video's own sound, AAC kept as it is.
    pub const OWN: SoundRule = SoundRule {
        pad: false,
        copy_aac: true,
        bitrate_kbps: 192,
    };
}

/// How a given sound track was fitted to a video of `video_seconds`: the seconds of
/// silence added after it and the seconds cut from its end (to the millisecond), as
/// `ENCODING` answers them (`audio_padded_sec`, `audio_cut_sec`).
pub fn sound_fit(video_seconds: f64, sound_seconds: f64) -> (f64, f64) {
    let ms = |seconds: f64| (seconds.max(0.0) * 1000.0).round() / 1000.0;
    (
        ms(video_seconds - sound_seconds),
        ms(sound_seconds - video_seconds),
    )
}

/// Where a chunked task's sound is read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SoundSource {
    /// A URI of the payload (checked as any task input).
    Uri(String),
    /// The task's video as its plan placed it in a store (the source object, or its copy
    /// beside the parts).
    Object(crate::media::ObjectRef),
}

/// The sound track of a chunked task, made in one run beside its pieces.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskSound {
    /// The payload field naming the track (for messages) and where it is read.
    pub field: String,
    pub source: SoundSource,
    pub dest: crate::media::ObjectRef,
    /// The track ends here (a longer one is cut).
    pub length_seconds: f64,
    pub rule: SoundRule,
}

/// What a long `ENCODING` with burned subtitles is made of when it is cut into chunks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EncodingPlan {
    pub source: crate::media::ObjectRef,
    pub dest: crate::media::ObjectRef,
    /// The video's probe, its timeline ending with the picture (the output's length).
    pub probe: crate::media::ProbeResult,
    pub width: u32,
    pub height: u32,
    /// The checked ASS file, copied beside the parts for every piece to read.
    pub subtitles: crate::media::ObjectRef,
    /// The sound beside the pieces; `None` when the video has none and none is given.
    pub sound: Option<TaskSound>,
    /// Length of the given track, for the answer's `audio_padded_sec`/`audio_cut_sec`.
    pub given_sound_seconds: Option<f64>,
    /// ISO 639-2 code written on the sound.
    pub language: Option<String>,
    /// Key prefix of the parts, in `dest`'s bucket.
    pub parts: String,
    /// Where the joined output goes when `dest` is only its place in the parts folder.
    pub deliver: Option<TaskDelivery>,
    /// Copies the plan made (a source that is not a store object), removed with the parts.
    pub staged: Vec<crate::media::ObjectRef>,
}

/// `AUDIO_TRIM`: a span of the sound as WAV.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AudioTrim {
    pub source_uri: String,
    pub start_seconds: f64,
    pub duration_seconds: f64,
    pub output: TaskOutput,
    /// A copy of the source in a store, read instead of `source_uri` (a batch copies an
    /// `http(s)`/`gs://` master once for all its segments).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged: Option<crate::media::ObjectRef>,
}

/// A payload's input copied once into a store for the parts of one task that all read it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageSource {
    /// The payload field naming it, for messages.
    pub field: String,
    pub uri: String,
    /// An output of the task, whose place decides where the copy waits.
    pub output: TaskOutput,
}

/// One span of an `AUDIO_TRIM` batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrimSegment {
    pub start_seconds: f64,
    pub duration_seconds: f64,
    pub output: TaskOutput,
}

/// `AUDIO_TRIM` with `segments`: N spans of one source (the "segmentation" pattern), one
/// workflow that reports how many are done.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AudioTrimBatch {
    pub source_uri: String,
    pub segments: Vec<TrimSegment>,
}

impl AudioTrimBatch {
    /// The single trim of segment `i`.
    pub fn trim(&self, i: usize) -> Option<AudioTrim> {
        self.segments.get(i).map(|s| AudioTrim {
            source_uri: self.source_uri.clone(),
            start_seconds: s.start_seconds,
            duration_seconds: s.duration_seconds,
            output: s.output.clone(),
            staged: None,
        })
    }
}

/// `ENCODING`: the video with another sound track, subtitles burned in when asked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Encoding {
    pub id: String,
    pub language: String,
    pub burn_subtitles: bool,
    pub input_video_uri: String,
    /// `None` keeps the video's own sound (the legacy form names no audio).
    pub input_audio_uri: Option<String>,
    pub subtitles_uri: Option<String>,
    pub output: TaskOutput,
}

/// `process`: one ffmpeg argument vector and its output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Process {
    pub chain: Vec<String>,
    pub output: String,
}

/// One chain to run and where it sits in the payload (`data`, `data.processes[2]`), for
/// messages.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProcessStep {
    pub field: String,
    pub process: Process,
}

/// `probe`: ffprobe's JSON of one input, with our probe facts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    pub input: String,
}

/// `vmaf`: the VMAF score of `distorted` against `reference`, per-frame scores to
/// `output` when given.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Vmaf {
    pub reference: String,
    pub distorted: String,
    pub output: Option<String>,
    /// One of [`VMAF_MODELS`]; `None`: the first, the standard one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// The VMAF models `vmaf` scores with (libvmaf's built-in ones): the standard model for
/// 1080p viewing at 3 picture heights (the default), its 4K TV model, and the `neg`
/// variants that do not reward enhancement such as sharpening.
pub const VMAF_MODELS: [&str; 4] = [
    "vmaf_v0.6.1",
    "vmaf_4k_v0.6.1",
    "vmaf_v0.6.1neg",
    "vmaf_4k_v0.6.1neg",
];

/// One task or action, as asked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum MediaTask {
    StageObject(StageObject),
    Downsampling(Downsampling),
    AudioTrim(AudioTrim),
    AudioTrimBatch(AudioTrimBatch),
    Encoding(Encoding),
    Process(Process),
    /// `multi_process`: several chains, run in parallel.
    MultiProcess(Vec<Process>),
    Probe(Probe),
    Vmaf(Vmaf),
}

impl MediaTask {
    /// The name the payload gave: a task (`AUDIO_TRIM`) or an action (`probe`).
    pub fn name(&self) -> &'static str {
        match self {
            MediaTask::StageObject(_) => "STAGE_OBJECT",
            MediaTask::Downsampling(_) => "DOWNSAMPLING",
            MediaTask::AudioTrim(_) | MediaTask::AudioTrimBatch(_) => "AUDIO_TRIM",
            MediaTask::Encoding(_) => "ENCODING",
            MediaTask::Process(_) => "process",
            MediaTask::MultiProcess(_) => "multi_process",
            MediaTask::Probe(_) => "probe",
            MediaTask::Vmaf(_) => "vmaf",
        }
    }

    /// Action-style requests answer `{"success": true, "result": …}`; tasks answer with
    /// their result itself.
    pub fn is_action(&self) -> bool {
        matches!(
            self,
            MediaTask::Process(_)
                | MediaTask::MultiProcess(_)
                | MediaTask::Probe(_)
                | MediaTask::Vmaf(_)
        )
    }

    /// The payload's idempotency key, when it carries one (`ENCODING`'s `id`).
    pub fn id(&self) -> Option<&str> {
        match self {
            MediaTask::Encoding(e) => Some(e.id.as_str()),
            _ => None,
        }
    }

    /// Every URI or URL the request names, to seal those that carry a signature before
    /// they reach workflow history.
    pub fn uris_mut(&mut self) -> Vec<&mut String> {
        fn out(o: &mut TaskOutput) -> &mut String {
            match o {
                TaskOutput::Uri(u) | TaskOutput::PutUrl(u) => u,
            }
        }
        match self {
            MediaTask::StageObject(t) => vec![&mut t.source_uri, &mut t.dest_uri],
            MediaTask::Downsampling(t) => vec![&mut t.input_uri, out(&mut t.output)],
            MediaTask::AudioTrim(t) => vec![&mut t.source_uri, out(&mut t.output)],
            MediaTask::AudioTrimBatch(t) => {
                let mut all = vec![&mut t.source_uri];
                all.extend(t.segments.iter_mut().map(|s| out(&mut s.output)));
                all
            }
            MediaTask::Encoding(t) => {
                let mut all = vec![&mut t.input_video_uri, out(&mut t.output)];
                all.extend(t.input_audio_uri.as_mut());
                all.extend(t.subtitles_uri.as_mut());
                all
            }
            MediaTask::Probe(t) => vec![&mut t.input],
            MediaTask::Vmaf(t) => {
                let mut all = vec![&mut t.reference, &mut t.distorted];
                all.extend(t.output.as_mut());
                all
            }
            MediaTask::Process(_) | MediaTask::MultiProcess(_) => Vec::new(),
        }
    }
}

/// The task names and action names understood, for messages.
pub const TASKS: [&str; 4] = ["STAGE_OBJECT", "DOWNSAMPLING", "AUDIO_TRIM", "ENCODING"];
pub const ACTIONS: [&str; 4] = ["process", "multi_process", "probe", "vmaf"];
/// The most chains one `multi_process` may run.
pub const MAX_PROCESSES: usize = 16;
/// The most segments one `AUDIO_TRIM` batch may cut.
pub const MAX_TRIM_SEGMENTS: usize = 1000;
/// The longest argument vector one chain may have.
pub const MAX_CHAIN_ARGS: usize = 512;

/// Why a task was refused: one entry per problem, each naming its parameter.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid task: {}", .problems.join("; "))]
pub struct TaskError {
    pub problems: Vec<String>,
}

/// Whether a RunPod job's `input` is a task or an action rather than a media-api payload.
pub fn is_task(input: &Value) -> bool {
    input.get("task").is_some() || input.get("action").is_some()
}

/// Reads a task- or action-style `input`.
pub fn parse_task(input: &Value) -> Result<MediaTask, TaskError> {
    let refuse = |p: String| TaskError { problems: vec![p] };
    let Some(fields) = input.as_object() else {
        return Err(refuse("the input must be a JSON object".into()));
    };
    match (fields.get("task"), fields.get("action")) {
        (Some(_), Some(_)) => Err(refuse("give either task or action, not both".into())),
        (Some(Value::String(task)), None) => {
            let params = section(fields, "parameters")?;
            let mut r = Reader::new("parameters", params);
            let task = match task.as_str() {
                "STAGE_OBJECT" => MediaTask::StageObject(StageObject {
                    source_uri: r.uri("source_uri"),
                    dest_uri: r.object_uri("dest_uri"),
                }),
                "DOWNSAMPLING" => MediaTask::Downsampling(Downsampling {
                    input_uri: r.uri("original_video_uri"),
                    output: r.output("output_video_uri"),
                    height: r.height("resolution"),
                }),
                "AUDIO_TRIM" if params.contains_key("segments") => r.trim_batch(),
                "AUDIO_TRIM" => MediaTask::AudioTrim(AudioTrim {
                    source_uri: r.uri("source_uri"),
                    start_seconds: r.seconds("start_sec", 0.0),
                    duration_seconds: r.seconds("duration_sec", f64::MIN_POSITIVE),
                    output: r.output("output_video_uri"),
                    staged: None,
                }),
                "ENCODING" => r.encoding(),
                other => {
                    return Err(refuse(format!(
                        "task {:?} is not one of {}",
                        other.chars().take(32).collect::<String>(),
                        TASKS.join(", ")
                    )))
                }
            };
            r.finish(task)
        }
        (None, Some(Value::String(action))) => {
            let data = section(fields, "data")?;
            let mut r = Reader::new("data", data);
            let task = match action.as_str() {
                "process" => MediaTask::Process(Process {
                    chain: r.chain("chainCmds"),
                    output: r.text("output"),
                }),
                "multi_process" => MediaTask::MultiProcess(r.processes("processes")),
                "probe" => MediaTask::Probe(Probe {
                    input: r.text("input"),
                }),
                "vmaf" => MediaTask::Vmaf(Vmaf {
                    reference: r.text("input1"),
                    distorted: r.text("input2"),
                    output: r.optional_text("output"),
                    model: r.optional_text("model").and_then(|model| {
                        if VMAF_MODELS.contains(&model.as_str()) {
                            Some(model)
                        } else {
                            r.problems.push(format!(
                                "{} {:?} is not one of {}",
                                r.name("model"),
                                model.chars().take(40).collect::<String>(),
                                VMAF_MODELS.join(", ")
                            ));
                            None
                        }
                    }),
                }),
                other => {
                    return Err(refuse(format!(
                        "action {:?} is not one of {}",
                        other.chars().take(32).collect::<String>(),
                        ACTIONS.join(", ")
                    )))
                }
            };
            r.finish(task)
        }
        (Some(_), None) => Err(refuse(format!(
            "task must be a string, one of {}",
            TASKS.join(", ")
        ))),
        (None, Some(_)) => Err(refuse(format!(
            "action must be a string, one of {}",
            ACTIONS.join(", ")
        ))),
        (None, None) => Err(refuse("the input names no task or action".into())),
    }
}

fn section<'a>(
    fields: &'a Map<String, Value>,
    name: &str,
) -> Result<&'a Map<String, Value>, TaskError> {
    fields
        .get(name)
        .and_then(Value::as_object)
        .ok_or_else(|| TaskError {
            problems: vec![format!("{name} must be an object")],
        })
}

/// Reads parameters one by one, collecting every problem.
struct Reader<'a> {
    section: &'static str,
    fields: &'a Map<String, Value>,
    problems: Vec<String>,
}

impl<'a> Reader<'a> {
    fn new(section: &'static str, fields: &'a Map<String, Value>) -> Self {
        Self {
            section,
            fields,
            problems: Vec::new(),
        }
    }

    fn name(&self, key: &str) -> String {
        format!("{}.{key}", self.section)
    }

    fn finish(self, task: MediaTask) -> Result<MediaTask, TaskError> {
        if self.problems.is_empty() {
            Ok(task)
        } else {
            Err(TaskError {
                problems: self.problems,
            })
        }
    }

    fn optional_text(&mut self, key: &str) -> Option<String> {
        match self.fields.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.trim().is_empty() => {
                self.problems.push(format!("{} is empty", self.name(key)));
                None
            }
            Some(Value::String(s)) if s.len() > 8192 => {
                self.problems
                    .push(format!("{} is over 8192 bytes", self.name(key)));
                None
            }
            Some(Value::String(s)) => Some(s.trim().to_string()),
            Some(_) => {
                self.problems
                    .push(format!("{} must be a string", self.name(key)));
                None
            }
        }
    }

    fn text(&mut self, key: &str) -> String {
        let value = self.optional_text(key);
        if value.is_none() && !self.problems.iter().any(|p| p.starts_with(&self.name(key))) {
            self.problems
                .push(format!("{} is required", self.name(key)));
        }
        value.unwrap_or_default()
    }

    /// A URI of a scheme inputs may come from.
    fn uri(&mut self, key: &str) -> String {
        let uri = self.text(key);
        if !uri.is_empty() && !has_scheme(&uri, &["s3", "gs", "http", "https"]) {
            self.problems.push(format!(
                "{} must be an s3://, gs://, http:// or https:// URI",
                self.name(key)
            ));
        }
        uri
    }

    /// A URI of a store outputs may go to.
    fn object_uri(&mut self, key: &str) -> String {
        let uri = self.text(key);
        if !uri.is_empty() && !has_scheme(&uri, &["s3", "gs"]) {
            self.problems
                .push(format!("{} must be an s3:// or gs:// URI", self.name(key)));
        }
        uri
    }

    /// `key` as an object URI, or `output_put_url` (an https presigned PUT) instead.
    fn output(&mut self, key: &str) -> TaskOutput {
        match (
            self.fields.get(key).filter(|v| !v.is_null()),
            self.fields.get("output_put_url").filter(|v| !v.is_null()),
        ) {
            (Some(_), Some(_)) => {
                self.problems.push(format!(
                    "give either {} or {}, not both",
                    self.name(key),
                    self.name("output_put_url")
                ));
                TaskOutput::Uri(String::new())
            }
            (None, Some(_)) => {
                let url = self.text("output_put_url");
                if !url.is_empty() && !has_scheme(&url, &["https", "http"]) {
                    self.problems.push(format!(
                        "{} must be an http(s) URL",
                        self.name("output_put_url")
                    ));
                }
                TaskOutput::PutUrl(url)
            }
            _ => TaskOutput::Uri(self.object_uri(key)),
        }
    }

    /// A number of seconds at least `min`.
    fn seconds(&mut self, key: &str, min: f64) -> f64 {
        match self.fields.get(key) {
            None | Some(Value::Null) => {
                self.problems
                    .push(format!("{} is required", self.name(key)));
                0.0
            }
            Some(v) => match v.as_f64() {
                Some(n) if n.is_finite() && n >= min && n <= 24.0 * 3600.0 => n,
                Some(n) if min > 0.0 => {
                    self.problems.push(format!(
                        "{} must be a number of seconds above 0 (at most a day), got {n}",
                        self.name(key)
                    ));
                    0.0
                }
                Some(n) => {
                    self.problems.push(format!(
                        "{} must be a number of seconds from 0 (at most a day), got {n}",
                        self.name(key)
                    ));
                    0.0
                }
                None => {
                    self.problems
                        .push(format!("{} must be a number, got {v}", self.name(key)));
                    0.0
                }
            },
        }
    }

    /// `"360p"`, `"360"` or `360`: a picture height.
    fn height(&mut self, key: &str) -> u32 {
        let raw = match self.fields.get(key) {
            None | Some(Value::Null) => {
                self.problems
                    .push(format!("{} is required", self.name(key)));
                return 0;
            }
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => {
                let s = s.trim().to_ascii_lowercase();
                s.strip_suffix('p').unwrap_or(&s).parse::<u64>().ok()
            }
            Some(_) => None,
        };
        match raw.and_then(|h| u32::try_from(h).ok()) {
            Some(h) if (2..=4320).contains(&h) && h % 2 == 0 => h,
            _ => {
                self.problems.push(format!(
                    "{} must be a height such as \"360p\" or 240 (even, 2 to 4320)",
                    self.name(key)
                ));
                0
            }
        }
    }

    fn flag(&mut self, key: &str) -> bool {
        match self.fields.get(key) {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                self.problems
                    .push(format!("{} must be true or false", self.name(key)));
                false
            }
        }
    }

    fn chain(&mut self, key: &str) -> Vec<String> {
        let name = self.name(key);
        let Some(items) = self.fields.get(key).and_then(Value::as_array) else {
            self.problems.push(format!(
                "{name} must be an ffmpeg argument vector (an array of strings starting with \"ffmpeg\")"
            ));
            return Vec::new();
        };
        let args: Option<Vec<String>> = items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect();
        match args {
            Some(args)
                if args.first().map(String::as_str) == Some("ffmpeg")
                    && args.len() <= MAX_CHAIN_ARGS =>
            {
                args
            }
            Some(args) if args.len() > MAX_CHAIN_ARGS => {
                self.problems.push(format!(
                    "{name} has {} arguments, over {MAX_CHAIN_ARGS}",
                    args.len()
                ));
                Vec::new()
            }
            Some(_) => {
                self.problems
                    .push(format!("{name} must start with \"ffmpeg\""));
                Vec::new()
            }
            None => {
                self.problems.push(format!("{name} must hold only strings"));
                Vec::new()
            }
        }
    }

    /// `AUDIO_TRIM` with `segments`: many spans of one source, each with its own output.
    fn trim_batch(&mut self) -> MediaTask {
        let source_uri = self.uri("source_uri");
        for single in [
            "start_sec",
            "duration_sec",
            "output_video_uri",
            "output_put_url",
        ] {
            if self.fields.contains_key(single) {
                self.problems.push(format!(
                    "{} cannot be given with {}: each segment has its own",
                    self.name(single),
                    self.name("segments")
                ));
            }
        }
        let name = self.name("segments");
        let items = match self.fields.get("segments").and_then(Value::as_array) {
            Some(items) if (1..=MAX_TRIM_SEGMENTS).contains(&items.len()) => items,
            Some(items) => {
                self.problems.push(format!(
                    "{name} must list from 1 to {MAX_TRIM_SEGMENTS} segments, got {}",
                    items.len()
                ));
                return MediaTask::AudioTrimBatch(AudioTrimBatch {
                    source_uri,
                    segments: Vec::new(),
                });
            }
            None => {
                self.problems.push(format!(
                    "{name} must be a list of {{start_sec, duration_sec, output_video_uri or output_put_url}}"
                ));
                return MediaTask::AudioTrimBatch(AudioTrimBatch {
                    source_uri,
                    segments: Vec::new(),
                });
            }
        };
        let mut segments = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let Some(fields) = item.as_object() else {
                self.problems.push(format!("{name}[{i}] must be an object"));
                continue;
            };
            let mut inner = Reader {
                section: "parameters",
                fields,
                problems: Vec::new(),
            };
            let segment = TrimSegment {
                start_seconds: inner.seconds("start_sec", 0.0),
                duration_seconds: inner.seconds("duration_sec", f64::MIN_POSITIVE),
                output: inner.output("output_video_uri"),
            };
            self.problems.extend(
                inner
                    .problems
                    .into_iter()
                    .map(|p| p.replace("parameters.", &format!("{name}[{i}]."))),
            );
            segments.push(segment);
        }
        MediaTask::AudioTrimBatch(AudioTrimBatch {
            source_uri,
            segments,
        })
    }

    fn processes(&mut self, key: &str) -> Vec<Process> {
        let name = self.name(key);
        let Some(items) = self.fields.get(key).and_then(Value::as_array) else {
            self.problems
                .push(format!("{name} must be a list of {{chainCmds, output}}"));
            return Vec::new();
        };
        if items.is_empty() || items.len() > MAX_PROCESSES {
            self.problems.push(format!(
                "{name} must list from 1 to {MAX_PROCESSES} processes, got {}",
                items.len()
            ));
            return Vec::new();
        }
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let Some(fields) = item.as_object() else {
                self.problems.push(format!(
                    "{name}[{i}] must be an object {{chainCmds, output}}"
                ));
                continue;
            };
            let mut inner = Reader {
                section: "data",
                fields,
                problems: Vec::new(),
            };
            let chain = inner.chain("chainCmds");
            let output = inner.text("output");
            self.problems.extend(
                inner
                    .problems
                    .into_iter()
                    .map(|p| p.replacen("data.", &format!("{name}[{i}]."), 1)),
            );
            out.push(Process { chain, output });
        }
        out
    }

    /// `ENCODING` in its URI form, or its legacy form (bucket, folder and names).
    fn encoding(&mut self) -> MediaTask {
        let id = self.text("id");
        let language = self.text("language");
        let burn = self.flag("subtitles");
        let legacy =
            self.fields.contains_key("input_video_name") || self.fields.contains_key("bucket");
        if legacy {
            let bucket = self.text("bucket");
            let folder = self.text("bucket_parent_folder");
            let video = self.text("input_video_name");
            let name = self.text("name");
            let folder = folder.trim_matches('/');
            let at = |file: &str| format!("gs://{bucket}/{folder}/{file}");
            MediaTask::Encoding(Encoding {
                id,
                language,
                burn_subtitles: burn,
                input_video_uri: at(&video),
                input_audio_uri: None,
                subtitles_uri: None,
                output: TaskOutput::Uri(at(&name)),
            })
        } else {
            let subtitles_uri = self.optional_text("subtitles_uri");
            if burn && subtitles_uri.is_none() {
                self.problems.push(format!(
                    "{} is required when {} is true",
                    self.name("subtitles_uri"),
                    self.name("subtitles")
                ));
            }
            MediaTask::Encoding(Encoding {
                id,
                language,
                burn_subtitles: burn,
                input_video_uri: self.uri("input_video_uri"),
                input_audio_uri: Some(self.uri("input_audio_uri")),
                subtitles_uri,
                output: self.output("output_video_uri"),
            })
        }
    }
}

fn has_scheme(uri: &str, schemes: &[&str]) -> bool {
    uri.split_once("://").is_some_and(|(scheme, rest)| {
        schemes.contains(&scheme.to_ascii_lowercase().as_str()) && !rest.is_empty()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problems(input: Value) -> Vec<String> {
        parse_task(&input).expect_err("refused").problems
    }

    #[test]
    fn every_task_shape_of_the_reference_is_read() {
        assert_eq!(
            parse_task(&json!({"task": "STAGE_OBJECT", "parameters": {
                "source_uri": "https://cdn.example/master.m4a",
                "dest_uri": "s3://videos/pipelines/j1/inputs/audio/master.m4a"}})),
            Ok(MediaTask::StageObject(StageObject {
                source_uri: "https://cdn.example/master.m4a".into(),
                dest_uri: "s3://videos/pipelines/j1/inputs/audio/master.m4a".into(),
            }))
        );
        for (resolution, height) in [(json!("360p"), 360), (json!(240), 240), (json!("480"), 480)] {
            let task = parse_task(&json!({"task": "DOWNSAMPLING", "parameters": {
                "original_video_uri": "gs://b/in.mp4", "output_put_url": "https://put.example/x?sig=1",
                "resolution": resolution}}))
            .unwrap();
            assert_eq!(
                task,
                MediaTask::Downsampling(Downsampling {
                    input_uri: "gs://b/in.mp4".into(),
                    output: TaskOutput::PutUrl("https://put.example/x?sig=1".into()),
                    height,
                })
            );
        }
        assert_eq!(
            parse_task(&json!({"task": "AUDIO_TRIM", "parameters": {
                "source_uri": "s3://videos/master.m4a", "start_sec": 12.5, "duration_sec": 3,
                "output_video_uri": "s3://videos/stage/segment_0.wav"}})),
            Ok(MediaTask::AudioTrim(AudioTrim {
                source_uri: "s3://videos/master.m4a".into(),
                start_seconds: 12.5,
                duration_seconds: 3.0,
                output: TaskOutput::Uri("s3://videos/stage/segment_0.wav".into()),
                staged: None,
            }))
        );
        assert_eq!(
            parse_task(&json!({"task": "ENCODING", "parameters": {
                "id": "e1", "language": "en", "subtitles": true,
                "input_video_uri": "s3://v/in.mp4", "input_audio_uri": "s3://v/voice.wav",
                "subtitles_uri": "s3://v/subs.ass", "output_video_uri": "s3://v/out.mp4"}})),
            Ok(MediaTask::Encoding(Encoding {
                id: "e1".into(),
                language: "en".into(),
                burn_subtitles: true,
                input_video_uri: "s3://v/in.mp4".into(),
                input_audio_uri: Some("s3://v/voice.wav".into()),
                subtitles_uri: Some("s3://v/subs.ass".into()),
                output: TaskOutput::Uri("s3://v/out.mp4".into()),
            }))
        );
        // The legacy form maps onto the URI form.
        assert_eq!(
            parse_task(&json!({"task": "ENCODING", "parameters": {
                "id": "e2", "language": "fr", "subtitles": false, "name": "final.mp4",
                "input_video_name": "raw.mp4", "bucket": "media", "bucket_parent_folder": "projects/p1/"}})),
            Ok(MediaTask::Encoding(Encoding {
                id: "e2".into(),
                language: "fr".into(),
                burn_subtitles: false,
                input_video_uri: "gs://media/projects/p1/raw.mp4".into(),
                input_audio_uri: None,
                subtitles_uri: None,
                output: TaskOutput::Uri("gs://media/projects/p1/final.mp4".into()),
            }))
        );
    }

    #[test]
    fn every_action_shape_of_the_reference_is_read() {
        assert_eq!(
            parse_task(&json!({"action": "probe", "data": {"input": "/volume/in.mp4"}})),
            Ok(MediaTask::Probe(Probe {
                input: "/volume/in.mp4".into()
            }))
        );
        assert_eq!(
            parse_task(
                &json!({"action": "vmaf", "data": {"input1": "a.mp4", "input2": "b.mp4", "output": "v.json"}})
            ),
            Ok(MediaTask::Vmaf(Vmaf {
                reference: "a.mp4".into(),
                distorted: "b.mp4".into(),
                output: Some("v.json".into()),
                model: None,
            }))
        );
        let with_model = |model: &str| {
            parse_task(
                &json!({"action": "vmaf", "data": {"input1": "a.mp4", "input2": "b.mp4", "model": model}}),
            )
        };
        assert!(matches!(
            with_model("vmaf_4k_v0.6.1"),
            Ok(MediaTask::Vmaf(Vmaf { model: Some(m), .. })) if m == "vmaf_4k_v0.6.1"
        ));
        let refused = with_model("/etc/passwd").expect_err("not a model");
        assert!(
            refused.problems[0].contains("data.model")
                && refused.problems[0].contains("vmaf_v0.6.1"),
            "{refused}"
        );
        let chain = json!(["ffmpeg", "-i", "in.mp4", "out.mp4"]);
        assert_eq!(
            parse_task(
                &json!({"action": "process", "data": {"chainCmds": chain, "output": "out.mp4"}})
            ),
            Ok(MediaTask::Process(Process {
                chain: vec![
                    "ffmpeg".into(),
                    "-i".into(),
                    "in.mp4".into(),
                    "out.mp4".into()
                ],
                output: "out.mp4".into(),
            }))
        );
        let task = parse_task(&json!({"action": "multi_process", "data": {"processes": [
            {"chainCmds": chain, "output": "a.mp4"}, {"chainCmds": chain, "output": "b.mp4"}]}}))
        .unwrap();
        assert!(matches!(task, MediaTask::MultiProcess(processes) if processes.len() == 2));
        assert!(is_task(&json!({"action": "probe"})) && !is_task(&json!({"mediaId": "m"})));
    }

    #[test]
    fn a_trim_batch_reads_each_segment_and_names_its_problems() {
        let task = parse_task(&json!({"task": "AUDIO_TRIM", "parameters": {
            "source_uri": "s3://v/master.m4a",
            "segments": [
                {"start_sec": 0, "duration_sec": 2.5, "output_video_uri": "s3://v/s/segment_0.wav"},
                {"start_sec": 2.5, "duration_sec": 2, "output_put_url": "https://put.example/s1?sig=x"}]}}))
        .unwrap();
        let MediaTask::AudioTrimBatch(batch) = task else {
            panic!("not a batch: {task:?}")
        };
        assert_eq!(batch.segments.len(), 2);
        assert_eq!(
            batch.trim(1),
            Some(AudioTrim {
                source_uri: "s3://v/master.m4a".into(),
                start_seconds: 2.5,
                duration_seconds: 2.0,
                output: TaskOutput::PutUrl("https://put.example/s1?sig=x".into()),
                staged: None,
            })
        );
        assert_eq!(
            problems(json!({"task": "AUDIO_TRIM", "parameters": {
                "source_uri": "s3://v/master.m4a", "start_sec": 1,
                "segments": [{"start_sec": 0, "duration_sec": 1, "output_video_uri": "s3://v/a.wav"},
                             {"start_sec": -2, "duration_sec": 0}, 7]}})),
            [
                "parameters.start_sec cannot be given with parameters.segments: each segment has its own",
                "parameters.segments[1].start_sec must be a number of seconds from 0 (at most a day), got -2",
                "parameters.segments[1].duration_sec must be a number of seconds above 0 (at most a day), got 0",
                "parameters.segments[1].output_video_uri is required",
                "parameters.segments[2] must be an object",
            ]
        );
        assert_eq!(
            problems(json!({"task": "AUDIO_TRIM", "parameters": {
                "source_uri": "s3://v/m.wav", "segments": []}})),
            ["parameters.segments must list from 1 to 1000 segments, got 0"]
        );
    }

    #[test]
    fn every_problem_names_its_parameter_before_any_work() {
        assert_eq!(
            problems(json!({"task": "RESIZE", "parameters": {}})),
            ["task \"RESIZE\" is not one of STAGE_OBJECT, DOWNSAMPLING, AUDIO_TRIM, ENCODING"]
        );
        assert_eq!(
            problems(json!({"action": "shell", "data": {}})),
            ["action \"shell\" is not one of process, multi_process, probe, vmaf"]
        );
        assert_eq!(
            problems(json!({"task": "AUDIO_TRIM", "parameters": {
                "source_uri": "file:///etc/passwd", "start_sec": -1, "duration_sec": "3",
                "output_video_uri": "https://example.com/out.wav"}})),
            [
                "parameters.source_uri must be an s3://, gs://, http:// or https:// URI",
                "parameters.start_sec must be a number of seconds from 0 (at most a day), got -1",
                "parameters.duration_sec must be a number, got \"3\"",
                "parameters.output_video_uri must be an s3:// or gs:// URI",
            ]
        );
        assert_eq!(
            problems(json!({"task": "DOWNSAMPLING", "parameters": {
                "original_video_uri": "s3://b/in.mp4", "resolution": "hd"}})),
            [
                "parameters.output_video_uri is required",
                "parameters.resolution must be a height such as \"360p\" or 240 (even, 2 to 4320)",
            ]
        );
        assert_eq!(
            problems(json!({"task": "ENCODING", "parameters": {
                "id": "e", "language": "en", "subtitles": true,
                "input_video_uri": "s3://v/in.mp4", "input_audio_uri": "s3://v/a.wav",
                "output_video_uri": "s3://v/out.mp4"}})),
            ["parameters.subtitles_uri is required when parameters.subtitles is true"]
        );
        assert_eq!(
            problems(
                json!({"action": "process", "data": {"chainCmds": ["sh", "-c", "id"], "output": "o"}})
            ),
            ["data.chainCmds must start with \"ffmpeg\""]
        );
        assert_eq!(
            problems(
                json!({"action": "multi_process", "data": {"processes": [{"chainCmds": ["ffmpeg"]}]}})
            ),
            ["data.processes[0].output is required"]
        );
        assert_eq!(
            problems(json!({"task": "PROBE", "action": "probe"})),
            ["give either task or action, not both"]
        );
        assert_eq!(
            problems(json!({"task": "STAGE_OBJECT"})),
            ["parameters must be an object"]
        );
    }
}
