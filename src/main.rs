//! The `wrenhub` command line (argh): `serve`, `check`, `--version`, `help`.

/// Static musl builds (the boards) allocate with dlmalloc: musl's own allocator
/// keeps about 7 KiB more per idle TLS session (BENCHMARKS.md, "On the boards").
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

use argh::FromArgs;
use std::path::PathBuf;
use std::process::ExitCode;
use wrenhub::config::{Config, Overrides, Problem};
use wrenhub::control::Request;
use wrenhub::jid::BareJid;
use wrenhub::sasl::scram::ScramRecord;
use wrenhub::store::{Account, Store, StoreError};

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
    User(UserCmd),
    Cert(CertCmd),
}

/// manage accounts (works whether or not the server is running)
#[derive(FromArgs)]
#[argh(subcommand, name = "user", help_triggers("-h", "--help", "help"))]
struct UserCmd {
    #[argh(subcommand)]
    action: UserAction,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum UserAction {
    Add(UserAdd),
    Passwd(UserPasswd),
    Del(UserDel),
    Disable(UserDisable),
    Enable(UserEnable),
    List(UserList),
}

/// disable an account: it cannot log in (account-disabled) and its sessions end
#[derive(FromArgs)]
#[argh(subcommand, name = "disable")]
struct UserDisable {
    /// TOML config file (for data_dir and domain)
    #[argh(option)]
    config: Option<PathBuf>,
    /// data directory (overrides the config)
    #[argh(option)]
    data_dir: Option<PathBuf>,
    /// the account: user@domain, or just user for the configured domain
    #[argh(positional)]
    jid: String,
}

/// enable a disabled account
#[derive(FromArgs)]
#[argh(subcommand, name = "enable")]
struct UserEnable {
    /// TOML config file (for data_dir and domain)
    #[argh(option)]
    config: Option<PathBuf>,
    /// data directory (overrides the config)
    #[argh(option)]
    data_dir: Option<PathBuf>,
    /// the account: user@domain, or just user for the configured domain
    #[argh(positional)]
    jid: String,
}

/// create an account; the password is asked for without echo
#[derive(FromArgs)]
#[argh(subcommand, name = "add")]
struct UserAdd {
    /// TOML config file (for data_dir and domain)
    #[argh(option)]
    config: Option<PathBuf>,
    /// data directory (overrides the config)
    #[argh(option)]
    data_dir: Option<PathBuf>,
    /// the account: user@domain, or just user for the configured domain
    #[argh(positional)]
    jid: String,
    /// read the password from the first line of standard input
    #[argh(switch)]
    password_stdin: bool,
}

/// set an account's password
#[derive(FromArgs)]
#[argh(subcommand, name = "passwd")]
struct UserPasswd {
    /// TOML config file (for data_dir and domain)
    #[argh(option)]
    config: Option<PathBuf>,
    /// data directory (overrides the config)
    #[argh(option)]
    data_dir: Option<PathBuf>,
    /// the account: user@domain, or just user for the configured domain
    #[argh(positional)]
    jid: String,
    /// read the password from the first line of standard input
    #[argh(switch)]
    password_stdin: bool,
}

/// delete an account (its sessions end)
#[derive(FromArgs)]
#[argh(subcommand, name = "del")]
struct UserDel {
    /// TOML config file (for data_dir and domain)
    #[argh(option)]
    config: Option<PathBuf>,
    /// data directory (overrides the config)
    #[argh(option)]
    data_dir: Option<PathBuf>,
    /// the account: user@domain, or just user for the configured domain
    #[argh(positional)]
    jid: String,
}

/// list the accounts
#[derive(FromArgs)]
#[argh(subcommand, name = "list")]
struct UserList {
    /// TOML config file (for data_dir and domain)
    #[argh(option)]
    config: Option<PathBuf>,
    /// data directory (overrides the config)
    #[argh(option)]
    data_dir: Option<PathBuf>,
}

/// the TLS certificate: show it, or export the local CA for phones and laptops
#[derive(FromArgs)]
#[argh(subcommand, name = "cert", help_triggers("-h", "--help", "help"))]
struct CertCmd {
    #[argh(subcommand)]
    action: CertAction,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum CertAction {
    Show(CertShow),
    ExportCa(CertExportCa),
}

/// print subject names, expiry and SHA-256 fingerprints (creates the local CA if needed)
#[derive(FromArgs)]
#[argh(subcommand, name = "show")]
struct CertShow {
    /// TOML config file (for data_dir and domain)
    #[argh(option)]
    config: Option<PathBuf>,
    /// data directory (overrides the config)
    #[argh(option)]
    data_dir: Option<PathBuf>,
}

/// write the local CA certificate (PEM) to install on devices
#[derive(FromArgs)]
#[argh(subcommand, name = "export-ca")]
struct CertExportCa {
    /// TOML config file (for data_dir and domain)
    #[argh(option)]
    config: Option<PathBuf>,
    /// data directory (overrides the config)
    #[argh(option)]
    data_dir: Option<PathBuf>,
    /// output file (default: standard output)
    #[argh(option)]
    out: Option<PathBuf>,
    /// pem (Linux, Firefox, Android), der (a .crt for Windows, Android, macOS) or
    /// mobileconfig (an iOS/macOS profile); default pem
    #[argh(option, default = "wrenhub::tls::export::Format::Pem")]
    format: wrenhub::tls::export::Format,
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
    /// HTTPS listener IP:PORT (upload, WebSocket, pages), repeatable (overrides the file)
    #[argh(option)]
    http_listen: Vec<String>,
    /// a built-in board profile: raspberry-pi-zero, raspberry-pi-4, openwrt-router, nas
    #[argh(option)]
    board: Option<String>,
    /// external component listener IP:PORT (XEP-0114), repeatable (overrides the file)
    #[argh(option)]
    component_listen: Vec<String>,
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
        Some(Command::User(cmd)) => user(cmd),
        Some(Command::Cert(cmd)) => cert(cmd),
    }
}

/// Loads the config for a management command (flags: --config, --data-dir).
fn load_for_command(config: Option<&std::path::Path>, data_dir: Option<PathBuf>) -> Result<Config, ExitCode> {
    let overrides = Overrides { data_dir, ..Overrides::default() };
    Config::load(config, &overrides).map_err(|problems| {
        print_problems(&problems);
        ExitCode::FAILURE
    })
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("wrenhub: {message}");
    ExitCode::FAILURE
}

fn user(cmd: UserCmd) -> ExitCode {
    let (config_path, data_dir) = match &cmd.action {
        UserAction::Add(a) => (a.config.clone(), a.data_dir.clone()),
        UserAction::Passwd(a) => (a.config.clone(), a.data_dir.clone()),
        UserAction::Del(a) => (a.config.clone(), a.data_dir.clone()),
        UserAction::Disable(a) => (a.config.clone(), a.data_dir.clone()),
        UserAction::Enable(a) => (a.config.clone(), a.data_dir.clone()),
        UserAction::List(a) => (a.config.clone(), a.data_dir.clone()),
    };
    let config = match load_for_command(config_path.as_deref(), data_dir) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let jid_of = |given: &str| -> Result<BareJid, String> {
        let full = if given.contains('@') { given.to_string() } else { format!("{given}@{}", config.domain) };
        let jid: BareJid = full.parse().map_err(|e| format!("{given:?} is not a valid account address: {e}"))?;
        if jid.local().is_none() {
            return Err(format!("{given:?} has no user part (write user@{})", config.domain));
        }
        Ok(jid)
    };
    let request = match cmd.action {
        UserAction::List(_) => Request::List,
        UserAction::Del(d) => match jid_of(&d.jid) {
            Ok(j) => Request::Del(j),
            Err(e) => return fail(e),
        },
        UserAction::Disable(d) => match jid_of(&d.jid) {
            Ok(j) => Request::SetDisabled(j, true),
            Err(e) => return fail(e),
        },
        UserAction::Enable(d) => match jid_of(&d.jid) {
            Ok(j) => Request::SetDisabled(j, false),
            Err(e) => return fail(e),
        },
        UserAction::Add(UserAdd { jid, password_stdin, .. })
        | UserAction::Passwd(UserPasswd { jid, password_stdin, .. }) => {
            let jid = match jid_of(&jid) {
                Ok(j) => j,
                Err(e) => return fail(e),
            };
            let password = match read_password(password_stdin) {
                Ok(p) => p,
                Err(e) => return fail(e),
            };
            let Some(password) = wrenhub::sasl::normalize_password(&password) else {
                return fail("the password contains characters that cannot be used (RFC 8265 OpaqueString)");
            };
            // The one PBKDF2 run per password, here in the CLI, never in the server.
            let scram = ScramRecord::new(&password);
            Request::Put(jid, Account { scram, disabled: false })
        }
    };
    let is_list = request == Request::List;
    let result = run_request(&config.data_dir, request);
    match result {
        Ok(text) if is_list => {
            for jid in text.split(' ').filter(|t| !t.is_empty()) {
                println!("{jid}");
            }
            ExitCode::SUCCESS
        }
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// Sends the request to the running server, or applies it to the store directly
/// when no server runs. A server that is starting may hold the store a moment before
/// its control socket answers: retry briefly.
fn run_request(data_dir: &std::path::Path, request: Request) -> Result<String, String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        if let Some(answer) = wrenhub::control::send(data_dir, &request) {
            return answer;
        }
        match Store::open(data_dir) {
            Ok(store) => return request.apply(&store),
            Err(StoreError::InUse(_)) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(StoreError::InUse(_)) => {
                return Err("the server is running but its control socket does not answer".into())
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

fn read_password(from_stdin: bool) -> Result<String, String> {
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map_err(|e| format!("cannot read the password: {e}"))?;
        line.trim_end_matches(['\n', '\r']).to_string()
    } else {
        let first = rpassword::prompt_password("Password: ").map_err(|e| format!("cannot read the password: {e}"))?;
        let again = rpassword::prompt_password("Again: ").map_err(|e| format!("cannot read the password: {e}"))?;
        if first != again {
            return Err("the passwords differ".into());
        }
        first
    };
    if password.is_empty() {
        return Err("the password is empty".into());
    }
    Ok(password)
}

fn cert(cmd: CertCmd) -> ExitCode {
    let (config_path, data_dir) = match &cmd.action {
        CertAction::Show(a) => (a.config.clone(), a.data_dir.clone()),
        CertAction::ExportCa(a) => (a.config.clone(), a.data_dir.clone()),
    };
    let config = match load_for_command(config_path.as_deref(), data_dir) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let (cert_path, _, local_ca) = match wrenhub::tls::cert_paths(&config) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    match cmd.action {
        CertAction::Show(_) => {
            if let Some(ca) = &local_ca {
                for line in wrenhub::tls::describe("local CA", &ca.ca_cert) {
                    println!("{line}");
                }
            }
            for line in wrenhub::tls::describe("server certificate", &cert_path) {
                println!("{line}");
            }
            println!("certificate file: {}", cert_path.display());
            ExitCode::SUCCESS
        }
        CertAction::ExportCa(e) => {
            let Some(ca) = local_ca else {
                return fail("tls_cert is configured: there is no local CA to export");
            };
            let pem = match std::fs::read(&ca.ca_cert) {
                Ok(p) => p,
                Err(err) => return fail(format!("{}: {err}", ca.ca_cert.display())),
            };
            let pem = match wrenhub::tls::export::export(&pem, e.format, config.domain.as_str()) {
                Ok(bytes) => bytes,
                Err(err) => return fail(format!("{}: {err}", ca.ca_cert.display())),
            };
            match e.out {
                Some(path) => match std::fs::write(&path, &pem) {
                    Ok(()) => {
                        println!("wrote the local CA certificate to {}", path.display());
                        ExitCode::SUCCESS
                    }
                    Err(err) => fail(format!("{}: {err}", path.display())),
                },
                None => {
                    use std::io::Write as _;
                    let mut stdout = std::io::stdout().lock();
                    match stdout.write_all(&pem).and_then(|()| stdout.flush()) {
                        Ok(()) => ExitCode::SUCCESS,
                        Err(err) => fail(format!("standard output: {err}")),
                    }
                }
            }
        }
    }
}

fn print_problems(problems: &[Problem]) {
    let n = problems.len();
    eprintln!("wrenhub: the configuration has {n} problem{}:", if n == 1 { "" } else { "s" });
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
        http_listen: cmd.http_listen,
        component_listen: cmd.component_listen,
        board: cmd.board,
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
