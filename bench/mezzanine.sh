#!/usr/bin/env bash
# The mezzanine in one run against the mezzanine in pieces, side by side: the same clip
# through `transcoder run` (embedded server, in-process worker) with each binary in BINS,
# alternated RUNS times. Prints wall seconds and CPU seconds of the whole process tree
# (user + system of the command and every descendant it waited for: ffmpeg, the embedded
# Temporal server), read from GNU time's rusage, plus the receipt's step walls.
#   BINS="before=/path/a after=/path/b" RUNS=2 BENCH_SECONDS=180 bench/mezzanine.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/clip.sh
BINS=${BINS:-"current=./target/release/transcoder"}
RUNS=${RUNS:-2}
DUR=${BENCH_SECONDS:-180}
WORK=${BENCH_DIR:-.transcoder/bench-mezzanine}
rm -rf "$WORK" && mkdir -p "$WORK"
CLIP="$WORK/clip-1080p.mp4"
make_clip "$CLIP" "$DUR" "1920x1080"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "clip: ${DUR} s 1920x1080 30 fps + pink noise; default plan (60 s chunks, 4 at a time)"
printf '%-10s %4s %8s %8s  %s\n' binary run wall_s cpu_s "receipt steps"
for run in $(seq 1 "$RUNS"); do
  for entry in $BINS; do
    name=${entry%%=*}; bin=${entry#*=}
    dir="$WORK/$name-$run"
    /usr/bin/time -f "%e %U %S" -o "$dir.time" env TRANSCODER_STATE_DIR="$dir/state" \
      TRANSCODER_LOG=warn "$bin" run "$CLIP" --out "$dir/out" > "$dir.stdout" 2> "$dir.stderr"
    read -r wall user sys < "$dir.time"
    cpu=$(python3 -c "print(f'{$user + $sys:.1f}')")
    steps=$(grep -A30 '^Receipt:' "$dir.stdout" | awk '/^    [a-z_]+ /{printf "%s %s ", $1, $2}')
    printf '%-10s %4s %8s %8s  %s\n' "$name" "$run" "$wall" "$cpu" "$steps"
  done
done
