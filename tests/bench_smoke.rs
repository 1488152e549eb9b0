//! The benchmark command stays runnable: `benches/run --smoke` against wrenhub and
//! Prosody (few sessions, one-second phases, debug binaries). Not a performance test:
//! it checks that every figure is measured for both servers, never how fast.

use std::path::Path;
use std::process::Command;

#[test]
fn the_benchmark_runs_and_measures_every_figure_for_both_servers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tempfile::tempdir().unwrap();
    let json_path = out.path().join("bench.json");
    let run = Command::new("python3")
        .arg(root.join("benches/run"))
        .args(["--smoke", "--servers", "wrenhub,prosody"])
        .args(["--wrenhub", env!("CARGO_BIN_EXE_wrenhub"), "--loadgen", env!("CARGO_BIN_EXE_wrenhub-loadgen")])
        .arg("--json")
        .arg(&json_path)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run benches/run");
    let text = format!("{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success(), "benches/run --smoke failed:\n{text}");
    let json = std::fs::read_to_string(&json_path).expect("the JSON result");
    for server in ["\"wrenhub\"", "\"prosody\""] {
        assert!(json.contains(server), "{json}");
    }
    // benches/run itself fails unless every figure is a positive number for both
    // servers; here: each is in the runs, the medians and the ratios.
    for figure in
        ["startup_s", "idle_rss_kib", "idle_anon_kib", "kib_per_session_20", "logins_per_s_seq", "logins_per_s_c50"]
            .into_iter()
            .chain(["cpu_ms_per_login", "msgs_per_s", "p50_ms", "p99_ms", "max_ms", "cpu_s_per_10k_msgs"])
            .chain(["msgs_per_s_sm", "cpu_s_per_10k_msgs_sm"])
            .chain(["cpu_ms_per_reconnect_login", "cpu_ms_per_reconnect_resume"])
            .chain(["muc_join_s", "muc_deliveries_per_s", "cpu_us_per_muc_delivery"])
            .chain(["upload_mib_per_s", "download_mib_per_s", "ws_round_trips_per_s", "ws_round_trips_per_s_10"])
            .chain(["cpu_us_per_ws_round_trip"])
    {
        assert_eq!(json.matches(&format!("\"{figure}\":")).count(), 5, "{figure}:\n{json}");
    }
    // What only wrenhub offers (SASL2, FAST): in its run and its medians.
    for figure in ["cpu_ms_per_reconnect_resume_sasl2", "cpu_ms_per_reconnect_fast"] {
        assert_eq!(json.matches(&format!("\"{figure}\":")).count(), 2, "{figure}:\n{json}");
    }
    // The hostile and offline figures (a memory delta may be 0 and then has no ratio).
    for figure in ["kib_per_unauth_partial", "kib_per_unauth_header", "peak_kib_100_stanzas"].into_iter().chain([
        "kib_per_hibernated_session",
        "kib_per_occupant",
        "offline_per_s_1",
        "offline_per_s_2",
        "offline_ping_p99_ms_1",
        "offline_ping_p99_ms_2",
        "upload_rss_growth_kib",
        "download_rss_growth_kib",
        "kib_per_ws_session",
        "kib_per_tcp_session_web",
    ]) {
        assert!(json.matches(&format!("\"{figure}\":")).count() >= 4, "{figure}:\n{json}");
    }
    assert!(text.contains("| messages/s, 2 pairs |"), "the table is printed:\n{text}");
    println!("{text}");
}
