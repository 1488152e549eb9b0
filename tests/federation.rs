//! Server-to-server federation on the wire: two wrenhub processes on loopback with
//! static routes, authenticated by certificates (SASL EXTERNAL, also over Direct
//! TLS) or by dialback; messages, subscriptions and presence both ways; SRV
//! resolution from a test DNS server; and the failure cases: an unreachable or
//! silent peer (bounces), a full queue, an untrusted certificate with dialback
//! off, a spoofed `from`, a forged dialback key.

mod common;
use common::*;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A data directory whose local CA exists before the server starts, so the peer
/// can be configured to trust it.
fn prepared_dir(domain: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pre.toml");
    std::fs::write(&config, format!("domain = '{domain}'\n")).unwrap();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_wrenhub"))
        .args(["cert", "show", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let ca = dir.path().join("data/tls/ca.pem");
    assert!(ca.exists());
    (dir, ca)
}

struct Side<'a> {
    domain: &'a str,
    s2s_port: u16,
    direct_port: u16,
    extra: String,
}

fn config(me: &Side<'_>, peer: &Side<'_>, direct: bool) -> String {
    let (port, direct_tls) = if direct { (peer.direct_port, "true") } else { (peer.s2s_port, "false") };
    format!(
        "domain = '{}'\nfederation = true\ns2s_listen = ['127.0.0.1:{}']\ns2s_direct_tls_listen = ['127.0.0.1:{}']\n\
         s2s_system_roots = false\ns2s_connect_timeout = 5\n{}\n\
         [[s2s_route]]\ndomain = '{}'\naddress = '127.0.0.1:{port}'\ndirect_tls = {direct_tls}\n",
        me.domain, me.s2s_port, me.direct_port, me.extra, peer.domain
    )
}

/// Two federated servers: a.test and b.test.
fn pair(trust_each_other: bool, direct: bool, extra_a: &str, extra_b: &str) -> (Server, Server) {
    let (dir_a, ca_a) = prepared_dir("a.test");
    let (dir_b, ca_b) = prepared_dir("b.test");
    let trust =
        |ca: &Path| if trust_each_other { format!("s2s_ca_file = '{}'\n", ca.display()) } else { String::new() };
    let a = Side { domain: "a.test", s2s_port: free_port(), direct_port: free_port(), extra: trust(&ca_b) + extra_a };
    let b = Side { domain: "b.test", s2s_port: free_port(), direct_port: free_port(), extra: trust(&ca_a) + extra_b };
    let server_a = Server::start_in(dir_a, &config(&a, &b, direct));
    let server_b = Server::start_in(dir_b, &config(&b, &a, direct));
    server_a.add_user("alice", "wonderland");
    server_b.add_user("bob", "builder");
    (server_a, server_b)
}

fn online(server: &Server, user: &str, password: &str) -> Client {
    let mut c = server.login(user, password, "res");
    c.send("<presence/>");
    c.read_until("<presence", WAIT);
    c
}

/// A chat message each way; each arrives with the sender's full JID.
fn messages_both_ways(a: &Server, b: &Server) -> (Client, Client) {
    let mut alice = online(a, "alice", "wonderland");
    let mut bob = online(b, "bob", "builder");
    alice.send("<message to='bob@b.test' type='chat' id='m1'><body>hello from a</body></message>");
    let got = bob.read_until("hello from a", WAIT);
    assert!(got.contains("from='alice@a.test/res'"), "{got}");
    bob.send("<message to='alice@a.test/res' type='chat' id='m2'><body>hello from b</body></message>");
    let got = alice.read_until("hello from b", WAIT);
    assert!(got.contains("from='bob@b.test/res'"), "{got}");
    (alice, bob)
}

#[test]
fn certificates_authenticate_with_sasl_external_both_ways() {
    let (a, b) = pair(true, false, "", "");
    messages_both_ways(&a, &b);
    a.wait_for_log("s2s link to b.test established (SASL EXTERNAL", WAIT);
    b.wait_for_log("s2s link to a.test established (SASL EXTERNAL", WAIT);
    b.wait_for_log("a.test authenticated by certificate (SASL EXTERNAL)", WAIT);
    assert!(!a.log().contains("authenticated by dialback"), "{}", a.log());
}

/// `AB:CD:…`, the SHA-256 of the certificate in a data dir (what `wrenhub cert show` prints).
fn fingerprint(dir: &tempfile::TempDir) -> String {
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(dir.path().join("data/tls/server.pem")).unwrap();
    let der = rustls::pki_types::CertificateDer::pem_slice_iter(&pem).next().unwrap().unwrap();
    let digest = ring::digest::digest(&ring::digest::SHA256, &der);
    digest.as_ref().iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

#[test]
fn pinned_fingerprints_authenticate_with_sasl_external() {
    let (dir_a, _) = prepared_dir("a.test");
    let (dir_b, _) = prepared_dir("b.test");
    let pin = |domain: &str, dir: &tempfile::TempDir| {
        format!("[[s2s_peer]]\ndomain = '{domain}'\nfingerprint = '{}'\n", fingerprint(dir))
    };
    let a = Side { domain: "a.test", s2s_port: free_port(), direct_port: free_port(), extra: pin("b.test", &dir_b) };
    let b = Side { domain: "b.test", s2s_port: free_port(), direct_port: free_port(), extra: pin("a.test", &dir_a) };
    let (config_a, config_b) = (config(&a, &b, false), config(&b, &a, false));
    let server_a = Server::start_in(dir_a, &config_a);
    let server_b = Server::start_in(dir_b, &config_b);
    server_a.add_user("alice", "wonderland");
    server_b.add_user("bob", "builder");
    messages_both_ways(&server_a, &server_b);
    server_a.wait_for_log("s2s link to b.test established (SASL EXTERNAL", WAIT);
    server_b.wait_for_log("s2s link to a.test established (SASL EXTERNAL", WAIT);
    assert!(server_a.log().contains("0 trusted root(s), 1 pinned peer(s)"), "{}", server_a.log());
}

/// a.test (with `extra_a`, its trust in the real b.test) and an impostor: a real
/// server for b.test with its own local CA and dialback on, so dialback alone
/// would let it pass. Returns both servers and alice and bob logged in.
fn a_and_an_impostor_for_b(extra_a: String) -> (Server, Server, Client, Client) {
    let (dir_a, _) = prepared_dir("a.test");
    let (dir_impostor, _) = prepared_dir("b.test");
    let a = Side { domain: "a.test", s2s_port: free_port(), direct_port: free_port(), extra: extra_a };
    let b = Side { domain: "b.test", s2s_port: free_port(), direct_port: free_port(), extra: String::new() };
    let server_a = Server::start_in(dir_a, &config(&a, &b, false));
    let impostor = Server::start_in(dir_impostor, &config(&b, &a, false));
    server_a.add_user("alice", "wonderland");
    impostor.add_user("bob", "builder");
    let bob = online(&impostor, "bob", "builder");
    let alice = online(&server_a, "alice", "wonderland");
    (server_a, impostor, alice, bob)
}

#[test]
fn an_outbound_link_to_a_pinned_domain_refuses_a_peer_with_another_certificate() {
    // S2: outbound links accepted any certificate, so whoever answered b.test's
    // address (ARP or DNS spoofing) got alice's traffic, pin or not.
    let (dir_b, _) = prepared_dir("b.test");
    let pin = format!("[[s2s_peer]]\ndomain = 'b.test'\nfingerprint = '{}'\n", fingerprint(&dir_b));
    let (server_a, _impostor, mut alice, mut bob) = a_and_an_impostor_for_b(pin);
    alice.send("<message to='bob@b.test' id='p1' type='chat'><body>for the real bob</body></message>");
    let got = alice.read_until("</message>", WAIT);
    assert!(
        got.contains("type='error'") && got.contains("id='p1'") && got.contains("remote-server-not-found"),
        "{got}"
    );
    server_a.wait_for_log("does not authenticate it", WAIT);
    // Nothing reached the impostor's bob: his ping comes back with no message before it.
    bob.send("<iq type='get' id='s'><ping xmlns='urn:xmpp:ping'/></iq>");
    assert!(!bob.read_until("id='s' type='result'", WAIT).contains("for the real bob"));
    // Inbound, the impostor cannot use dialback for the pinned domain either.
    let mut bob_to_alice = bob;
    bob_to_alice.send("<message to='alice@a.test' id='p2' type='chat'><body>from the impostor</body></message>");
    let got = bob_to_alice.read_until("</message>", WAIT);
    assert!(got.contains("id='p2'") && got.contains("type='error'"), "{got}");
    alice.send("<iq type='get' id='s2'><ping xmlns='urn:xmpp:ping'/></iq>");
    assert!(!alice.read_until("id='s2' type='result'", WAIT).contains("from the impostor"));
}

#[test]
fn direct_tls_links_authenticate_with_sasl_external() {
    let (a, b) = pair(true, true, "", "");
    messages_both_ways(&a, &b);
    a.wait_for_log("s2s link to b.test established (SASL EXTERNAL", WAIT);
    b.wait_for_log("s2s link to a.test established (SASL EXTERNAL", WAIT);
}

#[test]
fn dialback_authenticates_when_no_certificate_is_trusted() {
    let (a, b) = pair(false, false, "", "");
    messages_both_ways(&a, &b);
    a.wait_for_log("s2s link to b.test established (dialback", WAIT);
    b.wait_for_log("s2s link to a.test established (dialback", WAIT);
    a.wait_for_log("b.test authenticated by dialback", WAIT);
    b.wait_for_log("a.test authenticated by dialback", WAIT);
}

#[test]
fn subscriptions_presence_and_iq_work_across_servers() {
    let (a, b) = pair(false, false, "", "");
    let mut alice = online(&a, "alice", "wonderland");
    let mut bob = online(&b, "bob", "builder");
    alice.send("<iq type='get' id='r0'><query xmlns='jabber:iq:roster'/></iq>");
    alice.read_until("id='r0'", WAIT);
    bob.send("<iq type='get' id='r0'><query xmlns='jabber:iq:roster'/></iq>");
    bob.read_until("id='r0'", WAIT);
    // Alice asks; her roster shows the pending request; Bob gets it.
    alice.send("<presence to='bob@b.test' type='subscribe'/>");
    let push = alice.read_until("ask='subscribe'", WAIT);
    assert!(push.contains("jid='bob@b.test'"), "{push}");
    let req = bob.read_until("type='subscribe'", WAIT);
    assert!(req.contains("from='alice@a.test'"), "{req}");
    // Bob approves: his roster says from, hers says to, she sees his presence.
    bob.send("<presence to='alice@a.test' type='subscribed'/>");
    let push = bob.read_until("subscription='from'", WAIT);
    assert!(push.contains("jid='alice@a.test'"), "{push}");
    let got = alice.read_until("subscription='to'", WAIT);
    assert!(got.contains("jid='bob@b.test'"), "{got}");
    alice.read_until("from='bob@b.test/res'", WAIT);
    // Bob's presence changes reach Alice.
    bob.send("<presence><show>away</show></presence>");
    let got = alice.read_until("<show>away</show>", WAIT);
    assert!(got.contains("from='bob@b.test/res'"), "{got}");
    // A new session of Alice probes Bob's server and learns his presence.
    let mut alice2 = a.login("alice", "wonderland", "second");
    alice2.send("<presence/>");
    let got = alice2.read_until("<show>away</show>", WAIT);
    assert!(got.contains("from='bob@b.test/res'"), "{got}");
    // Server iq across domains: ping b.test, and disco#info of b.test.
    alice.send("<iq type='get' id='p1' to='b.test'><ping xmlns='urn:xmpp:ping'/></iq>");
    let got = alice.read_until("id='p1' type='result'", WAIT);
    assert!(got.contains("<iq from='b.test' to='alice@a.test/res' id='p1' type='result'"), "{got}");
    alice.send("<iq type='get' id='d1' to='b.test'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
    let got = alice.read_until("</iq>", WAIT);
    assert!(got.contains("urn:xmpp:ping"), "{got}");
    // A roster-only handler does not answer remote entities.
    alice.send("<iq type='get' id='x1' to='bob@b.test'><query xmlns='jabber:iq:roster'/></iq>");
    let got = alice.read_until("</iq>", WAIT);
    assert!(got.contains("id='x1' type='error'") && got.contains("service-unavailable"), "{got}");
    // Bob goes offline: Alice sees unavailable.
    drop(bob);
    alice.read_until("type='unavailable'", WAIT);
}

#[test]
fn a_message_to_an_offline_remote_user_is_stored_there() {
    let (a, b) = pair(false, false, "", "");
    let mut alice = online(&a, "alice", "wonderland");
    alice.send("<message to='bob@b.test' type='chat' id='o1'><body>while you were out</body></message>");
    // b.test answers a ping after it handled the message, on the same link: then
    // it is stored, and no error came back (it would have arrived first).
    alice.send("<iq type='get' id='after' to='b.test'><ping xmlns='urn:xmpp:ping'/></iq>");
    let answers = alice.read_until("id='after'", WAIT);
    assert!(!answers.contains("type='error'"), "{answers}");
    // Bob finds it at login.
    let mut bob = b.login("bob", "builder", "res");
    bob.send("<presence/>");
    let got = bob.read_until("</message>", WAIT);
    assert!(got.contains("from='alice@a.test/res'") && got.contains("urn:xmpp:delay"), "{got}");
}

#[test]
fn srv_records_from_dns_locate_the_peer() {
    let (dir_a, _) = prepared_dir("a.test");
    let (dir_b, _) = prepared_dir("b.test");
    let b_port = free_port();
    // A test DNS server answers _xmpp-server._tcp.b.test with 127.0.0.1:b_port.
    let dns = UdpSocket::bind("127.0.0.1:0").unwrap();
    let dns_port = dns.local_addr().unwrap().port();
    dns.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let responder = {
        let (stop, asked) = (stop.clone(), asked.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok((n, from)) = dns.recv_from(&mut buf) else { continue };
                let q = &buf[..n];
                let name = String::from_utf8_lossy(q).to_ascii_lowercase(); // the hub randomises the case (0x20)
                asked.lock().unwrap().push(name.clone());
                let records = if name.contains("xmpp-server") && name.contains("b") && !name.contains("xmpps") {
                    vec![wrenhub::s2s::dns::Srv { priority: 0, weight: 0, port: b_port, target: "127.0.0.1".into() }]
                } else {
                    vec![]
                };
                if let Some(answer) = wrenhub::s2s::dns::srv_answer(q, &records) {
                    let _ = dns.send_to(&answer, from);
                }
            }
        })
    };
    let a_port = free_port();
    let a = Server::start_in(
        dir_a,
        &format!(
            "domain = 'a.test'\nfederation = true\ns2s_listen = ['127.0.0.1:{a_port}']\ns2s_system_roots = false\n\
             s2s_dns_server = '127.0.0.1:{dns_port}'\ns2s_connect_timeout = 5\ns2s_private_targets = true\n"
        ),
    );
    // b.test reaches a.test by a static route (only one direction is under test).
    let b = Server::start_in(
        dir_b,
        &format!(
            "domain = 'b.test'\nfederation = true\ns2s_listen = ['127.0.0.1:{b_port}']\ns2s_system_roots = false\n\
             [[s2s_route]]\ndomain = 'a.test'\naddress = '127.0.0.1:{a_port}'\n"
        ),
    );
    a.add_user("alice", "wonderland");
    b.add_user("bob", "builder");
    messages_both_ways(&a, &b);
    a.wait_for_log(&format!("s2s link to b.test established (dialback, via 127.0.0.1:{b_port}, from a.test)"), WAIT);
    // S18: by default a DNS answer into loopback or the LAN is not followed.
    let strict = lonely(&format!("s2s_dns_server = '127.0.0.1:{dns_port}'\ns2s_connect_timeout = 5\n"));
    let mut carol = strict.login("alice", "wonderland", "c");
    carol.send("<message to='bob@b.test' id='dns1' type='chat'><body>probe</body></message>");
    let got = carol.read_until("</message>", WAIT);
    assert!(got.contains("id='dns1'") && got.contains("remote-server-not-found"), "{got}");
    strict.wait_for_log("DNS points at private address(es)", WAIT);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    responder.join().unwrap();
    assert!(asked.lock().unwrap().iter().any(|q| q.contains("xmpps-server")), "Direct TLS SRV was asked first");
}

/// A server that federates with nobody reachable.
fn lonely(extra: &str) -> Server {
    let server = Server::start_with(&format!(
        "domain = 'a.test'\nfederation = true\ns2s_listen = ['127.0.0.1:0']\ns2s_system_roots = false\n{extra}"
    ));
    server.add_user("alice", "wonderland");
    server
}

#[test]
fn an_unreachable_peer_bounces_with_remote_server_not_found() {
    let closed = free_port();
    let server = lonely(&format!(
        "s2s_connect_timeout = 5\n[[s2s_route]]\ndomain = 'gone.test'\naddress = '127.0.0.1:{closed}'\n"
    ));
    let mut alice = online(&server, "alice", "wonderland");
    let started = Instant::now();
    alice.send("<message to='x@gone.test' id='u1' type='chat'><body>anyone?</body></message>");
    let got = alice.read_until("</message>", WAIT);
    assert!(
        got.contains("type='error'") && got.contains("id='u1'") && got.contains("remote-server-not-found"),
        "{got}"
    );
    assert!(got.contains("from='x@gone.test'"), "{got}");
    assert!(started.elapsed() < Duration::from_secs(5), "a refused connection bounces at once");
}

#[test]
fn a_silent_peer_bounces_with_remote_server_timeout_and_a_full_queue_with_resource_constraint() {
    // A peer that accepts the connection and never says a word.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let holder = std::thread::spawn(move || {
        let conns: Vec<TcpStream> = silent.incoming().take(1).filter_map(Result::ok).collect();
        std::thread::sleep(Duration::from_secs(6));
        drop(conns);
    });
    let server = lonely(&format!(
        "s2s_connect_timeout = 2\ns2s_queue_size = 4096\n[[s2s_route]]\ndomain = 'mute.test'\naddress = '127.0.0.1:{port}'\n"
    ));
    let mut alice = online(&server, "alice", "wonderland");
    let body = "x".repeat(1000);
    for i in 0..6 {
        alice.send(&format!("<message to='y@mute.test' id='q{i}' type='chat'><body>{body}</body></message>"));
    }
    // The queue holds three; the rest bounce at once.
    let got = alice.read_until("resource-constraint", WAIT);
    assert!(got.contains("id='q3'") && !got.contains("remote-server-timeout"), "{got}");
    let started = Instant::now();
    let got = alice.read_until("remote-server-timeout", WAIT);
    assert!(got.contains("id='q0'"), "{got}");
    assert!(started.elapsed() < Duration::from_secs(5), "bounced within the timeout");
    // Every message comes back exactly once, with the condition that fits.
    alice.read_until("id='q2'", WAIT);
    alice.sync("after");
    let all = alice.received();
    for i in 0..6 {
        assert_eq!(all.matches(&format!("id='q{i}'")).count(), 1, "q{i} in {all}");
    }
    assert_eq!(all.matches("resource-constraint").count(), 3, "{all}");
    assert_eq!(all.matches("remote-server-timeout").count(), 3, "{all}");
    holder.join().unwrap();
}

