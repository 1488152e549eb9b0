//! `reconnects`: C clients, each dropping its connection and coming back N/C
//! times, the way a phone does on a flaky network. How it comes back:
//!
//! - `login`: a full login (STARTTLS, SCRAM-SHA-1, bind), a new session each time;
//! - `resume`: a full SCRAM-SHA-1 login, then XEP-0198 `<resume/>` of the session
//!   its dropped connection left hibernating, instead of binding (what Prosody's
//!   mod_smacks offers too);
//! - `resume-sasl2`: SASL2 SCRAM-SHA-1 with the `<resume/>` inline (one round trip
//!   after TLS and SCRAM's two);
//! - `fast`: SASL2 with a XEP-0484 FAST token (HT-SHA-256-NONE) and Bind 2: one
//!   message each way, no PBKDF2 anywhere.
//!
//! Prints `{"phase":"ready"}` once every client is set up (the benchmark reads the
//! server's CPU time from then on), then the result.

use super::{connect_tls, other, print, run_jobs, scram, Conn, Target};
use argh::FromArgs;
use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;
use std::time::Instant;

#[derive(FromArgs)]
/// clients that drop their connection and come back (login | resume | fast)
#[argh(subcommand, name = "reconnects")]
pub struct ReconnectsCmd {
    /// how a client comes back: login, resume or fast
    #[argh(option)]
    mode: String,
    /// reconnects in all
    #[argh(option)]
    count: usize,
    /// clients (each its own account)
    #[argh(option, default = "10")]
    clients: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Login,
    Resume,
    ResumeSasl2,
    Fast,
}

/// What a client keeps between reconnects.
#[derive(Default)]
struct Client {
    /// The open connection (dropped without `</stream>` to reconnect).
    conn: Option<Conn>,
    /// The resumption id (`resume`) or the token (`fast`).
    secret: String,
}

const AGENT_PREFIX: &str = "<user-agent id='wrenhub-loadgen-";

fn word<'t>(text: &'t str, key: &str) -> Option<&'t str> {
    text.split(' ').find_map(|w| w.strip_prefix(key))
}

/// SASL2 success, then the features that follow it (no restart).
async fn after_success(conn: &mut Conn, success: &super::Ev) -> io::Result<()> {
    let features = conn.element().await?;
    if features.name != "features" {
        return Err(other(format!("no features after {success:?}: {features:?}")));
    }
    Ok(())
}

async fn set_up(target: &Target, user: &str, k: usize, mode: Mode) -> io::Result<Client> {
    let agent = format!("{AGENT_PREFIX}{k}'/>");
    match mode {
        Mode::Login => Ok(Client::default()),
        Mode::Resume => {
            let mut conn = super::login(target, user, &format!("r{k}")).await?;
            let id = enable_resumption(&mut conn).await?;
            Ok(Client { secret: id, conn: Some(conn) })
        }
        Mode::ResumeSasl2 => {
            let mut conn = connect_tls(target).await?;
            let inline = format!(
                "{agent}<bind xmlns='urn:xmpp:bind:0'><tag>bench</tag>\
                 <enable xmlns='urn:xmpp:sm:3' resume='true'/></bind>"
            );
            let success = scram(&mut conn, target, user, Some(&inline)).await?;
            after_success(&mut conn, &success).await?;
            let id = word(&success.text, "enabled@id=").ok_or_else(|| other(format!("no SM id: {success:?}")))?;
            Ok(Client { secret: id.to_string(), conn: Some(conn) })
        }
        Mode::Fast => {
            let mut conn = connect_tls(target).await?;
            let inline = format!("{agent}<request-token xmlns='urn:xmpp:fast:0' mechanism='HT-SHA-256-NONE'/>");
            let success = scram(&mut conn, target, user, Some(&inline)).await?;
            after_success(&mut conn, &success).await?;
            let token = word(&success.text, "token@token=").ok_or_else(|| other(format!("no token: {success:?}")))?;
            let _ = conn.send(b"</stream:stream>").await;
            Ok(Client { secret: token.to_string(), conn: None })
        }
    }
}

