use super::*;
use crate::ffmpeg::args::test_support::{strings, value};
use transcoder_workflows::media::{FrameRate, MezzanineVideo, ObjectRef, PictureEncoder};

fn input(deinterlace: bool) -> MezzanineInput {
    MezzanineInput {
        source: ObjectRef::new("b", "in.mp4"),
        dest: ObjectRef::new("b", "mezzanine.mp4"),
        video: Some(MezzanineVideo {
            frame_rate: FrameRate { num: 25, den: 1 },
            gop_seconds: 2,
            tone_map_from: None,
            deinterlace,
            size: Some((1280, 720)),
            encoder: PictureEncoder::Mezzanine,
            subtitles: None,
        }),
        has_audio: true,
    }
}

fn args(input: &MezzanineInput, duration: f64) -> Vec<String> {
    let enc = EncoderSettings::default();
    strings(mezzanine_args(
        input,
        Path::new("in"),
        Path::new("out"),
        duration,
        &enc,
    ))
}

fn video_filter(args: &[String]) -> &str {
    value(args, "-vf").expect("a -vf")
}

#[test]
fn planned_size_and_damage_limit_are_set() {
    let a = args(&input(false), 8.0);
    assert!(video_filter(&a).starts_with("scale=1280:720,setsar=1,"));
    assert_eq!(value(&a, "-max_error_rate"), Some("0.05"));
    let a = args(
        &MezzanineInput {
            video: None,
            ..input(false)
        },
        8.0,
    );
    assert_eq!(value(&a, "-max_error_rate"), Some("0.05"));
}

#[test]
fn a_piece_is_its_chunk_of_the_programme_grid() {
    let chunk = ChunkPlan {
        index: 2,
        start_seconds: 12.0,
        duration_seconds: 6.0,
        first_segment: 2,
        max_segments: 1,
        last: false,
    };
    let piece = MezzaninePieceInput {
        source: ObjectRef::new("b", "in.mp4"),
        dest: ObjectRef::new("b", "p.mp4"),
        video: MezzanineVideo {
            frame_rate: FrameRate {
                num: 30000,
                den: 1001,
            },
            ..input(false).video.unwrap()
        },
        chunk,
        duration_seconds: 20.0,
    };
    let a = strings(
        piece_args(
            &piece,
            Path::new("in"),
            None,
            Path::new("out"),
            &EncoderSettings::default(),
        )
        .unwrap(),
    );
    // Decoded from 1 s early, put back on the programme's timeline, frames 360..540.
    assert_eq!(value(&a, "-ss"), Some("11.000"));
    let vf = video_filter(&a);
    assert!(
        vf.contains("setpts=PTS+11.000/TB,fps=30000/1001:start_time=12.012000,"),
        "{vf}"
    );
    assert!(vf.contains(",setpts=PTS-STARTPTS"), "{vf}");
    assert_eq!(value(&a, "-frames:v"), Some("180"));
    assert_eq!(value(&a, "-video_track_timescale"), Some("30000"));
    // IDR frames counted from the programme's GOP boundary 12.000 s.
    assert_eq!(
        value(&a, "-force_key_frames:v"),
        Some("expr:gte(t+0.012000000,n_forced*2)")
    );
    assert!(a.iter().any(|x| x == "-an"));
}

#[test]
fn an_nvenc_mezzanine_keeps_the_gop_grid() {
    let enc = EncoderSettings {
        mezzanine_nvenc: true,
        ..EncoderSettings::default()
    };
    let a = strings(mezzanine_args(
        &input(false),
        Path::new("in"),
        Path::new("out"),
        8.0,
        &enc,
    ));
    assert_eq!(value(&a, "-c:v"), Some("h264_nvenc"));
    assert_eq!(value(&a, "-cq"), Some("19"));
    assert_eq!(value(&a, "-no-scenecut"), Some("1"));
    assert_eq!(value(&a, "-crf"), None);
    assert_eq!(
        value(&a, "-force_key_frames:v"),
        Some("expr:gte(t,n_forced*2)")
    );
}