#[test]
fn without_dialback_an_untrusted_peer_is_refused_and_the_message_bounces() {
    let (a, _b) = pair(false, false, "", "s2s_dialback = false\n");
    let mut alice = online(&a, "alice", "wonderland");
    alice.send("<message to='bob@b.test' id='n1' type='chat'><body>hi</body></message>");
    let got = alice.read_until("</message>", WAIT);
    assert!(got.contains("type='error'") && got.contains("remote-server-not-found"), "{got}");
    a.wait_for_log("s2s link to b.test failed", WAIT);
}

/// A raw peer server: STARTTLS with a client certificate, then SASL EXTERNAL.
fn raw_peer(server: &Server, from: &str, cert: &str, key: &str) -> Client {
    let mut c = Client::connect_port(server.s2s_port.expect("s2s listener"));
    let header = format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' \
         xmlns:db='jabber:server:dialback' from='{from}' to='a.test' version='1.0'>"
    );
    c.send(&header);
    let features = c.read_until("</stream:features>", WAIT);
    assert!(features.contains("<required/>"), "STARTTLS is required: {features}");
    c.send(STARTTLS);
    c.read_until("<proceed", WAIT);
    c.upgrade_tls_as_server(&server.ca_pem(), "a.test", Some((cert.as_bytes(), key.as_bytes())));
    c.send(&header);
    c.read_until("</stream:features>", WAIT);
    c
}

