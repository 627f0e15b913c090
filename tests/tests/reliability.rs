//! Runs the reliability suite (`src/bin/reliability/`) in `--quick` mode with a
//! fixed seed and checks its JSON: every section ran, did real work and lost nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use serde_json::Value;

#[test]
fn quick_reliability_suite_loses_nothing() {
    let output = Command::new(env!("CARGO_BIN_EXE_reliability"))
        .args(["--quick", "--json", "--seed", "20261124"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let json = stdout.lines().last().unwrap_or_default();
    let doc: Value = serde_json::from_str(json)
        .unwrap_or_else(|e| panic!("no JSON document ({e}):\n{stdout}\n{stderr}"));
    assert_eq!(doc["losses"], 0, "{stdout}\n{stderr}");
    assert!(output.status.success(), "{stdout}\n{stderr}");

    let count = |section: &str, key: &str| doc[section][key].as_u64().unwrap_or(0);
    assert!(count("archive_kills", "kills") >= 5, "{doc}");
    assert!(count("archive_kills", "acknowledged") > 0, "{doc}");
    assert!(count("run_kills", "kills") >= 3, "{doc}");
    assert!(count("run_kills", "messages") > 0, "{doc}");
    assert!(count("fault_storm", "faults_injected") > 0, "{doc}");
    assert!(count("fault_storm", "retries") > 0, "{doc}");
    assert!(count("mime", "inputs") >= 300, "{doc}");
    assert!(count("profile_fuzz", "inputs") >= 1_000, "{doc}");
    assert!(count("profile_fuzz", "rejected") > 0, "{doc}");
    // The command-line section needs the `m365-archiver` binary built next to this one.
    let cli = &doc["cli_fuzz"];
    assert!(
        cli["inputs"].as_u64().unwrap_or(0) > 0 || cli["skipped"].is_string(),
        "{doc}"
    );
    for section in [
        "archive_kills",
        "run_kills",
        "fault_storm",
        "mime",
        "profile_fuzz",
        "cli_fuzz",
    ] {
        assert!(doc[section]["error"].is_null(), "{section}: {doc}");
    }
}
