#!/usr/bin/env bash
# `make bench`: the same 60 s 1920x1080 clip through three strategies, side by side.
#   (a) transcoder: the whole pipeline through Temporal (embedded dev server, in-process worker)
#   (b) naive: mezzanine, then one ffmpeg per rung (each decoding again), preview and thumbnail runs
#   (c) floor: the fewest ffmpeg runs a skilled engineer would write for the same outputs
# All use libx264 with the same preset, CRF/maxrate settings and loudness passes as (a).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/clip.sh
BIN=${BIN:-./target/release/transcoder}
PRESET=${TRANSCODER_X264_PRESET:-veryfast}
WORK=${BENCH_DIR:-.transcoder/bench}
DUR=${BENCH_SECONDS:-60}
rm -rf "$WORK" && mkdir -p "$WORK"
CLIP="$WORK/clip-1080p.mp4"
ff() { ffmpeg -hide_banner -nostdin -y -loglevel error "$@"; }

make_clip "$CLIP" "$DUR"

now() { date +%s%N; }
elapsed() { python3 -c "import sys; print(f'{(int(sys.argv[2]) - int(sys.argv[1])) / 1e9:.1f}')" "$1" "$(now)"; }

GOP="-g 60 -keyint_min 60 -sc_threshold 0 -forced-idr 1 -force_key_frames expr:gte(t,n_forced*2)"
HLS="-f hls -hls_time 6 -hls_playlist_type vod -hls_flags independent_segments -hls_segment_type mpegts"
LADDER=("1920:1080:5000" "1280:720:2500" "854:480:1000" "640:360:500")
MEASURE="loudnorm=I=-16:TP=-1.5:LRA=11:print_format=json"
measure_args() { # pass-2 filter from a loudnorm JSON report on stdin
  python3 -c 'import json,sys; t=sys.stdin.read(); j=json.loads(t[t.rindex("{"):t.rindex("}")+1]); print("loudnorm=I=-16:TP=-1.5:LRA=11:measured_I=%s:measured_TP=%s:measured_LRA=%s:measured_thresh=%s:offset=%s:linear=true,aresample=48000" % (j["input_i"],j["input_tp"],j["input_lra"],j["input_thresh"],j["target_offset"]))'
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), ffmpeg $(ffmpeg -version | head -1 | cut -d' ' -f3)"
echo "clip: ${DUR} s 1920x1080 30 fps + pink noise; x264 preset $PRESET"

# (a) transcoder
t=$(now)
TRANSCODER_X264_PRESET=$PRESET TRANSCODER_STATE_DIR="$WORK/a-state" TRANSCODER_LOG=warn \
  "$BIN" run "$CLIP" --out "$WORK/a-out" --json > "$WORK/a.json"
A=$(elapsed "$t")
echo "(a) transcoder end to end: ${A} s"

# (b) naive
t=$(now)
B="$WORK/b"; mkdir -p "$B"
ff -i "$CLIP" -map 0:v -map 0:a -c:v libx264 -preset "$PRESET" -crf 18 -pix_fmt yuv420p $GOP \
   -c:a aac -b:a 256k -ac 2 -movflags +faststart "$B/mezz.mp4"
AF=$(ffmpeg -hide_banner -nostdin -i "$B/mezz.mp4" -vn -af "$MEASURE" -f null - 2>&1 | measure_args)
for r in "${LADDER[@]}"; do
  IFS=: read -r w h k <<<"$r"; mkdir -p "$B/${h}p"
  ff -i "$B/mezz.mp4" -vf "scale=$w:$h" -af "$AF" -c:v libx264 -preset "$PRESET" -crf 21 \
     -maxrate "${k}k" -bufsize "$((k*2))k" -pix_fmt yuv420p $GOP -c:a aac -b:a 128k -ac 2 \
     $HLS -hls_segment_filename "$B/${h}p/%05d.ts" "$B/${h}p/playlist.m3u8"
done
mkdir -p "$B/preview"
ff -i "$B/mezz.mp4" -t 30 -vf scale=1280:720 -af "$AF" -c:v libx264 -preset "$PRESET" -crf 21 \
   -maxrate 2500k -bufsize 5000k -pix_fmt yuv420p $GOP -c:a aac -b:a 128k -ac 2 \
   $HLS -hls_segment_filename "$B/preview/%05d.ts" "$B/preview/preview.m3u8"
ff -ss 6 -i "$B/mezz.mp4" -frames:v 1 \
   -vf "scale=1280:720:force_original_aspect_ratio=decrease,pad=1280:720:(ow-iw)/2:(oh-ih)/2" "$B/thumb.jpg"
BT=$(elapsed "$t")
echo "(b) naive, one process per rung: ${BT} s"

# (c) floor: mezzanine + loudness pass 1 in one run; ladder + preview + thumbnail in one run.
t=$(now)
C="$WORK/c"; mkdir -p "$C/v/0" "$C/v/1" "$C/v/2" "$C/v/3" "$C/preview"
AF=$(ffmpeg -hide_banner -nostdin -y -i "$CLIP" -map 0:v -map 0:a -c:v libx264 -preset "$PRESET" -crf 18 \
     -pix_fmt yuv420p $GOP -c:a aac -b:a 256k -ac 2 -movflags +faststart "$C/mezz.mp4" \
     -map 0:a -af "$MEASURE" -f null - 2>&1 | measure_args)
ff -i "$C/mezz.mp4" -filter_complex \
  "[0:v]split=5[s0][s1][s2][s3][s4];[s0]scale=1920:1080[v0];[s1]scale=1280:720[v1];[s2]scale=854:480[v2];[s3]scale=640:360[v3];[s4]select='eq(n\,180)',scale=1280:720[t];[0:a]$AF,asplit=5[a0][a1][a2][a3][a4]" \
  -map "[v0]" -map "[a0]" -map "[v1]" -map "[a1]" -map "[v2]" -map "[a2]" -map "[v3]" -map "[a3]" \
  -c:v libx264 -preset "$PRESET" -crf 21 -pix_fmt yuv420p $GOP \
  -maxrate:v:0 5000k -bufsize:v:0 10000k -maxrate:v:1 2500k -bufsize:v:1 5000k \
  -maxrate:v:2 1000k -bufsize:v:2 2000k -maxrate:v:3 500k -bufsize:v:3 1000k \
  -c:a aac -b:a 128k -ac 2 $HLS -hls_segment_filename "$C/v/%v/%05d.ts" \
  -var_stream_map "v:0,a:0 v:1,a:1 v:2,a:2 v:3,a:3" "$C/v/%v/playlist.m3u8" \
  -map "[t]" -frames:v 1 "$C/thumb.jpg" \
  -map "[a4]" -f null -
# The preview reuses the 720p segments (a skilled engineer would not encode it twice).
head -n 5 "$C/v/1/playlist.m3u8" > "$C/preview/preview.m3u8"
grep -A1 EXTINF "$C/v/1/playlist.m3u8" | grep -v -- -- | head -n 10 >> "$C/preview/preview.m3u8"
echo "#EXT-X-ENDLIST" >> "$C/preview/preview.m3u8"
CT=$(elapsed "$t")
echo "(c) floor, two ffmpeg runs: ${CT} s"

python3 - "$A" "$BT" "$CT" <<'PY'
import sys
a, b, c = map(float, sys.argv[1:])
print(f"ratios: (a)/(c) = {a/c:.2f}  (target <= 1.15);  (b)/(a) = {b/a:.2f}  (target >= 1.30)")
PY
