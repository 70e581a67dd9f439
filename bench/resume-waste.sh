#!/usr/bin/env bash
# Resume waste: how much work a lost worker costs. A clip in 6 s chunks through
# `transcoder run` (embedded server), once clean; then again from scratch, killed with
# `kill -9` at KILL_AT of the clean run's wall time, and run again to the end. The CPU
# seconds of each whole process tree come from GNU time's rusage (the killed run's own
# descendants are stopped and their time is lost to rusage, so the killed run is timed by a
# cgroup-free fallback: its process tree's CPU read from /proc just before the kill).
#   BIN=./target/debug/transcoder BENCH_SECONDS=180 KILL_AT=0.3 bench/resume-waste.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/clip.sh
BIN=${BIN:-./target/release/transcoder}
DUR=${BENCH_SECONDS:-180}
KILL_AT=${KILL_AT:-0.3}
SIZE=${BENCH_SIZE:-1280x720}
WORK=${BENCH_DIR:-.transcoder/bench-resume}
rm -rf "$WORK" && mkdir -p "$WORK"
CLIP="$WORK/clip.mp4"
make_clip "$CLIP" "$DUR" "$SIZE"
export TRANSCODER_SEGMENTS_PER_CHUNK=1 TRANSCODER_LOG=warn

# CPU seconds (user + system) of a process and all its live descendants, from /proc.
tree_cpu() {
  python3 - "$1" <<'PY'
import os, sys
root = int(sys.argv[1]); tck = os.sysconf("SC_CLK_TCK")
kids = {}
for p in os.listdir("/proc"):
    if p.isdigit():
        try:
            f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
            kids.setdefault(int(f[1]), []).append(int(p))
        except OSError:
            pass
def cpu(pid):
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        own = int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])  # utime stime cutime cstime
    except OSError:
        own = 0
    return own + sum(cpu(k) for k in kids.get(pid, []))
print(f"{cpu(root) / tck:.1f}")
PY
}

timed() { # label, then the command; prints "wall cpu"
  local label=$1; shift
  /usr/bin/time -f "%e %U %S" -o "$WORK/$label.time" "$@" > "$WORK/$label.out" 2> "$WORK/$label.err"
  read -r wall user sys < "$WORK/$label.time"
  echo "$wall $(python3 -c "print(f'{$user + $sys:.1f}')")"
}

echo "machine: $(nproc) cores; clip: $DUR s $SIZE 30 fps, 6 s chunks; kill -9 at $KILL_AT of the clean wall"
read -r clean_wall clean_cpu < <(timed clean env TRANSCODER_STATE_DIR="$WORK/clean-state" "$BIN" run "$CLIP" --out "$WORK/clean-out")
echo "clean run: wall ${clean_wall} s, cpu ${clean_cpu} s"

kill_after=$(python3 -c "print($clean_wall * $KILL_AT)")
TRANSCODER_STATE_DIR="$WORK/state" "$BIN" run "$CLIP" --out "$WORK/out" > "$WORK/killed.out" 2> "$WORK/killed.err" &
pid=$!
sleep "$kill_after"
killed_cpu=$(tree_cpu "$pid")
# The whole tree goes at once, as when a pod is lost.
pkill -9 -P "$pid" 2>/dev/null || true
kill -9 "$pid" 2>/dev/null || true
pkill -9 -f "$WORK/state" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
echo "killed run: after ${kill_after} s, cpu ${killed_cpu} s"
read -r rerun_wall rerun_cpu < <(timed rerun env TRANSCODER_STATE_DIR="$WORK/state" "$BIN" run "$CLIP" --out "$WORK/out")
echo "resumed run: wall ${rerun_wall} s, cpu ${rerun_cpu} s"
python3 -c "
clean, killed, rerun = $clean_cpu, $killed_cpu, $rerun_cpu
waste = killed + rerun - clean
print(f'redone: {waste:.1f} cpu s = {100 * waste / clean:.1f} % of a clean run')
"
