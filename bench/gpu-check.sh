#!/usr/bin/env bash
# The GPU check, run on a machine with an NVIDIA GPU (see BENCHMARKS.md, "GPU check"):
#   1. what the worker decides there: `transcoder doctor --json`, automatic and with
#      TRANSCODER_ENCODER=nvenc (which must refuse to start, naming why, on a GPU without
#      NVENC such as the A100/H100/H200);
#   2. the NVENC test encode itself (the same arguments as encoder::probe_nvenc);
#   3. NVDEC decode + scale_cuda: the ladder's one-decode, four-rung graph with frames kept
#      in GPU memory, handed to libx264 (hwdownload), checked rendition by rendition (size,
#      frame count) and against the same graph on the CPU (PSNR);
#   4. CPU seconds and wall time of both graphs on a 30 s 1080p30 source, three runs each.
#
#   bench/gpu-check.sh OUT_DIR [FFMPEG_DIR [TRANSCODER]]
#
# FFMPEG_DIR holds `ffmpeg` and `ffprobe` (default: from PATH); TRANSCODER the release
# binary (default: target/release/transcoder). Everything goes to OUT_DIR; a summary to stdout.
set -uo pipefail

OUT=${1:?usage: gpu-check.sh OUT_DIR [FFMPEG_DIR [TRANSCODER]]}
FFDIR=${2:-}
TRANSCODER=${3:-target/release/transcoder}
mkdir -p "$OUT"
if [ -n "$FFDIR" ]; then
  FFMPEG="$FFDIR/ffmpeg" FFPROBE="$FFDIR/ffprobe"
else
  FFMPEG=$(command -v ffmpeg) FFPROBE=$(command -v ffprobe)
fi
export FFMPEG FFPROBE
say() { printf '%s\n' "$*" | tee -a "$OUT/summary.txt"; }

say "== GPU"
nvidia-smi --query-gpu=name,driver_version,memory.total,encoder.stats.sessionCount --format=csv 2>&1 | tee -a "$OUT/summary.txt"
say "cores: $(nproc)"

say "== 1. transcoder doctor (automatic encoder choice)"
"$TRANSCODER" doctor --json >"$OUT/doctor-auto.json" 2>"$OUT/doctor-auto.stderr"
rc=$?
say "exit $rc; $(grep -A3 '"nvenc test encode"' "$OUT/doctor-auto.json" | tr -s ' \n' ' ')"
say "== 1b. transcoder doctor with TRANSCODER_ENCODER=nvenc"
TRANSCODER_ENCODER=nvenc "$TRANSCODER" doctor --json >"$OUT/doctor-nvenc.json" 2>"$OUT/doctor-nvenc.stderr"
rc=$?
say "exit $rc; $(grep -A3 '"nvenc test encode"' "$OUT/doctor-nvenc.json" | tr -s ' \n' ' ')"

say "== 2. NVENC test encode (encoder::probe_nvenc's arguments)"
start=$(date +%s%N)
"$FFMPEG" -hide_banner -nostdin -f lavfi -i testsrc2=size=1280x720:rate=30 -frames:v 15 \
  -c:v h264_nvenc -preset p4 -f null - >"$OUT/nvenc-probe.log" 2>&1
rc=$?
say "exit $rc after $((($(date +%s%N) - start) / 1000000)) ms; last lines:"
tail -4 "$OUT/nvenc-probe.log" | tee -a "$OUT/summary.txt"

say "== 3. NVDEC + scale_cuda, the ladder's four rungs in one decode"
SECONDS_OF_SOURCE=${GPU_CHECK_SECONDS:-30}
SRC="$OUT/source-1080p30.mp4"
"$FFMPEG" -hide_banner -loglevel error -nostdin -y -f lavfi -i testsrc2=size=1920x1080:rate=30:duration=$SECONDS_OF_SOURCE \
  -f lavfi -i sine=frequency=440:sample_rate=48000:duration=$SECONDS_OF_SOURCE \
  -c:v libx264 -preset veryfast -crf 18 -g 60 -pix_fmt yuv420p -c:a aac "$SRC"
RUNGS=("1920:1080" "1280:720" "854:480" "640:360")
graph() { # graph gpu|cpu: the split and per-rung scale of chunks::chunk_args
  local g="[0:v]split=4[s0][s1][s2][s3]" i
  for i in 0 1 2 3; do
    if [ "$1" = gpu ]; then
      g+=";[s$i]scale_cuda=${RUNGS[$i]}:interp_algo=${GPU_CHECK_INTERP:-bilinear},hwdownload,format=nv12[v$i]"
    else
      g+=";[s$i]scale=${RUNGS[$i]}:flags=bicubic,setsar=1[v$i]"
    fi
  done
  echo "$g"
}
encode() { # encode gpu|cpu DIR
  local mode=$1 dir=$2 hw=() maps=() i
  mkdir -p "$dir"
  [ "$mode" = gpu ] && hw=(-hwaccel cuda -hwaccel_output_format cuda)
  for i in 0 1 2 3; do
    maps+=(-map "[v$i]" -c:v libx264 -preset veryfast -crf 21 -profile:v high -pix_fmt yuv420p "$dir/rung$i.mp4")
  done
  "$FFMPEG" -hide_banner -loglevel error -nostdin -y "${hw[@]}" -i "$SRC" -filter_complex "$(graph "$mode")" -an "${maps[@]}"
}
for mode in gpu cpu; do
  encode "$mode" "$OUT/$mode" 2>"$OUT/$mode.log"
  say "$mode graph: exit $?"
  for i in 0 1 2 3; do
    say "  rung$i $("$FFPROBE" -v error -count_frames -select_streams v:0 -show_entries stream=width,height,nb_read_frames -of csv=p=0 "$OUT/$mode/rung$i.mp4" 2>&1)"
  done
done
for i in 0 1 2 3; do
  say "  rung$i PSNR gpu vs cpu: $("$FFMPEG" -hide_banner -nostdin -i "$OUT/gpu/rung$i.mp4" -i "$OUT/cpu/rung$i.mp4" -lavfi psnr -f null - 2>&1 | grep -o 'average:[0-9.inf]*')"
done

say "== 4. CPU seconds (user+sys of ffmpeg) and wall time, $SECONDS_OF_SOURCE s of 1080p30 into four rungs"
for run in 1 2 3; do
  for mode in gpu cpu; do
    TIMEFORMAT="$mode run $run: wall %R s, cpu %U+%S s"
    { time encode "$mode" "$OUT/t-$mode" 2>/dev/null; } 2>&1 | tee -a "$OUT/summary.txt"
  done
done
say "== done"
