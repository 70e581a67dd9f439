# The `transcoder` binary, built from Cargo.lock (every registry crate has a checksum there,
# which is all cargoLock needs: no hand-kept vendor hash).
{
  lib,
  rustPlatform,
  protobuf,
  meson,
  ninja,
  nasm,
  unixtools,
}:
let
  cargoToml = lib.importTOML ../Cargo.toml;
in
rustPlatform.buildRustPackage {
  pname = "transcoder";
  inherit (cargoToml.workspace.package) version;

  # Only the Rust workspace: edits to docs, tests, benches or nix/ do not rebuild the binary.
  # A new workspace member must be added here (tests/integration/nix_flake.rs checks that).
  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../src
      ../workflows
      ../activities
    ];
  };

  cargoLock.lockFile = ../Cargo.lock;

  # temporalio-protos compiles Temporal's .proto files with prost/tonic-build, which run protoc.
  # vmaf-head-sys builds libvmaf from its vendored sources (meson, ninja, nasm; xxd compiles
  # the standard models in), so the image carries VMAF inside the binary.
  nativeBuildInputs = [
    protobuf
    meson
    ninja
    nasm
    unixtools.xxd
  ];
  # meson and ninja are for that build script only, not for building this package.
  dontUseMesonConfigure = true;
  dontUseNinjaBuild = true;
  dontUseNinjaInstall = true;
  dontUseNinjaCheck = true;

  # The tests need a Temporal dev server, ffmpeg and Node; they run in `make test`, not here.
  doCheck = false;

  meta = {
    description = "Durable media transcoding (HLS ladder, mezzanine, thumbnail, webhook) on Temporal";
    license = lib.licenses.mit;
    mainProgram = "transcoder";
    platforms = lib.platforms.linux;
  };
}
