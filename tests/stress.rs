//! A short stress test: 200 clients log in over STARTTLS + SCRAM and exchange
//! messages; nothing is lost, and memory stays within the pool's budget. Bounded
//! in count and time; a correctness test, not a benchmark (see benches/).

mod common;
use common::*;
use std::sync::{Arc, Barrier};

const CLIENTS: usize = 200;
const ACCOUNTS: usize = 20;

#[test]
fn two_hundred_clients_log_in_and_exchange_messages_without_loss() {
    let server = Arc::new(Server::start_with("max_sessions = 256\nmax_resources_per_account = 10"));
    for a in 0..ACCOUNTS {
        server.add_user(&format!("user{a}"), "pw");
    }
    let rss_before = server.rss_kib();
    let logged_in = Arc::new(Barrier::new(CLIENTS));
    let sent = Arc::new(Barrier::new(CLIENTS));
    let done = Arc::new(Barrier::new(CLIENTS + 1));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (server, logged_in, sent, done) = (server.clone(), logged_in.clone(), sent.clone(), done.clone());
            std::thread::spawn(move || {
                let mut c = server.login(&format!("user{}", i % ACCOUNTS), "pw", &format!("r{}", i / ACCOUNTS));
                logged_in.wait();
                // Each client writes to the next one's full JID.
                let next = (i + 1) % CLIENTS;
                let to = format!("user{}@localhost/r{}", next % ACCOUNTS, next / ACCOUNTS);
                for n in 0..5 {
                    c.send(&format!("<message to='{to}' id='{i}-{n}'><body>from {i} #{n}</body></message>"));
                }
                sent.wait();
                let prev = (i + CLIENTS - 1) % CLIENTS;
                for n in 0..5 {
                    let got = c.read_until("</message>", WAIT);
                    assert!(got.contains(&format!("<body>from {prev} #{n}</body>")), "client {i}, message {n}: {got}");
                }
                done.wait();
                c
            })
        })
        .collect();
    done.wait();
    let rss_loaded = server.rss_kib();
    // Each thread checked its own five messages; the sessions stay open until here.
    let _clients: Vec<Client> = threads.into_iter().map(|t| t.join().expect("client thread")).collect();
    // The pool's budget: generous for a debug build, far below "unbounded".
    let per_session = (rss_loaded.saturating_sub(rss_before)) / CLIENTS as u64;
    assert!(per_session < 96, "{per_session} KiB per session (before {rss_before} KiB, loaded {rss_loaded} KiB)");
    eprintln!(
        "RSS {rss_before} KiB idle, {rss_loaded} KiB with {CLIENTS} TLS sessions ({per_session} KiB each, debug build)"
    );
}