#[test]
fn inbound_streams_check_authentication_and_addresses() {
    let (cert, key, ca) = test_identity("peer.test");
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("peer-ca.pem");
    std::fs::write(&ca_path, &ca).unwrap();
    let server = lonely(&format!("s2s_ca_file = '{}'\n", ca_path.display()));
    let mut alice = online(&server, "alice", "wonderland");

    // A trusted certificate: EXTERNAL is offered and succeeds; stanzas flow.
    let mut peer = raw_peer(&server, "peer.test", &cert, &key);
    assert!(peer.received().contains("<mechanism>EXTERNAL</mechanism>"), "{}", peer.received());
    peer.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>cGVlci50ZXN0</auth>");
    peer.read_until("<success", WAIT);
    peer.send(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' \
         from='peer.test' to='a.test' version='1.0'>",
    );
    peer.read_until("</stream:features>", WAIT);
    peer.send("<message from='carol@peer.test/x' to='alice@a.test' type='chat'><body>via peer</body></message>");
    let got = alice.read_until("via peer", WAIT);
    assert!(got.contains("from='carol@peer.test/x'") && !got.contains("jabber:server"), "{got}");
    // R9: a stanza to an unserved subdomain gets a stanza error (on the link back),
    // and the stream with everything else on it goes on.
    peer.send("<presence from='carol@peer.test/x' to='room@conference.a.test/carol'/>");
    peer.send("<message from='carol@peer.test/x' to='alice@a.test' type='chat'><body>still here</body></message>");
    alice.read_until("still here", WAIT);
    assert!(!peer.received().contains("host-unknown"), "{}", peer.received());
    // A forged dialback key is not ours.
    peer.send("<db:verify xmlns:db='jabber:server:dialback' from='peer.test' to='a.test' id='abc'>00ff</db:verify>");
    let got = peer.read_until("/>", WAIT);
    assert!(got.contains("type='invalid'") && got.contains("id='abc'"), "{got}");
    // A stanza without 'from' is improper-addressing.
    peer.send("<message to='alice@a.test'><body>who?</body></message>");
    assert_stream_error(&peer.read_to_close(WAIT), "improper-addressing");

    // A spoofed 'from' domain, not authenticated on this stream: invalid-from.
    let mut spoof = raw_peer(&server, "peer.test", &cert, &key);
    spoof.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>");
    spoof.read_until("<success", WAIT);
    spoof.send(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' \
         from='peer.test' to='a.test' version='1.0'>",
    );
    spoof.read_until("</stream:features>", WAIT);
    spoof.send("<message from='mallory@evil.test' to='alice@a.test'><body>trust me</body></message>");
    assert_stream_error(&spoof.read_to_close(WAIT), "invalid-from");
    assert!(!alice.sync("s1").contains("trust me"), "something spoofed arrived");

    // A certificate for another name does not authenticate the claimed domain.
    let mut other = raw_peer(&server, "other.test", &cert, &key);
    assert!(!other.received().contains("EXTERNAL"), "{}", other.received());
    other.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>b3RoZXIudGVzdA==</auth>");
    other.read_until("<failure", WAIT);

    // Unknown 'to' in the header: host-unknown.
    let mut c = Client::connect_port(server.s2s_port.unwrap());
    c.send(
        "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' from='peer.test' \
         to='elsewhere.test' version='1.0'>",
    );
    assert_stream_error(&c.read_to_close(WAIT), "host-unknown");
    // Stanzas before TLS: policy-violation.
    let mut c = Client::connect_port(server.s2s_port.unwrap());
    c.send(
        "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' from='peer.test' \
         to='a.test' version='1.0'><message from='x@peer.test' to='alice@a.test'/>",
    );
    assert_stream_error(&c.read_to_close(WAIT), "policy-violation");
}

