//! Temporal's environment configuration as its CLI and SDKs read it: a profile of the config
//! file names the server when `TEMPORAL_ADDRESS` is not set, and the embedded server leaves a
//! profile's remote-only settings alone.

use crate::common;

use common::*;
use std::time::Duration;

/// `worker` and `submit` find the server in a profile (`TEMPORAL_CONFIG_FILE`,
/// `TEMPORAL_PROFILE`), with no `TEMPORAL_ADDRESS`; a profile that does not exist is named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_profile_names_the_server() {
    let h = Harness::start().await;
    // Commands of this harness have no TEMPORAL_ADDRESS.
    let bare = Harness::without_server();
    let out = bare.path("out");
    let config = bare.path("temporal.toml");
    std::fs::write(
        &config,
        format!(
            "[profile.default]\naddress = \"127.0.0.1:1\"\n\n[profile.media]\naddress = \"{}\"\nnamespace = \"default\"\n",
            h.address()
        ),
    )
    .unwrap();
    let env = vec![
        ("TEMPORAL_CONFIG_FILE", s(&config).to_string()),
        ("TEMPORAL_PROFILE", "media".to_string()),
    ];
    let mut worker = bare.spawn_with_env(
        &["worker", "--out", s(&out), "--task-queue", "q-profile"],
        &env,
    );
    make_video(
        &object_path(&out, ARCHIVE_BUCKET, "originals/c1/prof1/original.mp4"),
        320,
        240,
        2,
        25,
    )
    .await;
    let hook = WebhookReceiver::start("whsec-profile");
    let file = write_job(&bare, "job.json", &video_job_payload("prof1", "c1", &hook));
    let done = bare
        .run_with_env(
            &[
                "submit",
                "--job",
                s(&file),
                "--wait",
                "--task-queue",
                "q-profile",
            ],
            env.clone(),
        )
        .await;
    if !done.status.success() {
        panic!("{}\n{}", done.dump(), worker.dump());
    }
    assert_eq!(done.json()["status"], "completed", "{}", done.dump());
    hook.expect_one_valid().await;

    let missing = bare
        .run_with_env(
            &["submit", "--job", s(&file), "--task-queue", "q-profile"],
            [
                ("TEMPORAL_CONFIG_FILE", s(&config).to_string()),
                ("TEMPORAL_PROFILE", "nope".to_string()),
            ],
        )
        .await;
    missing.assert_failure();
    assert!(missing.stderr.contains("nope"), "{}", missing.dump());

    worker.signal(libc::SIGTERM);
    let _ = worker.wait_for_exit(Duration::from_secs(30)).await;
}

/// A profile without an address but with a namespace (a cluster's `media`): `run` embeds its
/// own server, which has only `default`, and says the namespace is not used, instead of
/// failing with "Namespace media is not found".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_server_ignores_a_profiles_namespace() {
    let bare = Harness::without_server();
    let config = bare.path("temporal.toml");
    std::fs::write(&config, "[profile.default]\nnamespace = \"media\"\n").unwrap();
    let clip = bare.path("in/clip.mp4");
    make_video(&clip, 320, 240, 2, 25).await;
    let run = bare
        .run_with_env(
            &["run", s(&clip), "--out", s(&bare.path("out")), "--json"],
            [("TEMPORAL_CONFIG_FILE", s(&config).to_string())],
        )
        .await;
    run.assert_success();
    assert_eq!(run.json()["status"], "completed", "{}", run.dump());
    assert!(
        run.stderr
            .contains("remote-only settings are not used with the embedded server"),
        "{}",
        run.dump()
    );
}
