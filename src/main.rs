//! The `wrenhub` command line (argh): `serve`, `check`, `--version`, `help`.

use argh::FromArgs;
use std::path::PathBuf;
use std::process::ExitCode;
use wrenhub::config::{Config, Overrides, Problem};

/// wrenhub: a small XMPP server for a LAN chat hub, in one binary.
#[derive(FromArgs)]
#[argh(help_triggers("-h", "--help", "help"))]
struct Cli {
    /// print the version and exit
    #[argh(switch)]
    version: bool,
    #[argh(subcommand)]
    command: Option<Command>,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Command {
    Serve(ServeCmd),
    Check(CheckCmd),
}

/// run the server (with no options: domain localhost on 127.0.0.1:5222 and [::1]:5222)
#[derive(FromArgs)]
#[argh(subcommand, name = "serve", help_triggers("-h", "--help", "help"))]
struct ServeCmd {
    /// TOML config file; keys it leaves out keep their defaults
    #[argh(option)]
    config: Option<PathBuf>,
    /// the domain served, e.g. hub.lan (overrides the file)
    #[argh(option)]
    domain: Option<String>,
    /// client listener IP:PORT, repeatable; port 0 picks a free port (overrides the file)
    #[argh(option)]
    c2s_listen: Vec<String>,
    /// client listener with Direct TLS (XEP-0368), IP:PORT, repeatable (overrides the file)
    #[argh(option)]
    c2s_direct_tls_listen: Vec<String>,
    /// data directory (overrides the file; default ./wrenhub-data)
    #[argh(option)]
    data_dir: Option<PathBuf>,
    /// off, error, warn, info, debug or trace (overrides the file)
    #[argh(option)]
    log_level: Option<String>,
}

/// validate a config file; prints each problem with its key and the fix, exit 1 if any
#[derive(FromArgs)]
#[argh(subcommand, name = "check", help_triggers("-h", "--help", "help"))]
struct CheckCmd {
    /// TOML config file to check (none: the built-in defaults)
    #[argh(option)]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli: Cli = argh::from_env();
    if cli.version {
        println!("wrenhub {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    match cli.command {
        None => {
            eprintln!("wrenhub: no command given.\nRun 'wrenhub help' for the commands (most likely: wrenhub serve).");
            ExitCode::FAILURE
        }
        Some(Command::Check(cmd)) => check(cmd),
        Some(Command::Serve(cmd)) => serve(cmd),
    }
}

fn print_problems(problems: &[Problem]) {
    let n = problems.len();
    eprintln!(
        "wrenhub: the configuration has {n} problem{}:",
        if n == 1 { "" } else { "s" }
    );
    for p in problems {
        eprintln!("- {p}");
    }
}

fn check(cmd: CheckCmd) -> ExitCode {
    match Config::load(cmd.config.as_deref(), &Overrides::default()) {
        Ok(c) => {
            let listen: Vec<String> = c.c2s_listen.iter().map(|a| a.to_string()).collect();
            println!(
                "configuration OK: domain {}, clients on {}, data in {}",
                c.domain,
                listen.join(", "),
                c.data_dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(problems) => {
            print_problems(&problems);
            ExitCode::FAILURE
        }
    }
}

fn serve(cmd: ServeCmd) -> ExitCode {
    let overrides = Overrides {
        domain: cmd.domain,
        c2s_listen: cmd.c2s_listen,
        data_dir: cmd.data_dir,
        log_level: cmd.log_level,
        c2s_direct_tls_listen: cmd.c2s_direct_tls_listen,
    };
    let config = match Config::load(cmd.config.as_deref(), &overrides) {
        Ok(c) => c,
        Err(problems) => {
            print_problems(&problems);
            return ExitCode::FAILURE;
        }
    };
    wrenhub::logger::init(config.log_level);
    match wrenhub::server::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