/// One reconnect: the old connection is dropped (no `</stream>`), a new one comes.
async fn reconnect(target: &Target, user: &str, k: usize, mode: Mode, client: &mut Client) -> io::Result<()> {
    drop(client.conn.take());
    let agent = format!("{AGENT_PREFIX}{k}'/>");
    match mode {
        Mode::Login => {
            let mut conn = super::login(target, user, &format!("r{k}")).await?;
            let _ = conn.send(b"</stream:stream>").await;
        }
        Mode::Resume => {
            let mut conn = connect_tls(target).await?;
            scram(&mut conn, target, user, None).await?;
            conn.framer.restart();
            conn.open_stream(&target.domain).await?;
            conn.send(format!("<resume xmlns='urn:xmpp:sm:3' previd='{}' h='0'/>", client.secret).as_bytes()).await?;
            let resumed = conn.element().await?;
            if resumed.name != "resumed" {
                return Err(other(format!("not resumed: {resumed:?}")));
            }
            client.conn = Some(conn);
        }
        Mode::ResumeSasl2 => {
            let mut conn = connect_tls(target).await?;
            // Nothing was sent to the client: h is 0.
            let inline = format!("{agent}<resume xmlns='urn:xmpp:sm:3' previd='{}' h='0'/>", client.secret);
            let success = scram(&mut conn, target, user, Some(&inline)).await?;
            if !success.text.contains(" resumed") {
                return Err(other(format!("not resumed: {success:?}")));
            }
            after_success(&mut conn, &success).await?;
            client.conn = Some(conn);
        }
        Mode::Fast => {
            let mut conn = connect_tls(target).await?;
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, client.secret.as_bytes());
            let mut response = format!("{user}\0").into_bytes();
            response.extend_from_slice(ring::hmac::sign(&key, b"Initiator").as_ref());
            let auth = format!(
                "<authenticate xmlns='urn:xmpp:sasl:2' mechanism='HT-SHA-256-NONE'><initial-response>{}\
                 </initial-response>{agent}<fast xmlns='urn:xmpp:fast:0'/>\
                 <bind xmlns='urn:xmpp:bind:0'><tag>bench</tag></bind></authenticate>",
                super::b64(&response)
            );
            conn.send(auth.as_bytes()).await?;
            let success = conn.element().await?;
            if success.name != "success" {
                return Err(other(format!("FAST login failed: {success:?}")));
            }
            after_success(&mut conn, &success).await?;
            if let Some(token) = word(&success.text, "token@token=") {
                client.secret = token.to_string(); // rotated
            }
            let _ = conn.send(b"</stream:stream>").await;
        }
    }
    Ok(())
}

/// XEP-0198 `<enable resume='true'/>`: the resumption id.
async fn enable_resumption(conn: &mut Conn) -> io::Result<String> {
    conn.send(b"<enable xmlns='urn:xmpp:sm:3' resume='true'/>").await?;
    let enabled = conn.element().await?;
    if enabled.name == "enabled" && !enabled.id.is_empty() {
        Ok(enabled.id.clone())
    } else {
        Err(other(format!("stream management: {enabled:?}")))
    }
}

#[derive(FromArgs)]
/// N sessions enable resumable stream management, then all their connections
/// drop at once (no `</stream>`): the server holds N hibernating sessions
#[argh(subcommand, name = "hibernate")]
pub struct HibernateCmd {
    /// sessions in all
    #[argh(option)]
    count: usize,
    /// logins in progress at once
    #[argh(option, default = "50")]
    concurrency: usize,
    /// resources are h{round}-{i}, so later rounds add sessions
    #[argh(option, default = "0")]
    round: usize,
}