#[test]
fn federation_is_off_by_default() {
    let server = Server::start();
    assert!(server.s2s_port.is_none());
    server.add_user("alice", "pw");
    let mut alice = server.login("alice", "pw", "r");
    alice.send("<message to='x@elsewhere.example' id='f1'><body>hi</body></message>");
    let got = alice.read_until("</message>", WAIT);
    assert!(got.contains("remote-server-not-found") && got.contains("federation is not enabled"), "{got}");
}

/// A raw peer that claims `from` and presents no certificate (dialback only).
fn raw_dialback_peer(server: &Server, from: &str) -> (Client, String) {
    let mut c = Client::connect_port(server.s2s_port.expect("s2s listener"));
    let header = format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' \
         xmlns:db='jabber:server:dialback' from='{from}' to='{}' version='1.0'>",
        server.domain
    );
    c.send(&header);
    c.read_until("</stream:features>", WAIT);
    c.send(STARTTLS);
    c.read_until("<proceed", WAIT);
    c.upgrade_tls_as_server(&server.ca_pem(), &server.domain, None);
    c.send(&header);
    let features = c.read_until("</stream:features>", WAIT);
    assert!(features.contains("urn:xmpp:features:dialback") && !features.contains("EXTERNAL"), "{features}");
    let id = between(&features, " id='", "'").to_string();
    (c, id)
}

