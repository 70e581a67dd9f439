//! The Nix flake, checked offline. These machines reach no Nix cache and no nixpkgs source,
//! and Debian's nix (2.8) is too old to evaluate current nixpkgs, so the image is not built
//! here. What is checked is real: every `.nix` file parses, `nix flake metadata` accepts the
//! lock offline (a lock that does not match `flake.nix` makes Nix go to the network, which
//! fails), the lock pins nixpkgs by github owner/repo/rev with a narHash, and `Cargo.lock`
//! has what `cargoLock` needs. `make test` installs Debian's `nix-bin`.
//!
//! `nix flake metadata` runs on a copy of the flake files in a fresh git repository, so it
//! does not depend on what this work tree has committed (Nix ignores untracked files), and
//! against a store in a temporary folder, so it needs neither root nor a daemon.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const NIX_TIMEOUT: Duration = Duration::from_secs(120);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let path = root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn flake_lock() -> Value {
    serde_json::from_str(&read("flake.lock")).expect("flake.lock is JSON")
}

/// A sandbox for Nix commands: its own store, HOME, caches and nix.conf, so nothing of the
/// machine's Nix setup (daemon, /etc/nix/nix.conf, ~/.cache/nix) is used or changed.
struct NixSandbox {
    dir: tempfile::TempDir,
}

