#!/usr/bin/env bash
# One worker against two on the same machine, and one binary against another: the same
# clip submitted to a Temporal dev server with WORKERS `transcoder worker` processes on one
# task queue. Prints wall seconds and CPU seconds of the whole process tree (the dev server,
# every worker and every ffmpeg they ran: this script waits for all of them, so GNU time's
# rusage of the script holds them all).
#   BINS="before=/path/a after=/path/b" WORKERS="1 2" BENCH_SECONDS=60 BENCH_SIZE=1920x1080 bench/workers.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/clip.sh
BINS=${BINS:-"current=./target/release/transcoder"}
WORKER_COUNTS=${WORKERS:-"1 2"}
RUNS=${RUNS:-1}
DUR=${BENCH_SECONDS:-60}
SIZE=${BENCH_SIZE:-1920x1080}
WORK=$(realpath -m "${BENCH_DIR:-.transcoder/bench-workers}")
TEMPORAL=${TEMPORAL_CLI:-./.venv/bin/temporal}
CLIP="$WORK/clip.mp4"

# One job end to end: server, N workers, a webhook receiver, submit --wait. Run under time.
if [[ "${1:-}" == "--one" ]]; then
  bin=$2; workers=$3; dir=$4; port=$5
  mkdir -p "$dir/out/codex-archive/originals/c1/bench"
  cp "$CLIP" "$dir/out/codex-archive/originals/c1/bench/original.mp4"
  "$TEMPORAL" server start-dev --headless --ip 127.0.0.1 --port "$port" --http-port $((port + 1)) \
    --metrics-port $((port + 2)) --log-level error > "$dir/server.log" 2>&1 &
  server=$!
  python3 - "$((port + 3))" > "$dir/hook.log" 2>&1 <<'PY' &
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200); self.end_headers()
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
  hook=$!
  export TEMPORAL_ADDRESS="127.0.0.1:$port" TRANSCODER_LOG=warn
  TRANSCODER_SECRETS_KEY=$(python3 -c "import secrets; print(secrets.token_hex(32))")
  export TRANSCODER_SECRETS_KEY
  for _ in $(seq 1 60); do "$TEMPORAL" operator cluster health --address "$TEMPORAL_ADDRESS" >/dev/null 2>&1 && break; sleep 0.5; done
  pids=()
  for w in $(seq 1 "$workers"); do
    "$bin" worker --out "$dir/out" --state-dir "$dir/state-$w" --task-queue bench --shutdown-grace 5 > "$dir/worker-$w.log" 2>&1 &
    pids+=($!)
  done
  cat > "$dir/job.json" <<JSON
{"mediaId":"bench-$(basename "$dir")","creatorId":"c1","mediaType":"video","inputBucket":"codex-archive",
 "inputKey":"originals/c1/bench/original.mp4","outputBucket":"codex-media-local",
 "outputPrefix":"c1/hls/bench-$(basename "$dir")","assetsBucket":"codex-assets-local",
 "webhookUrl":"http://127.0.0.1:$((port + 3))/hook","webhookSecret":"bench-secret-0123456789"}
JSON
  start=$(date +%s.%N)
  "$bin" submit --job "$dir/job.json" --wait --task-queue bench > "$dir/result.json"
  python3 -c "print(f'{$(date +%s.%N) - $start:.1f}')" > "$dir/job.wall"
  kill -TERM "${pids[@]}" "$hook" 2>/dev/null || true
  wait "${pids[@]}" "$hook" 2>/dev/null || true
  kill -TERM "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  exit 0
fi

rm -rf "$WORK" && mkdir -p "$WORK"
CLIP="$WORK/clip.mp4"
make_clip "$CLIP" "$DUR" "$SIZE"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "clip: ${DUR} s $SIZE 30 fps + pink noise; default plan (60 s chunks, 4 offered at a time)"
printf '%-10s %7s %4s %10s %8s\n' binary workers run job_wall_s cpu_s
port=17300
for run in $(seq 1 "$RUNS"); do
  for n in $WORKER_COUNTS; do
    for entry in $BINS; do
      name=${entry%%=*}; bin=$(realpath "${entry#*=}")
      dir="$WORK/$name-$n-$run"; mkdir -p "$dir"
      port=$((port + 10))
      /usr/bin/time -f "%e %U %S" -o "$dir/time" \
        "$0" --one "$bin" "$n" "$dir" "$port"
      read -r _ user sys < "$dir/time"
      cpu=$(python3 -c "print(f'{$user + $sys:.1f}')")
      printf '%-10s %7s %4s %10s %8s\n' "$name" "$n" "$run" "$(cat "$dir/job.wall")" "$cpu"
    done
  done
done
