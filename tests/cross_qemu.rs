//! Cross-built board binaries under emulation (Debian's qemu-user): each starts,
//! creates its data dir and certificate, serves a TLS login from a client on the
//! host, delivers a message, and stops cleanly on SIGTERM; `readelf -A` shows the
//! architecture, and the Pi Zero's binary stays within its 3.5 MiB budget. Needs `scripts/cross-build` first: `./scripts/test` builds the
//! binaries, installs qemu-user and runs this test with `--include-ignored`, naming
//! them in `WRENHUB_CROSS` (`triple=emulator command;…`).

mod common;
use common::*;
use std::process::Command;

fn check_architecture(triple: &str, binary: &str) {
    let out = Command::new("readelf").args(["-A", "-h", binary]).output().expect("readelf");
    let text = String::from_utf8_lossy(&out.stdout);
    let expected: &[&str] = match triple {
        "arm-unknown-linux-musleabihf" => &["Tag_CPU_arch: v6", "Tag_FP_arch: VFPv2"],
        t if t.starts_with("armv7") => &["Tag_CPU_arch: v7"],
        t if t.starts_with("aarch64") => &["AArch64"],
        _ => &[],
    };
    for e in expected {
        assert!(text.contains(e), "{triple}: readelf does not show {e:?}:\n{text}");
    }
    eprintln!("{triple}: {}", expected.join(", "));
}

/// The Pi Zero's (ARMv6) binary budget: 3.5 MiB, stripped.
const ARMV6_BUDGET: u64 = 3 * 1024 * 1024 + 512 * 1024;

fn run_emulated(triple: &str, emulator: &str) {
    let binary = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join(triple).join("release/wrenhub");
    let binary = binary.to_str().expect("path").to_string();
    assert!(std::path::Path::new(&binary).exists(), "{binary} missing: run scripts/cross-build {triple}");
    check_architecture(triple, &binary);
    let size = std::fs::metadata(&binary).expect("the binary's size").len();
    eprintln!("{triple}: {size} bytes");
    if triple == "arm-unknown-linux-musleabihf" {
        assert!(size <= ARMV6_BUDGET, "{triple}: {size} bytes, over the Pi Zero's budget of {ARMV6_BUDGET}");
    }
    let mut program: Vec<&str> = emulator.split_whitespace().collect();
    program.push(&binary);
    let mut server = Server::start_program(&program, tempfile::tempdir().expect("dir"), "");
    assert!(server.data_dir().join("tls/server.pem").exists(), "the emulated server made its certificate");
    // The host's CLI talks to the emulated server over its control socket.
    server.add_user("juliet", "pw");
    server.add_user("romeo", "pw");
    let mut juliet = server.login("juliet", "pw", "pi");
    let mut romeo = server.login("romeo", "pw", "laptop");
    romeo.send("<message to='juliet@localhost/pi' type='chat'><body>hello from the host</body></message>");
    assert!(juliet.read_until("</message>", WAIT).contains("<body>hello from the host</body>"));
    server.signal("TERM");
    assert_stream_error(&juliet.read_to_close(WAIT), "system-shutdown");
    let status = server.wait_exit(std::time::Duration::from_secs(30)).expect("the emulated server stops");
    assert_eq!(status.code(), Some(0), "{triple} exit status; log:\n{}", server.log());
    eprintln!("{triple} under {emulator}: login over TLS, message delivered, clean stop");
}

#[test]
#[ignore = "needs cross-built binaries and qemu-user: ./scripts/test runs it"]
fn cross_built_binaries_serve_clients_under_emulation() {
    let spec = std::env::var("WRENHUB_CROSS")
        .expect("WRENHUB_CROSS is not set: run ./scripts/test (it cross-builds and installs qemu-user)");
    let mut ran = 0;
    for entry in spec.split(';').filter(|e| !e.trim().is_empty()) {
        let (triple, emulator) = entry.split_once('=').expect("triple=emulator");
        run_emulated(triple.trim(), emulator.trim());
        ran += 1;
    }
    assert!(ran > 0, "WRENHUB_CROSS names no target");
}