#[test]
fn a_forged_dialback_key_for_a_real_server_is_invalid_and_its_stanzas_refused() {
    let (a, _b) = pair(false, false, "", "");
    let mut alice = online(&a, "alice", "wonderland");
    // Mallory claims to be b.test; a.test asks b.test, which never issued the key.
    let (mut mallory, _) = raw_dialback_peer(&a, "b.test");
    mallory.send("<db:result from='b.test' to='a.test'>0123456789abcdef</db:result>");
    let got = mallory.read_until("/>", WAIT);
    assert!(got.contains("type='invalid'") && got.contains("to='b.test'"), "{got}");
    mallory.send("<message from='bob@b.test/x' to='alice@a.test'><body>I am bob</body></message>");
    assert_stream_error(&mallory.read_to_close(WAIT), "invalid-from");
    assert!(!alice.sync("s2").contains("I am bob"), "{}", alice.received());
}

#[test]
fn dialback_for_an_unreachable_authoritative_server_is_an_error() {
    let closed = free_port();
    let server = lonely(&format!("[[s2s_route]]\ndomain = 'ghost.test'\naddress = '127.0.0.1:{closed}'\n"));
    let (mut peer, _) = raw_dialback_peer(&server, "ghost.test");
    peer.send("<db:result from='ghost.test' to='a.test'>abcdef</db:result>");
    let got = peer.read_until("</db:result>", WAIT);
    assert!(got.contains("type='error'") && got.contains("remote-server-not-found"), "{got}");
    // Addressing errors of dialback itself.
    peer.send("<db:result from='ghost.test' to='nobody.test'>abcdef</db:result>");
    assert_stream_error(&peer.read_to_close(WAIT), "host-unknown");
}

