# `nix run`: the same demo as `make demo`. Generates a 10 s 1920x1080 test pattern with a
# tone (ffmpeg lavfi sources) and transcodes it through a real Temporal workflow (embedded
# dev server). State and the sample go to .transcoder/, outputs to ./out, in the current
# directory. Extra arguments go to `transcoder run` (e.g. `nix run . -- --json`).
{
  writeShellApplication,
  transcoder,
  ffmpeg,
  temporal-cli,
}:
writeShellApplication {
  name = "transcoder-demo";
  runtimeInputs = [
    transcoder
    ffmpeg
    temporal-cli
  ];
  text = ''
    state="''${TRANSCODER_STATE_DIR:-.transcoder}"
    sample="$state/demo/sample-1080p.mp4"
    mkdir -p "$state/demo"
    if [ ! -f "$sample" ]; then
      echo "==> Generating $sample"
      ffmpeg -hide_banner -loglevel error -y \
        -f lavfi -i testsrc2=size=1920x1080:rate=30:duration=10 \
        -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=10" \
        -c:v libx264 -preset veryfast -pix_fmt yuv420p -c:a aac -b:a 128k -shortest "$sample"
    fi
    export TEMPORAL_CLI="''${TEMPORAL_CLI:-${temporal-cli}/bin/temporal}"
    export FFMPEG="''${FFMPEG:-${ffmpeg}/bin/ffmpeg}" FFPROBE="''${FFPROBE:-${ffmpeg}/bin/ffprobe}"
    echo "==> Transcoding $sample through a real Temporal workflow (embedded dev server)"
    exec transcoder run "$sample" "$@"
  '';
}
