//! The command line: version, help, argh errors, `check`, and bad configs given to
//! `serve` (a clear message and exit 1, never a panic).

use std::process::{Command, Output};

fn wrenhub(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wrenhub")).args(args).output().expect("run wrenhub")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn version_prints_the_package_version() {
    let o = wrenhub(&["--version"]);
    assert!(o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), format!("wrenhub {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn help_lists_the_commands() {
    for args in [&["help"][..], &["--help"], &["-h"]] {
        let o = wrenhub(args);
        assert!(o.status.success(), "{args:?}");
        let t = text(&o);
        assert!(t.contains("serve") && t.contains("check"), "{t}");
    }
    let t = text(&wrenhub(&["serve", "help"]));
    assert!(t.contains("--c2s-listen") && t.contains("--data-dir") && t.contains("--log-level"), "{t}");
}

#[test]
fn unknown_flags_get_argh_errors() {
    let o = wrenhub(&["serve", "--frobnicate"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("Unrecognized argument: --frobnicate"), "{}", text(&o));
    let o = wrenhub(&[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("wrenhub help"));
}

#[test]
fn check_accepts_a_good_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ok.toml");
    std::fs::write(&path, "domain = 'hub.lan'\nc2s_listen = ['0.0.0.0:5222']\nmax_sessions = 50\n").unwrap();
    let o = wrenhub(&["check", "--config", path.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("configuration OK: domain hub.lan"));
}

#[test]
fn check_names_every_problem_with_key_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "domain = 'a b'\nmax_stanza_sise = 5\nc2s_idle_timeout = -1\n").unwrap();
    let o = wrenhub(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let t = text(&o);
    assert!(t.contains("3 problems"), "{t}");
    assert!(t.contains("- domain:") && t.contains("- max_stanza_sise: unknown key"), "{t}");
    assert!(t.contains("did you mean 'max_stanza_size'"), "{t}");
    assert!(t.contains("- c2s_idle_timeout: -1 is out of range"), "{t}");
    assert_eq!(t.matches("fix:").count(), 3, "{t}");
}

#[test]
fn serve_with_a_bad_config_explains_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "max_sessions = 'many'\n[oops\n").unwrap();
    let o = wrenhub(&["serve", "--config", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let t = text(&o);
    assert!(t.contains("not valid TOML"), "{t}");
    assert!(!t.contains("panicked"), "{t}");
    let o = wrenhub(&["serve", "--config", "/nonexistent/wrenhub.toml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("cannot read /nonexistent/wrenhub.toml"));
    let o = wrenhub(&["serve", "--c2s-listen", "localhost:99999", "--log-level", "chatty"]);
    assert_eq!(o.status.code(), Some(1));
    let t = text(&o);
    assert!(t.contains("--c2s-listen") && t.contains("--log-level"), "{t}");
}

#[test]
fn serve_reports_a_port_in_use_clearly() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let o = wrenhub(&["serve", "--c2s-listen", &addr, "--data-dir", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains(&format!("cannot listen on {addr}")), "{}", text(&o));
}

#[test]
fn every_board_profile_is_a_valid_config() {
    let boards = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("boards");
    let mut checked = 0;
    for entry in std::fs::read_dir(boards).unwrap() {
        let profile = entry.unwrap().path().join("wrenhub.toml");
        if profile.exists() {
            let o = wrenhub(&["check", "--config", profile.to_str().unwrap()]);
            assert!(o.status.success(), "{}: {}", profile.display(), text(&o));
            checked += 1;
        }
    }
    assert!(checked > 0, "no board profile found");
}