#[test]
fn idle_links_close_and_the_next_stanza_opens_a_new_one() {
    // a.test closes its idle outbound link; b.test waits longer on its inbound side.
    let (a, b) = pair(true, false, "s2s_idle_timeout = 1\n", "s2s_idle_timeout = 60\n");
    let (mut alice, mut bob) = messages_both_ways(&a, &b);
    a.wait_for_log("s2s link to b.test closed after s2s_idle_timeout", WAIT);
    alice.send("<message to='bob@b.test' type='chat' id='m3'><body>again</body></message>");
    let got = bob.read_until("again", WAIT);
    assert!(got.contains("from='alice@a.test/res'"), "{got}");
    // A second link carried it (the log is read by another thread: waited for).
    a.wait_for_log_nth("s2s link to b.test established", 2, WAIT);
}

#[test]
fn an_idle_inbound_stream_ends_with_connection_timeout() {
    // b.test's inbound side times out first: connection-timeout, and a.test's link
    // ends with it; the next message opens a new link.
    let (a, b) = pair(true, false, "s2s_idle_timeout = 60\n", "s2s_idle_timeout = 1\n");
    let (mut alice, mut bob) = messages_both_ways(&a, &b);
    a.wait_for_log("s2s link to b.test closed: the peer sent the stream error connection-timeout", WAIT);
    alice.send("<message to='bob@b.test' type='chat' id='m4'><body>once more</body></message>");
    let got = bob.read_until("once more", WAIT);
    assert!(got.contains("from='alice@a.test/res'"), "{got}");
}