impl NixSandbox {
    fn new() -> Self {
        require_tool("nix-instantiate");
        require_tool("nix");
        let dir = tempfile::tempdir().expect("temp dir");
        for sub in ["home", "cache", "config", "data", "state", "conf"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        // Debian's nix.conf names a `nixbld` group that does not exist; nothing is built here.
        std::fs::write(dir.path().join("conf/nix.conf"), "build-users-group =\n").unwrap();
        NixSandbox { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `program` with the sandbox's environment and store, and the flake features on.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        for var in [
            "NIX_REMOTE",
            "NIX_PATH",
            "NIX_CONFIG",
            "NIX_STORE_DIR",
            "NIX_STATE_DIR",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("HOME", self.path("home"))
            .env("XDG_CACHE_HOME", self.path("cache"))
            .env("XDG_CONFIG_HOME", self.path("config"))
            .env("XDG_DATA_HOME", self.path("data"))
            .env("XDG_STATE_HOME", self.path("state"))
            .env("NIX_CONF_DIR", self.path("conf"))
            .env("NIX_USER_CONF_FILES", self.path("conf/nix.conf"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .args(["--extra-experimental-features", "nix-command flakes"])
            .arg("--store")
            .arg(self.path("store"));
        cmd
    }
}

/// Fails, not skips, when a Nix tool is missing: `make test` installs it.
fn require_tool(tool: &str) {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        found,
        "`{tool}` is not installed: run `make test`, which installs Debian's nix-bin \
         (or `apt-get install nix-bin`), or use `nix develop`"
    );
}

/// Runs a command to completion, killing it after [`NIX_TIMEOUT`].
fn run(mut cmd: Command) -> Output {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{shown}: {e}"));
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > NIX_TIMEOUT {
            let _ = child.kill();
            panic!("{shown} ran over {NIX_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({})\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every `.nix` file in the repository (build outputs, dependencies and state left out).
fn nix_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let file_type = entry.file_type().unwrap();
            if file_type.is_dir() {
                let skip = ["target", "node_modules", "out"].contains(&name.as_ref())
                    || name.starts_with('.');
                if !skip {
                    walk(&path, found);
                }
            } else if file_type.is_file() && name.ends_with(".nix") {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    walk(&root(), &mut found);
    found.sort();
    found
}

#[test]
fn every_nix_file_parses() {
    let nix = NixSandbox::new();
    let files = nix_files();
    let rel: Vec<String> = files
        .iter()
        .map(|f| f.strip_prefix(root()).unwrap().display().to_string())
        .collect();
    for expected in [
        "flake.nix",
        "nix/package.nix",
        "nix/ffmpeg.nix",
        "nix/image.nix",
        "nix/devshell.nix",
        "nix/demo.nix",
    ] {
        assert!(
            rel.iter().any(|r| r == expected),
            "{expected} missing; found {rel:?}"
        );
    }
    for file in &files {
        let mut cmd = nix.command("nix-instantiate");
        cmd.arg("--parse").arg(file);
        assert_ok(
            &run(cmd),
            &format!("nix-instantiate --parse {}", file.display()),
        );
    }
    // Every module in nix/ is used by the flake (a stray one would be checked but never built).
    let flake = read("flake.nix");
    for r in rel.iter().filter(|r| r.starts_with("nix/")) {
        assert!(
            flake.contains(&format!("./{r}")),
            "flake.nix does not use {r}"
        );
    }
}

#[test]
fn flake_has_only_nixpkgs_as_input() {
    let nix = NixSandbox::new();
    // Evaluates flake.nix's own attributes (no nixpkgs needed for these).
    let mut cmd = nix.command("nix-instantiate");
    cmd.current_dir(root()).args([
        "--eval",
        "--strict",
        "--json",
        "-E",
        "let f = import ./flake.nix; in { inputs = builtins.attrNames f.inputs; \
         url = f.inputs.nixpkgs.url; args = builtins.attrNames (builtins.functionArgs f.outputs); }",
    ]);
    let out = run(cmd);
    assert_ok(&out, "evaluating flake.nix's inputs");
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON from nix-instantiate");
    assert_eq!(
        v["inputs"],
        serde_json::json!(["nixpkgs"]),
        "one input, nixpkgs: {v}"
    );
    assert_eq!(v["args"], serde_json::json!(["nixpkgs", "self"]), "{v}");
    let url = v["url"].as_str().unwrap();
    assert!(
        url.starts_with("github:NixOS/nixpkgs/"),
        "nixpkgs from GitHub: {url}"
    );

    // The lock has exactly the root and nixpkgs, and its `original` is what flake.nix asks for.
    let lock = flake_lock();
    let nodes = lock["nodes"].as_object().expect("nodes");
    let names: Vec<&str> = nodes.keys().map(String::as_str).collect();
    assert_eq!(names, ["nixpkgs", "root"], "lock nodes");
    assert_eq!(
        lock["nodes"]["root"]["inputs"],
        serde_json::json!({"nixpkgs": "nixpkgs"})
    );
    let original = &lock["nodes"]["nixpkgs"]["original"];
    let wanted = format!(
        "github:{}/{}/{}",
        original["owner"].as_str().unwrap_or_default(),
        original["repo"].as_str().unwrap_or_default(),
        original["ref"].as_str().unwrap_or_default()
    );
    assert_eq!(
        url, wanted,
        "flake.lock's original does not match flake.nix's input"
    );
}

#[test]
fn lock_pins_nixpkgs_by_github_rev_and_nar_hash() {
    let lock = flake_lock();
    assert_eq!(lock["version"], 7, "lock file version");
    assert_eq!(lock["root"], "root");
    let locked = &lock["nodes"]["nixpkgs"]["locked"];
    assert_eq!(locked["type"], "github", "{locked}");
    assert_eq!(locked["owner"], "NixOS", "{locked}");
    assert_eq!(locked["repo"], "nixpkgs", "{locked}");
    let rev = locked["rev"].as_str().expect("rev");
    assert!(
        rev.len() == 40
            && rev
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "rev is a full commit id: {rev}"
    );
    let nar = locked["narHash"].as_str().expect("narHash");
    let b64 = nar
        .strip_prefix("sha256-")
        .expect("narHash is an SRI sha256");
    // 32 bytes in base64: 43 characters and one '='.
    assert!(
        b64.len() == 44
            && b64.ends_with('=')
            && b64[..43]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/'),
        "narHash: {nar}"
    );
    let last_modified = locked["lastModified"].as_u64().expect("lastModified");
    // Between 2024-01-01 and 2040-01-01: a plausible commit time, in seconds.
    assert!(
        (1_704_067_200..2_208_988_800).contains(&last_modified),
        "{last_modified}"
    );
    assert!(
        locked.get("ref").is_none(),
        "locked pins a rev, not a branch: {locked}"
    );
}

/// Runs git in `repo` with a neutral identity and no user or system configuration.
fn git(nix: &NixSandbox, repo: &Path, args: &[&str]) {
    let mut cmd = Command::new("git");
    cmd.current_dir(repo)
        .env("HOME", nix.path("home"))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .args([
            "-c",
            "user.name=nix-flake-test",
            "-c",
            "user.email=test@localhost",
        ])
        .args([
            "-c",
            "commit.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args);
    assert_ok(&run(cmd), &format!("git {args:?}"));
}

/// Copies what the flake needs into a fresh git repository with one commit, as a clean
/// clone would have it.
fn flake_copy(nix: &NixSandbox) -> PathBuf {
    let repo = nix.path("flake");
    std::fs::create_dir_all(repo.join("nix")).unwrap();
    for file in ["flake.nix", "flake.lock", "Cargo.toml", "Cargo.lock"] {
        std::fs::copy(root().join(file), repo.join(file)).unwrap();
    }
    for entry in std::fs::read_dir(root().join("nix")).unwrap().flatten() {
        std::fs::copy(entry.path(), repo.join("nix").join(entry.file_name())).unwrap();
    }
    git(nix, &repo, &["init", "-q"]);
    git(nix, &repo, &["add", "-A"]);
    git(nix, &repo, &["commit", "-q", "-m", "flake"]);
    repo
}

fn flake_metadata(nix: &NixSandbox, repo: &Path) -> Output {
    let mut cmd = nix.command("nix");
    cmd.args([
        "flake",
        "metadata",
        "--json",
        "--offline",
        "--no-update-lock-file",
    ])
    .arg(repo);
    run(cmd)
}

#[test]
fn flake_metadata_accepts_the_lock_offline() {
    let nix = NixSandbox::new();
    let repo = flake_copy(&nix);
    let out = flake_metadata(&nix, &repo);
    assert_ok(&out, "nix flake metadata --offline");
    let meta: Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let lock = flake_lock();
    let want = &lock["nodes"]["nixpkgs"]["locked"];
    let got = &meta["locks"]["nodes"]["nixpkgs"]["locked"];
    assert_eq!(
        got["rev"], want["rev"],
        "nix reports the locked nixpkgs rev\n{meta:#}"
    );
    assert_eq!(got["narHash"], want["narHash"], "{meta:#}");
    assert_eq!(got["lastModified"], want["lastModified"], "{meta:#}");
    assert!(
        meta["path"]
            .as_str()
            .is_some_and(|p| p.starts_with("/nix/store/")),
        "the flake was copied into the store: {meta:#}"
    );

    // Teeth: a flake.nix asking for another branch than the lock's makes Nix re-lock, which
    // it cannot do offline (nor may it, with --no-update-lock-file), so a stale lock fails.
    let flake = std::fs::read_to_string(repo.join("flake.nix")).unwrap();
    let branch = lock["nodes"]["nixpkgs"]["original"]["ref"]
        .as_str()
        .unwrap();
    let moved = flake.replace(&format!("nixpkgs/{branch}\""), "nixpkgs/nixos-unstable\"");
    assert_ne!(moved, flake, "flake.nix names nixpkgs/{branch}");
    std::fs::write(repo.join("flake.nix"), moved).unwrap();
    git(&nix, &repo, &["commit", "-q", "-a", "-m", "another branch"]);
    let stale = flake_metadata(&nix, &repo);
    assert!(
        !stale.status.success(),
        "a lock that does not match flake.nix must not be accepted\n{}",
        String::from_utf8_lossy(&stale.stdout)
    );
}

/// Nix only sees files git tracks: once flake.nix is committed, everything it uses must be.
#[test]
fn flake_files_are_tracked_together() {
    let tracked = |rel: &str| {
        Command::new("git")
            .current_dir(root())
            .args(["ls-files", "--error-unmatch", "--", rel])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !tracked("flake.nix") {
        eprintln!(
            "flake.nix is not committed yet (or this is not a git checkout): nothing to check"
        );
        return;
    }
    let mut needed = vec!["flake.lock".to_string(), "Cargo.lock".to_string()];
    for f in nix_files() {
        needed.push(f.strip_prefix(root()).unwrap().display().to_string());
    }
    let untracked: Vec<&String> = needed.iter().filter(|f| !tracked(f)).collect();
    assert!(
        untracked.is_empty(),
        "flake.nix is tracked but these are not, so Nix would not see them \
         (an untracked flake.lock makes Nix re-lock from the network): {untracked:?}"
    );
}

#[test]
fn cargo_lock_has_what_cargo_lock_needs() {
    const CRATES_IO: &str = "registry+https://github.com/rust-lang/crates.io-index";
    let lock = read("Cargo.lock");
    let mut registry = 0;
    for block in lock.split("[[package]]").skip(1) {
        let fields: BTreeMap<&str, &str> = block
            .lines()
            .filter_map(|l| l.split_once(" = "))
            .filter_map(|(k, v)| Some((k.trim(), v.trim().strip_prefix('"')?.strip_suffix('"')?)))
            .collect();
        let name = format!("{} {}", fields["name"], fields["version"]);
        let Some(source) = fields.get("source") else {
            continue; // a workspace member
        };
        assert_eq!(
            *source, CRATES_IO,
            "{name}: only crates.io is fetched by cargoLock without extra hashes \
             (a git source needs cargoLock.outputHashes in nix/package.nix)"
        );
        let checksum = fields
            .get("checksum")
            .unwrap_or_else(|| panic!("{name} has no checksum"));
        assert!(
            checksum.len() == 64 && checksum.bytes().all(|b| b.is_ascii_hexdigit()),
            "{name}: checksum {checksum}"
        );
        registry += 1;
    }
    assert!(registry > 0, "no registry crates found in Cargo.lock");
}

/// nix/package.nix builds from a filtered source: every workspace member must be in it.
#[test]
fn nix_source_covers_the_workspace() {
    let cargo = read("Cargo.toml");
    let members = cargo
        .lines()
        .find_map(|l| l.trim().strip_prefix("members = ["))
        .and_then(|l| l.strip_suffix(']'))
        .expect("one-line `members = [...]` in Cargo.toml");
    let package = read("nix/package.nix");
    let mut dirs: Vec<String> = vec!["src".into()];
    dirs.extend(
        members
            .split(',')
            .map(|m| m.trim().trim_matches('"').to_string()),
    );
    for dir in dirs.iter().filter(|d| !d.is_empty()) {
        assert!(
            package.contains(&format!("../{dir}\n")),
            "nix/package.nix's source leaves out ../{dir}"
        );
    }
    for file in ["../Cargo.toml", "../Cargo.lock"] {
        assert!(
            package.contains(file),
            "nix/package.nix's source leaves out {file}"
        );
    }
}
