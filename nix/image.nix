# The OCI image that runs on RunPod. `nix build .#image` gives a script that streams the
# image tarball (`./result | docker load`); layers are Nix store paths and every timestamp is
# fixed, so the same flake.lock gives the same image bytes.
{
  lib,
  stdenv,
  dockerTools,
  writeTextDir,
  transcoder,
  ffmpeg,
  audiowaveform,
  temporal-cli,
  cacert,
  tzdata,
  dejavu_fonts,
  makeFontsConf,
}:
let
  user = "transcoder";
  uid = "1000";
  home = "/var/lib/transcoder";

  # A non-root user with a home for the state folder (embedded Temporal DB, scratch).
  passwd = writeTextDir "etc/passwd" ''
    root:x:0:0:root:/root:/bin/false
    ${user}:x:${uid}:${uid}:transcoder:${home}:/bin/false
  '';
  group = writeTextDir "etc/group" ''
    root:x:0:
    ${user}:x:${uid}:
  '';

  # ENCODING burns .ass subtitles with libass, which finds fonts through fontconfig: a
  # configuration naming DejaVu (the fallback for any font a subtitle file names).
  fontsConf = makeFontsConf { fontDirectories = [ dejavu_fonts ]; };

  # nvidia-container-toolkit bind-mounts the host driver's libraries (libcuda, libnvidia-encode,
  # libnvcuvid, …) into the container: into /usr/lib64, the Debian multiarch directory, or the
  # host's own library path (CDI), and then runs ldconfig. Nix-built programs use their own
  # glibc's loader, which never reads /etc/ld.so.cache, so the loader is told where to look.
  # /run/opengl-driver/lib is where NixOS hosts keep the driver (also in ffmpeg's RUNPATH).
  driverLibraryPath = lib.concatStringsSep ":" [
    "/usr/lib64"
    "/usr/lib/${stdenv.hostPlatform.parsed.cpu.name}-linux-gnu"
    "/usr/lib"
    "/run/opengl-driver/lib"
  ];
in
dockerTools.streamLayeredImage {
  name = "transcoder";
  tag = transcoder.version;

  # Each package's bin/, etc/, share/ is linked into the image root (/bin/transcoder, …).
  contents = [
    transcoder
    ffmpeg
    audiowaveform
    temporal-cli
    cacert
    tzdata
    passwd
    group
  ];

  # Runs under fakeroot in the top layer's root, so ownership sticks without real root.
  fakeRootCommands = ''
    mkdir -p .${home} tmp
    chown -R ${uid}:${uid} .${home}
    chmod 1777 tmp
  '';

  config = {
    # `docker run IMAGE` runs the RunPod worker; `docker run IMAGE transcoder doctor` (or any
    # other command) replaces it. The command is the default (Cmd, no Entrypoint) so that
    # both work with plain `docker run` and RunPod's start command.
    Cmd = [
      (lib.getExe transcoder)
      "runpod"
    ];
    User = "${uid}:${uid}";
    WorkingDir = home;
    Env = [
      # /usr/bin: nvidia-smi and friends, mounted there by the toolkit ("utility").
      "PATH=/bin:/usr/bin"
      "HOME=${home}"
      "TRANSCODER_STATE_DIR=${home}/state"
      "TRANSCODER_OUT=${home}/out"
      "SSL_CERT_FILE=${cacert}/etc/ssl/certs/ca-bundle.crt"
      "TZDIR=${tzdata}/share/zoneinfo"
      "FONTCONFIG_FILE=${fontsConf}"
      # The exact tools, by store path (the binary also finds them on PATH).
      "FFMPEG=${lib.getExe' ffmpeg "ffmpeg"}"
      "FFPROBE=${lib.getExe' ffmpeg "ffprobe"}"
      "AUDIOWAVEFORM=${lib.getExe' audiowaveform "audiowaveform"}"
      "TEMPORAL_CLI=${lib.getExe' temporal-cli "temporal"}"
      # Ask the toolkit for the GPU with its CUDA (compute), NVENC/NVDEC (video) and
      # nvidia-smi (utility) libraries.
      "NVIDIA_VISIBLE_DEVICES=all"
      "NVIDIA_DRIVER_CAPABILITIES=compute,video,utility"
      "LD_LIBRARY_PATH=${driverLibraryPath}"
    ];
  };
}