#[test]
fn a_domain_within_a_configured_cas_name_constraints_needs_that_cas_certificate() {
    // S2: a.test trusts b.test's LAN CA (constrained to b.test); an impostor for
    // b.test with a CA of its own is refused outbound, dialback or not.
    let (_dir_b, ca_b) = prepared_dir("b.test");
    let (server_a, _impostor, mut alice, mut bob) =
        a_and_an_impostor_for_b(format!("s2s_ca_file = '{}'\n", ca_b.display()));
    alice.send("<message to='bob@b.test' id='c1' type='chat'><body>for the real bob</body></message>");
    let got = alice.read_until("</message>", WAIT);
    assert!(got.contains("id='c1'") && got.contains("remote-server-not-found"), "{got}");
    server_a.wait_for_log("does not authenticate it", WAIT);
    bob.send("<iq type='get' id='s'><ping xmlns='urn:xmpp:ping'/></iq>");
    assert!(!bob.read_until("id='s' type='result'", WAIT).contains("for the real bob"));
}

#[test]
fn directed_presence_to_an_unreachable_peer_gets_an_error_presence_when_the_link_fails() {
    // A group-chat join on a server that cannot be reached: the spinner resolves.
    let closed = free_port();
    let server = lonely(&format!(
        "s2s_connect_timeout = 5\n[[s2s_route]]\ndomain = 'gone.test'\naddress = '127.0.0.1:{closed}'\n"
    ));
    let mut alice = online(&server, "alice", "wonderland");
    alice.send("<presence to='room@gone.test/alice' id='j1'><x xmlns='http://jabber.org/protocol/muc'/></presence>");
    let got = alice.read_until("</presence>", WAIT);
    assert!(
        got.contains("type='error'") && got.contains("id='j1'") && got.contains("remote-server-not-found"),
        "{got}"
    );
    assert!(got.contains("from='room@gone.test/alice'"), "{got}");
}

/// Publishes `payload` as item `id` of `node` (with publish-options `options`,
/// fields) and waits for the answer.
fn pep_publish(c: &mut Client, id: &str, node: &str, payload: &str, options: &str) -> String {
    let options = publish_options(options);
    c.send(&format!(
        "<iq type='set' id='{id}'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='{node}'>\
         <item id='current'>{payload}</item></publish>{options}</pubsub></iq>"
    ));
    let mut answer = c.read_until(&format!("id='{id}' type='"), WAIT);
    answer.push_str(&c.read_until("'", WAIT));
    answer
}

