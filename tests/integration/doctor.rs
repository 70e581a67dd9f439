//! `transcoder doctor` reports what the machine really has and fails when the configured
//! mode cannot work.

use crate::common;

use common::*;
use serde_json::Value;
use std::time::Duration;

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {report:#}"))
}

async fn doctor(h: &Harness, env: &[(&str, &str)]) -> CmdOutput {
    let mut cmd = h.command(&["doctor", "--json", "--out", h.path("out").to_str().unwrap()]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let logs = h.path("logs-doctor");
    std::fs::create_dir_all(&logs).unwrap();
    run_to_end(cmd, &logs, Duration::from_secs(120)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reports_and_gates_on_requirements() {
    let h = Harness::without_server();
    let ok = doctor(&h, &[]).await;
    ok.assert_success();
    let report = ok.json();
    assert_eq!(report["ready"], true, "{report:#}");
    assert_eq!(check(&report, "encoder libx264")["ok"], true);
    assert_eq!(check(&report, "storage")["ok"], true);
    // The NVENC verdict comes from a real encode; either way it says why.
    let nvenc = check(&report, "nvenc test encode");
    assert!(
        !nvenc["detail"].as_str().unwrap_or_default().is_empty(),
        "{nvenc:#}"
    );

    let broken = doctor(&h, &[("FFMPEG", "/nonexistent/ffmpeg")]).await;
    assert!(
        !broken.status.success(),
        "a missing ffmpeg must fail the doctor\n{}",
        broken.dump()
    );
    let report = broken.json();
    assert_eq!(check(&report, "ffmpeg")["ok"], false);
    assert_eq!(report["ready"], false);

    // Asking for NVENC makes it required: this fails wherever the test encode fails.
    if nvenc["ok"] == false {
        let gpu = doctor(&h, &[("TRANSCODER_ENCODER", "nvenc")]).await;
        assert!(
            !gpu.status.success(),
            "NVENC required but unavailable must fail\n{}",
            gpu.dump()
        );
        assert_eq!(check(&gpu.json(), "nvenc test encode")["required"], true);
    }
}