pub fn hibernate(
    ex: &smol::LocalExecutor<'static>,
    target: &Rc<Target>,
    user: &dyn Fn(usize) -> String,
    cmd: HibernateCmd,
) -> std::process::ExitCode {
    let kept: Rc<RefCell<Vec<Conn>>> = Rc::new(RefCell::new(Vec::with_capacity(cmd.count)));
    let failed = Rc::new(Cell::new(0usize));
    let first_error = Rc::new(RefCell::new(None::<String>));
    {
        let (kept, failed, first_error, target) =
            (Rc::clone(&kept), Rc::clone(&failed), Rc::clone(&first_error), Rc::clone(target));
        let names: Rc<Vec<String>> = Rc::new((0..cmd.count).map(user).collect());
        let round = cmd.round;
        futures_lite::future::block_on(ex.run(run_jobs(ex, cmd.count, cmd.concurrency, move |i| {
            let (kept, failed, first_error, target, names) =
                (Rc::clone(&kept), Rc::clone(&failed), Rc::clone(&first_error), Rc::clone(&target), Rc::clone(&names));
            async move {
                let result = async {
                    let mut c = super::login(&target, &names[i], &format!("h{round}-{i}")).await?;
                    enable_resumption(&mut c).await?;
                    Ok::<_, io::Error>(c)
                };
                match result.await {
                    Ok(c) => kept.borrow_mut().push(c),
                    Err(e) => {
                        failed.set(failed.get() + 1);
                        first_error.borrow_mut().get_or_insert(e.to_string());
                    }
                }
            }
        })));
    }
    let hibernating = kept.borrow().len();
    // Every connection drops without a word, as a phone's radio does.
    kept.borrow_mut().clear();
    print(format!(
        "{{\"hibernating\":{hibernating},\"failed\":{},\"error\":{:?}}}",
        failed.get(),
        first_error.borrow().clone().unwrap_or_default()
    ));
    std::process::ExitCode::SUCCESS
}

pub fn run(
    ex: &smol::LocalExecutor<'static>,
    target: &Rc<Target>,
    user: &dyn Fn(usize) -> String,
    cmd: ReconnectsCmd,
) -> std::process::ExitCode {
    let mode = match cmd.mode.as_str() {
        "login" => Mode::Login,
        "resume" => Mode::Resume,
        "resume-sasl2" => Mode::ResumeSasl2,
        "fast" => Mode::Fast,
        other => {
            print(format!("{{\"error\":\"unknown mode {other}\"}}"));
            return std::process::ExitCode::FAILURE;
        }
    };
    let n = cmd.clients.max(1);
    let users: Vec<String> = (0..n).map(user).collect();
    let clients = futures_lite::future::block_on(ex.run(async {
        let mut out = Vec::new();
        for (k, u) in users.iter().enumerate() {
            out.push(RefCell::new(set_up(target, u, k, mode).await?));
        }
        Ok::<_, io::Error>(out)
    }));
    let clients = match clients {
        Ok(c) => Rc::new(c),
        Err(e) => {
            print(format!("{{\"error\":{:?}}}", e.to_string()));
            return std::process::ExitCode::FAILURE;
        }
    };
    print("{\"phase\":\"ready\"}".to_string());
    let started = Instant::now();
    let failed = Rc::new(Cell::new(0usize));
    let first_error = Rc::new(RefCell::new(None::<String>));
    {
        let (failed, first_error, target, clients) =
            (Rc::clone(&failed), Rc::clone(&first_error), Rc::clone(target), Rc::clone(&clients));
        let users = Rc::new(users);
        // One worker per client, so a client never reconnects twice at once.
        futures_lite::future::block_on(ex.run(run_jobs(ex, n, n, move |k| {
            let (failed, first_error, target, clients, users) = (
                Rc::clone(&failed),
                Rc::clone(&first_error),
                Rc::clone(&target),
                Rc::clone(&clients),
                Rc::clone(&users),
            );
            let rounds = cmd.count / n + usize::from(k < cmd.count % n);
            async move {
                let mut client = clients[k].take();
                for _ in 0..rounds {
                    if let Err(e) = reconnect(&target, &users[k], k, mode, &mut client).await {
                        failed.set(failed.get() + 1);
                        first_error.borrow_mut().get_or_insert(e.to_string());
                    }
                }
                clients[k].replace(client);
            }
        })));
    }
    let seconds = started.elapsed().as_secs_f64();
    let ok = cmd.count - failed.get();
    print(format!(
        "{{\"reconnects\":{ok},\"failed\":{},\"mode\":{:?},\"seconds\":{seconds:.3},\"per_second\":{:.1},\
         \"error\":{:?}}}",
        failed.get(),
        cmd.mode,
        ok as f64 / seconds,
        first_error.borrow().clone().unwrap_or_default()
    ));
    std::process::ExitCode::SUCCESS
}
