# `nix run`: the same demo as `make demo`. Transcodes fixtures/media/video.mp4 (8 s of a
# 1920x1080 test pattern with stereo tones; fixtures/README.md) through a real Temporal
# workflow (embedded dev server). State goes to .transcoder/, outputs to ./out, in the current
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
    sample=${../fixtures/media/video.mp4}
    export TEMPORAL_CLI="''${TEMPORAL_CLI:-${temporal-cli}/bin/temporal}"
    export FFMPEG="''${FFMPEG:-${ffmpeg}/bin/ffmpeg}" FFPROBE="''${FFPROBE:-${ffmpeg}/bin/ffprobe}"
    echo "==> Transcoding $sample through a real Temporal workflow (embedded dev server)"
    exec transcoder run "$sample" "$@"
  '';
}
