#!/usr/bin/env bash
# Costs of the media tasks, side by side (wall and CPU seconds of the whole process tree,
# from `/usr/bin/time`-style rusage of the children, several runs each):
#   1. the sandbox: one short ffmpeg alone against the same ffmpeg through `sandbox-exec`;
#   2. AUDIO_TRIM: a span at the start against one at the end of a long AAC master (sample
#      exactness decodes everything before the span);
#   3. vmaf: frames per second of libvmaf's standard model on a 720p pair;
#   4. a long DOWNSAMPLING made in one run against the same made in chunks (what durability
#      costs on one machine).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-./target/release/transcoder}
WORK=${BENCH_DIR:-.transcoder/bench-tasks}
RUNS=${RUNS:-5}
rm -rf "$WORK" && mkdir -p "$WORK/out/bench"
ff() { ffmpeg -hide_banner -nostdin -y -loglevel error "$@"; }
# Wall and CPU (user+sys of the command and its children) of one command, in seconds.
measure() {
  python3 - "$@" <<'PY'
import os, resource, subprocess, sys, time
t = time.monotonic()
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
wall = time.monotonic() - t
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"{wall:.3f} {r.ru_utime + r.ru_stime:.3f}")
PY
}
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), ffmpeg $(ffmpeg -version | head -1 | cut -d' ' -f3)"

echo "== 1. sandbox overhead: ffmpeg -f lavfi -i testsrc=d=1 -f null - ($RUNS runs, wall s / CPU s)"
mkdir -p "$WORK/chain"
for i in $(seq "$RUNS"); do
  plain=$(measure ffmpeg -v error -f lavfi -i testsrc=d=1:s=640x360 -f null -)
  boxed=$(measure "$BIN" sandbox-exec --status "$WORK/status.json" --write "$WORK/chain" -- \
    ffmpeg -v error -f lavfi -i testsrc=d=1:s=640x360 -f null -)
  echo "  run $i: alone $plain | in sandbox-exec $boxed"
done

echo "== 2. AUDIO_TRIM of 5 s at the start and at the end of a 20 min AAC master"
ff -f lavfi -i "anoisesrc=color=pink:seed=1:sample_rate=48000:duration=1200" -ac 2 -c:a aac -b:a 128k "$WORK/out/bench/master.m4a"
trim() { # START
  TRANSCODER_STATE_DIR="$WORK/state" TRANSCODER_LOG=warn "$BIN" task --out "$WORK/out" \
    "{\"task\": \"AUDIO_TRIM\", \"parameters\": {\"source_uri\": \"s3://bench/master.m4a\", \"start_sec\": $1, \"duration_sec\": 5, \"output_video_uri\": \"s3://bench/cut-$1-$2.wav\"}}"
}
for i in $(seq 3); do
  echo "  run $i: at 0 s $(measure bash -c "$(declare -f trim); BIN=$BIN WORK=$WORK trim 0 $i") | at 1190 s $(measure bash -c "$(declare -f trim); BIN=$BIN WORK=$WORK trim 1190 $i")"
done

echo "== 3. vmaf of a 30 s 1280x720 25 fps pair (750 frames), the distorted at CRF 35"
ff -f lavfi -i testsrc2=size=1280x720:rate=25:duration=30 -c:v libx264 -preset veryfast -crf 16 "$WORK/out/bench/ref.mp4"
ff -i "$WORK/out/bench/ref.mp4" -c:v libx264 -preset veryfast -crf 35 "$WORK/out/bench/dist.mp4"
vmaf() { # RUN
  TRANSCODER_STATE_DIR="$WORK/state" TRANSCODER_LOG=warn "$BIN" task --out "$WORK/out" \
    "{\"action\": \"vmaf\", \"data\": {\"input1\": \"s3://bench/ref.mp4\", \"input2\": \"s3://bench/dist.mp4\", \"output\": \"s3://bench/vmaf-$1.json\"}}"
}
for i in $(seq 3); do
  echo "  run $i: $(measure bash -c "$(declare -f vmaf); BIN=$BIN WORK=$WORK vmaf $i") (wall s, CPU s; 750 frames)"
done

echo "== 4. DOWNSAMPLING of 4 min of 1280x720 25 fps to 480 lines: one run against 4 chunks"
ff -f lavfi -i testsrc2=size=1280x720:rate=25:duration=240 -f lavfi -i sine=frequency=440:sample_rate=48000:duration=240 \
  -c:v libx264 -preset veryfast -crf 20 -c:a aac -b:a 128k -shortest "$WORK/out/bench/long.mp4"
downsample() { # FROM RUN
  TRANSCODER_TASK_CHUNKED_FROM=$1 TRANSCODER_STATE_DIR="$WORK/state" TRANSCODER_LOG=warn "$BIN" task --out "$WORK/out" \
    "{\"task\": \"DOWNSAMPLING\", \"parameters\": {\"original_video_uri\": \"s3://bench/long.mp4\", \"output_video_uri\": \"s3://bench/long-480-$1-$2.mp4\", \"resolution\": 480}}"
}
for i in $(seq 2); do
  echo "  run $i: one run $(measure bash -c "$(declare -f downsample); BIN=$BIN WORK=$WORK downsample 100000 $i") | chunked $(measure bash -c "$(declare -f downsample); BIN=$BIN WORK=$WORK downsample 0 $i")"
done