#[test]
fn the_join_copies_and_the_list_is_quoted() {
    let a = strings(
        join_args(
            Path::new("list.txt"),
            Some(JoinedAudio::Track(Path::new("audio.m4a"))),
            Some("eng"),
            Path::new("out.mp4"),
            FrameRate { num: 25, den: 1 },
        )
        .unwrap(),
    );
    assert_eq!(value(&a, "-f"), Some("concat"));
    assert_eq!(value(&a, "-c"), Some("copy"));
    assert_eq!(value(&a, "-metadata:s:a:0"), Some("language=eng"));
    assert_eq!(value(&a, "-movflags"), Some("+faststart"));
    assert_eq!(value(&a, "-video_track_timescale"), Some("10000"));
    assert_eq!(
        concat_list(&[std::path::PathBuf::from("/w/it's/00000.mp4")]),
        "file '/w/it'\\''s/00000.mp4'\n"
    );
    let relative = concat_list(&[std::path::PathBuf::from("out/p/00001.mp4")]);
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(
        relative,
        format!("file '{}/out/p/00001.mp4'\n", cwd.display())
    );
}

#[test]
fn both_streams_span_the_whole_timeline() {
    let a = args(&input(false), 8.5);
    let vf = video_filter(&a);
    assert!(
        vf.contains("fps=25/1:start_time=0,tpad=stop_mode=clone:stop_duration=8.500"),
        "{vf}"
    );
    assert_eq!(value(&a, "-af"), Some("aresample=async=1:first_pts=0,apad"));
    assert_eq!(value(&a, "-t"), Some("8.500000"));

    // An audio-only mezzanine is the audio as it is: nothing to line up with.
    let audio_only = MezzanineInput {
        video: None,
        ..input(false)
    };
    let a = args(&audio_only, 8.5);
    assert_eq!(value(&a, "-af"), None);
    assert_eq!(value(&a, "-t"), None);
}

#[test]
fn interlaced_sources_are_deinterlaced_before_scaling() {
    let a = args(&input(true), 8.0);
    let vf = video_filter(&a);
    assert!(
        vf.starts_with(&format!("{DEINTERLACE_FILTER},scale=")),
        "{vf}"
    );

    let a = args(&input(false), 8.0);
    let vf = video_filter(&a);
    assert!(vf.starts_with("scale=") && !vf.contains("bwdif"), "{vf}");
}

#[test]
fn a_task_piece_draws_subtitles_on_programme_time_with_the_delivery_encoder() {
    let chunk = ChunkPlan {
        index: 1,
        start_seconds: 60.0,
        duration_seconds: 60.0,
        first_segment: 10,
        max_segments: 10,
        last: false,
    };
    let piece = MezzaninePieceInput {
        source: ObjectRef::new("b", "in.mp4"),
        dest: ObjectRef::new("b", "p.mp4"),
        video: MezzanineVideo {
            encoder: PictureEncoder::Delivery,
            subtitles: Some(ObjectRef::new("b", "s.ass")),
            ..input(false).video.unwrap()
        },
        chunk,
        duration_seconds: 150.0,
    };
    let a = strings(
        piece_args(
            &piece,
            Path::new("in"),
            Some(Path::new("/w/subtitles.ass")),
            Path::new("out"),
            &EncoderSettings::default(),
        )
        .unwrap(),
    );
    // Drawn after the frames sit on the programme's grid, before the piece starts at 0.
    let vf = video_filter(&a);
    assert!(
        vf.ends_with(
            "tpad=stop_mode=clone:stop_duration=150.000,format=yuv420p,\
             subtitles=filename=/w/subtitles.ass,setpts=PTS-STARTPTS"
        ),
        "{vf}"
    );
    // The worker's delivery settings (capped CRF 21 on x264), not the archive's CRF 18.
    assert_eq!(value(&a, "-crf"), Some("21"));
    assert!(subtitles_filter(Path::new("/tmp/a:b,c/s.ass")).is_err());
}