/// Alice and Bob subscribe to each other across the servers.
fn mutual_subscription(alice: &mut Client, bob: &mut Client) {
    for c in [&mut *alice, &mut *bob] {
        c.send("<iq type='get' id='r0'><query xmlns='jabber:iq:roster'/></iq>");
        c.read_until("id='r0'", WAIT);
    }
    alice.send("<presence to='bob@b.test' type='subscribe'/>");
    bob.read_until("type='subscribe'", WAIT);
    bob.send("<presence to='alice@a.test' type='subscribed'/>");
    alice.read_until("subscription='to'", WAIT);
    bob.send("<presence to='alice@a.test' type='subscribe'/>");
    alice.read_until("type='subscribe'", WAIT);
    alice.send("<presence to='bob@b.test' type='subscribed'/>");
    bob.read_until("subscription='both'", WAIT);
    alice.sync("a-subscribed");
    bob.sync("b-subscribed");
}

/// XEP-0163 §4.3 across servers: a.test learns Bob's resources from his presence,
/// asks his client for its caps over federation and believes the answer only if it
/// verifies; then Alice's events and last items reach Bob's resources that want
/// them, and anyone on b.test reads her `open` node (an OMEMO bundle).
#[test]
fn pep_events_and_last_items_reach_remote_contacts_and_open_nodes_are_read_across_servers() {
    const TUNE: &str = "http://jabber.org/protocol/tune";
    let (a, b) = pair(true, false, "", "");
    b.add_user("carol", "kestrel");
    let mut alice = online(&a, "alice", "wonderland");
    let mut bob = online(&b, "bob", "builder");
    mutual_subscription(&mut alice, &mut bob);
    let (ver, answer) = caps_of(&[TUNE]);
    bob.send(&caps_presence(&ver));
    // His own server asks first (it routes his presence after), then Alice's.
    answer_caps_query(&mut bob, "b.test", &ver, &answer);
    answer_caps_query(&mut bob, "a.test", &ver, &answer);
    bob.sync("b-caps");
    let done = pep_publish(&mut alice, "t1", TUNE, &format!("<tune xmlns='{TUNE}'><artist>Yes</artist></tune>"), "");
    assert!(done.contains("type='result'"), "{done}");
    let event = bob.read_until("</message>", WAIT);
    assert!(
        event.contains("from='alice@a.test' to='bob@b.test/res' type='headline'")
            && event.contains("<artist>Yes</artist>"),
        "{event}"
    );
    // A second resource with the same caps gets the last item at once: both
    // servers know the string now.
    let mut second = b.login("bob", "builder", "second");
    second.send(&caps_presence(&ver));
    let got = second.read_until("</message>", WAIT);
    assert!(got.contains("from='alice@a.test' to='bob@b.test/second' type='headline'") && got.contains("Yes"), "{got}");
    let quiet = second.sync("s0");
    assert!(!quiet.contains("disco#info"), "{quiet}");
    // An open node is read by a stranger on the other server; the presence one not.
    let bundle = "<bundle xmlns='urn:xmpp:omemo:2'><ik>aWs=</ik></bundle>";
    let open = "<field var='pubsub#access_model'><value>open</value></field>";
    let done = pep_publish(&mut alice, "o1", "urn:xmpp:omemo:2:bundles", bundle, open);
    assert!(done.contains("type='result'"), "{done}");
    let mut carol = online(&b, "carol", "kestrel");
    carol.send(
        "<iq type='get' id='c1' to='alice@a.test'><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
         <items node='urn:xmpp:omemo:2:bundles'/></pubsub></iq>",
    );
    let got = carol.read_until("</iq>", WAIT);
    assert!(got.contains("id='c1' type='result'") && got.contains("<ik>aWs=</ik>"), "{got}");
    carol.send(&format!(
        "<iq type='get' id='c2' to='alice@a.test'><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
         <items node='{TUNE}'/></pubsub></iq>"
    ));
    let got = carol.read_until("</iq>", WAIT);
    assert!(got.contains("id='c2' type='error'") && got.contains("presence-subscription-required"), "{got}");
    // Gone unavailable, Bob's second resource is forgotten; the first still hears.
    second.send("<presence type='unavailable'/>");
    second.read_until("type='unavailable'", WAIT);
    pep_publish(&mut alice, "t2", TUNE, &format!("<tune xmlns='{TUNE}'><artist>Rush</artist></tune>"), "");
    let event = bob.read_until("Rush", WAIT);
    assert!(event.contains("to='bob@b.test/res'"), "{event}");
}
