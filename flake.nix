{
  description = "transcoder: durable media transcoding on Temporal, and the OCI image it runs in";

  # The only input. flake.lock pins it to one nixpkgs commit (rev + narHash), so
  # `nix build .#image` gives the same image on any machine. No flake-utils: the systems
  # are listed below.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";

  outputs =
    { self, nixpkgs }:
    let
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      # legacyPackages is nixpkgs with its default config: allowUnfree stays false, so
      # anything unfree pulled into the image fails evaluation instead of slipping in.
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAllSystems (
        pkgs:
        let
          transcoder = pkgs.callPackage ./nix/package.nix { };
          ffmpeg = pkgs.callPackage ./nix/ffmpeg.nix { };
          image = pkgs.callPackage ./nix/image.nix { inherit transcoder ffmpeg; };
        in
        {
          inherit transcoder ffmpeg image;
          default = image;
        }
      );

      devShells = forAllSystems (pkgs: {
        default = pkgs.callPackage ./nix/devshell.nix {
          inherit (self.packages.${pkgs.stdenv.hostPlatform.system}) ffmpeg;
        };
      });

      apps = forAllSystems (
        pkgs:
        let
          own = self.packages.${pkgs.stdenv.hostPlatform.system};
          demo = pkgs.callPackage ./nix/demo.nix { inherit (own) transcoder ffmpeg; };
        in
        {
          default = {
            type = "app";
            program = "${demo}/bin/transcoder-demo";
            meta.description = "Transcode a generated 10 s 1080p sample through a real Temporal workflow";
          };
        }
      );
    };
}
