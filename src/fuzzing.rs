//! Entry points shared by the cargo-fuzz targets (`fuzz/`) and their regression
//! corpus, which `cargo test` runs on stable (`tests/fuzz_corpus.rs`).
//!
//! Each entry point takes arbitrary bytes and panics only on a bug.

use crate::xml::framer::{Event, Framer, Limits};
use crate::xml::writer::write_element;
use crate::xml::XmlErrorKind;

pub use crate::jid::fuzz_roundtrip as jid_roundtrip;

/// Entry point for the `dns` target: an SRV answer from an untrusted DNS server.
/// The first two bytes are the query id the answer must match; the whole input is
/// the datagram. Asserts no panic, and that whatever parses re-encodes and parses
/// back to the same records (names are at most 255 bytes of at most 63-byte labels).
pub fn dns_srv(data: &[u8]) {
    use crate::s2s::dns::{parse_srv, query, question_name, srv_answer};
    let id = match data {
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => 0,
    };
    // Whatever question the datagram carries is taken as the one asked, so the
    // fuzzer reaches the answer records.
    let asked = question_name(data).unwrap_or_default();
    let Ok(records) = parse_srv(data, id, &asked) else { return };
    for r in &records {
        assert!(r.target.len() <= 255, "target too long: {}", r.target.len());
    }
    // Round trip through our own encoder, where the names are representable.
    let representable =
        records.iter().all(|r| !r.target.is_empty() && r.target.split('.').all(|l| !l.is_empty() && l.len() <= 63));
    if representable && !records.is_empty() && records.len() <= 16 {
        let q = query("_xmpp-server._tcp.example.net", id).expect("a valid name makes a query");
        if let Some(answer) = srv_answer(&q, &records) {
            let parsed = parse_srv(&answer, id, "_xmpp-server._tcp.example.net");
            assert_eq!(parsed.as_deref(), Ok(&records[..]), "re-encoded answer parses back");
        }
    }
}

/// The default namespace elements are re-emitted into.
const CONTENT_NS: &str = "jabber:client";

/// The stream header a re-emitted element is parsed back under.
const CLIENT_HEADER: &[u8] = b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

/// Limits for parsing a re-emitted element back. Re-emission escapes afresh and
/// may add namespace declarations (`xmlns=''`, one `xmlns:aN` per namespaced
/// attribute), so these are roomier than anything [`framer_chunked`] picks.
const ROOMY: Limits = Limits { max_stanza_size: 1 << 20, max_depth: 64, max_attributes: 64, max_namespaces: 1024 };

/// One framer event, described so that two runs can be compared.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// The header's `{namespace}name` and attributes.
    Header(String),
    /// The element as [`write_element`] re-emits it.
    Element(String),
    End,
}

/// What a run yields: the events, then the kind of the error that ended it, if any.
type Outcome = (Vec<Seen>, Option<XmlErrorKind>);

/// Entry point for the framer target and its regression corpus.
///
/// The first three bytes choose the chunk size (1..=64) and the limits
/// (`max_stanza_size` 4096..=7168, the config minimum and up; depth 2..=16;
/// attributes and namespaces 1..=8); the rest is the stream. Asserts that:
/// - the framer never panics, and takes input whenever it asks for more;
/// - the outcome (events and error kind) is the same whether the stream arrives
///   in one piece (as much as each `feed` takes) or in chunks;
/// - every element it yields, re-emitted, frames back to exactly one element that
///   re-emits to the same bytes (re-emission is well-formed and a fixed point).
pub fn framer_chunked(data: &[u8]) {
    let [a, b, c, input @ ..] = data else {
        return;
    };
    let chunk = usize::from(a & 63) + 1;
    let limits = Limits {
        max_stanza_size: 4096 + usize::from(a >> 6) * 1024,
        max_depth: 2 + usize::from(b & 15) % 15,
        max_attributes: 1 + usize::from(b >> 5),
        max_namespaces: 1 + usize::from(c & 7),
    };
    let whole = run(input, usize::MAX, limits);
    let chunked = run(input, chunk, limits);
    assert_eq!(chunked, whole, "chunks of {chunk} bytes vs one piece, {limits:?}");
    for seen in &whole.0 {
        let Seen::Element(xml) = seen else { continue };
        let mut stream = CLIENT_HEADER.to_vec();
        stream.extend_from_slice(xml.as_bytes());
        let (events, error) = run(&stream, usize::MAX, ROOMY);
        assert_eq!(error, None, "re-emitted element does not frame: {xml}");
        assert!(
            matches!(&events[..], [Seen::Header(_), Seen::Element(again)] if again == xml),
            "re-emission is not a fixed point: {xml}\n framed back as {events:?}"
        );
    }
}

/// Feeds `input` `chunk` bytes at a time, trimming between feeds as an idle
/// connection does, until the input is used up or the framer fails.
fn run(input: &[u8], chunk: usize, limits: Limits) -> Outcome {
    let mut framer = Framer::new(limits);
    let mut seen = Vec::new();
    let mut rest = input;
    loop {
        loop {
            match framer.next_event() {
                Ok(Some(Event::Header(h))) => {
                    let mut text = format!("{{{}}}{}", h.ns(), h.name());
                    for a in h.attrs() {
                        text.push_str(&format!(" {{{}}}{}={}", a.ns, a.name, a.value()));
                    }
                    seen.push(Seen::Header(text));
                }
                Ok(Some(Event::Element(e))) => {
                    let mut out = Vec::new();
                    write_element(&mut out, &e, CONTENT_NS, None, &[]);
                    seen.push(Seen::Element(String::from_utf8_lossy(&out).into_owned()));
                }
                Ok(Some(Event::StreamEnd)) => seen.push(Seen::End),
                Ok(None) => break,
                Err(e) => return (seen, Some(e.kind)),
            }
        }
        if rest.is_empty() {
            return (seen, None);
        }
        let n = framer.feed(&rest[..chunk.min(rest.len())]);
        assert!(n > 0, "the framer refused input although it asked for more");
        rest = &rest[n..];
        framer.trim();
    }
}

/// The server a stream target runs against: an in-memory store with two accounts
/// (`juliet`/`balcony`, `romeo`/`montague`, romeo bound as `romeo@localhost/phone`
/// and subscribed both ways with `romeo@remote.example`), group chat and the
/// directory on, every bound small. `f` gets the hub and romeo's session; None
/// only if the world cannot be built (a bug: the entry points panic).
fn with_world<R>(f: impl FnOnce(crate::hub::Hub<'_>, &std::rc::Rc<crate::sessions::Session>) -> R) -> Option<R> {
    use crate::components::ComponentRegistry;
    use crate::config::ResourceConflict;
    use crate::sessions::Registry;
    use crate::store::{Account, Store};

    let store = Store::in_memory().ok()?;
    for (user, password) in [("juliet", "balcony"), ("romeo", "montague")] {
        let jid = format!("{user}@localhost").parse().ok()?;
        // Few PBKDF2 iterations: a fuzz run should try many inputs a second.
        let scram = crate::sasl::scram::ScramRecord::derive(password, b"fuzz-salt".to_vec(), 16);
        store.put_account(&jid, &Account { scram, disabled: false }).ok()?;
    }
    let (romeo_bare, remote): (crate::jid::BareJid, crate::jid::BareJid) =
        ("romeo@localhost".parse().ok()?, "romeo@remote.example".parse().ok()?);
    let mut contact = crate::store::roster::RosterItem::new(remote);
    (contact.pending_in, contact.ask) = (true, true);
    let contact = contact.grant_from()?.grant_to()?;
    store.put_roster_items(vec![(romeo_bare, contact)]).ok()?;
    store.set_max_roster_items(8);
    let registry = Registry::new(4, ResourceConflict::Takeover, 16 * 1024);
    let romeo = registry.bind("romeo@localhost/phone".parse().ok()?).ok()?;
    romeo.priority.set(Some(0));
    let components = ComponentRegistry::new(ResourceConflict::Refuse, 16 * 1024);
    let domain = crate::jid::Domain::parse("localhost").ok()?;
    let im = crate::handlers::ImLimits {
        max_roster_items: 8,
        offline: crate::store::offline::OfflineQuota {
            per_account: 4,
            total: 8,
            bytes_per_account: 8192,
            bytes_total: 16384,
        },
        offline_batch_bytes: 2048,
        max_private_items: 4,
        pep: crate::services::pep::PepLimits { max_nodes: 3, max_items: 3, max_item_bytes: 1024, max_bytes: 4096 },
    };
    let muc = crate::services::muc::Muc::new(crate::config::MucConfig {
        domain: crate::jid::Domain::parse("conference.localhost").ok()?,
        creation: crate::config::RoomCreation::Local,
        admins: std::sync::Arc::from(Vec::new()),
        max_rooms: 2,
        max_rooms_per_user: 2,
        max_occupants: 3,
        history: 2,
        archive: true,
    });
    let directory = crate::services::directory::Directory::new(crate::config::DirectoryConfig {
        domain: crate::jid::Domain::parse("directory.localhost").ok()?,
        remote: false,
        max_results: 3,
    });
    let s2s = crate::s2s::S2s::new(domain.clone(), 2, 16 * 1024, b"fuzz".to_vec(), crate::tls::peer::PeerTrust::none());
    let pep = crate::services::pep::Pep::new(2, 2);
    let mam = crate::services::mam::Mam::new(
        None,
        crate::services::mam::MamLimits { page_default: 2, page_max: 3 },
        Default::default(),
    );
    let upload = crate::services::upload::Upload::new(
        crate::services::upload::UploadConfig {
            domain: format!("upload.{domain}").parse().ok()?,
            max_file_size: 1000,
            quota_per_account: 10_000,
            quota_total: 20_000,
            keep_secs: 60,
            slot_secs: 60,
        },
        b"fuzz",
        format!("https://{domain}:5443"),
        crate::store::uploads::UploadDir::in_data_dir(std::path::Path::new("/nonexistent")),
        &[],
    );
    let external = crate::services::extdisco::ExternalServices {
        stun: vec![("stun.fuzz".into(), 3478)],
        turn: vec![("turn.fuzz".into(), 3478)],
        turn_secret: Some("fuzz".into()),
        credential_secs: 60,
    };
    let hub = crate::hub::Hub {
        domain: &domain,
        store: &store,
        registry: &registry,
        limits: im,
        components: &components,
        configured_components: &[],
        s2s: Some(&s2s),
        muc: Some(&muc),
        directory: Some(&directory),
        pep: &pep,
        mam: Some(&mam),
        upload: Some(&upload),
        proxy65: None,
        external: &external,
    };
    Some(f(hub, &romeo))
}

/// Entry point for the `s2s` target: the bytes another server sends on an inbound
/// stream (after TLS), through the framer, the stream state machine (dialback,
/// SASL EXTERNAL, which no certificate passes here) and the router, into the
/// world of [`with_world`]. A dialback key `valid` is taken as the authoritative
/// server's yes, so the fuzzer reaches routing as `remote.example` (presence with
/// caps for PEP, iq answers, pubsub reads). Asserts no panic and that a closed
/// stream stays closed.
pub fn s2s_stream(data: &[u8]) {
    with_world(|hub, romeo| s2s_stream_in(hub, romeo, data)).expect("the fuzz world is built");
}

fn s2s_stream_in(hub: crate::hub::Hub<'_>, romeo: &std::rc::Rc<crate::sessions::Session>, data: &[u8]) {
    use crate::s2s::Verdict;
    use crate::stream::s2s_in::{Env, S2sInStream, Step};
    use crate::stream::Input;

    let Some(s2s) = hub.s2s else { return };
    let env = Env { s2s, dialback: true, peer_chain: None, hub };
    let mut stream = S2sInStream::new(true);
    let mut out = Vec::new();
    let closed = drive_stream(data, |input| {
        let step = match input {
            Ok(event) => stream.handle(Input::Xml(event), &env, &mut out),
            Err(e) => stream.handle(Input::XmlError(e), &env, &mut out),
        };
        let step = match step {
            Step::Verify { remote, key, .. } => {
                let verdict = if key == "valid" { Verdict::Valid } else { Verdict::Invalid };
                stream.dialback_answer(&remote, verdict, &mut out)
            }
            other => other,
        };
        let flow = match step {
            Step::Continue | Step::Verify { .. } => Flow::Go,
            Step::Restart => Flow::Restart,
            Step::StartTls => {
                stream.set_secure();
                Flow::StartTls
            }
            Step::Close => Flow::Close,
        };
        after_step(hub, romeo, &mut out);
        flow
    });
    if closed {
        let step = stream.handle(Input::Shutdown, &env, &mut out);
        assert!(matches!(step, Step::Close), "input after the close reopened the stream");
    }
}

/// What a stream's step asks of the framer that feeds it.
enum Flow {
    Go,
    Restart,
    StartTls,
    Close,
}

/// Feeds `data` to a framer in chunks of at most 512 bytes, each event (or XML
/// error) to `step`; returns whether the stream closed.
fn drive_stream(data: &[u8], mut step: impl FnMut(Result<Event<'_>, crate::xml::XmlError>) -> Flow) -> bool {
    let limits = Limits { max_stanza_size: 8192, max_depth: 16, max_attributes: 16, max_namespaces: 16 };
    let mut framer = Framer::new(limits);
    let mut rest = data;
    while !rest.is_empty() {
        let n = framer.feed(&rest[..rest.len().min(512)]);
        rest = &rest[n..];
        loop {
            let flow = match framer.next_event() {
                Ok(Some(event)) => step(Ok(event)),
                Ok(None) => break,
                Err(e) => step(Err(e)),
            };
            match flow {
                Flow::Go => {}
                Flow::Restart => framer.restart(),
                Flow::StartTls => {
                    framer.discard_buffered();
                    framer.restart();
                }
                Flow::Close => return true,
            }
        }
        if n == 0 {
            break;
        }
    }
    false
}

/// After each step: the store writer's batch is committed at once (no writer
/// task here), and romeo's queue is read as a client would (it cannot grow past
/// its limit); what the stream wrote is dropped.
fn after_step(hub: crate::hub::Hub<'_>, romeo: &std::rc::Rc<crate::sessions::Session>, out: &mut Vec<u8>) {
    let _ = hub.store.commit_queue();
    let _ = hub.store.take_fresh_tickets();
    let _ = romeo.take_close_or_drain(&mut Vec::new());
    out.clear();
}

/// Entry point for the `c2s` target: the bytes a client sends after TLS, through
/// the framer, the client stream state machine (SASL, bind) and the router, into
/// the in-memory world of [`with_world`]. No sockets, no disk. Asserts that no
/// input panics and that once the stream is closed it stays closed.
pub fn c2s_stream(data: &[u8]) {
    with_world(|hub, romeo| c2s_stream_in(hub, romeo, data)).expect("the fuzz world is built");
}

fn c2s_stream_in(hub: crate::hub::Hub<'_>, romeo: &std::rc::Rc<crate::sessions::Session>, data: &[u8]) {
    use crate::auth_limiter::AuthLimiter;
    use crate::stream::c2s::{C2sStream, Env, Input, Policy, Step};
    use std::rc::Rc;

    let limiter = AuthLimiter::new(1000);
    let policy = Policy {
        domain: Rc::new(hub.domain.clone()),
        require_encryption: true,
        sasl_plain: true,
        max_auth_attempts: 3,
        sm_resume_timeout: 60,
        fast_token_lifetime: 3600,
        fast_clients_per_account: 2,
        im: hub.limits,
        caps_ver: Rc::from("fuzz"),
    };
    let bindings = Default::default();
    let env = Env {
        hub,
        limiter: &limiter,
        secret: b"fuzz-secret",
        bindings: &bindings,
        peer: std::net::Ipv4Addr::LOCALHOST.into(),
    };
    let mut stream = C2sStream::new(policy, true);
    let mut out = Vec::new();
    let closed = drive_stream(data, |input| {
        let step = match input {
            Ok(event) => stream.handle(Input::Xml(event), &env, &mut out),
            Err(e) => stream.handle(Input::XmlError(e), &env, &mut out),
        };
        let step = match step {
            Step::Verify(check) => stream.plain_verified(check.run(), &env, &mut out),
            other => other,
        };
        let flow = match step {
            Step::Continue | Step::Verify(_) => Flow::Go,
            Step::Restart => Flow::Restart,
            Step::StartTls => {
                stream.set_secure();
                Flow::StartTls
            }
            Step::Close => Flow::Close,
        };
        // What the connection would write: stream management counts it.
        if let Some(session) = stream.session() {
            let _ = session.sm_sending(&out);
        }
        after_step(hub, romeo, &mut out);
        flow
    });
    if closed {
        // A closed stream stays closed: more input changes nothing.
        let step = stream.handle(Input::Shutdown, &env, &mut out);
        assert!(matches!(step, Step::Close), "input after the close reopened the stream");
    }
}

/// Entry point for the `http` target: the bytes an HTTP client sends first (a
/// request head, maybe a body). Asserts no panic; that a head parsed from a
/// prefix of the input parses alike from the whole (the listener parses as bytes
/// arrive); that a byte range always lies within the file; that a decoded path
/// encodes back to a path that decodes the same; and that an upload URL's token,
/// whatever it holds, is refused without a panic.
pub fn http_request(data: &[u8]) {
    use crate::http::range::{parse as parse_range, Range};
    use crate::http::request::{parse_head, Limits};
    let limits = Limits { max_head_bytes: 2048, max_headers: 16 };
    let whole = parse_head(data, &limits);
    for cut in [1, 7, data.len() / 2] {
        if cut >= data.len() {
            continue;
        }
        if let Ok(Some((_, n))) = parse_head(&data[..cut], &limits) {
            match &whole {
                Ok(Some((_, m))) => assert_eq!(n, *m, "a head's end does not depend on what follows"),
                other => {
                    panic!("a prefix parsed to {n} bytes but the whole to {:?}", other.as_ref().map(|o| o.is_some()))
                }
            }
        }
    }
    let Ok(Some((request, _))) = whole else { return };
    for len in [0u64, 1, 10, 1 << 20] {
        if let Range::Part { start, end } = parse_range(request.range.as_deref(), len) {
            assert!(start <= end && end < len, "range {start}-{end} of {len}");
        }
    }
    if let Some(decoded) = crate::http::path::decode(&request.path) {
        for segment in decoded.split('/') {
            let encoded = crate::http::path::encode_segment(segment);
            assert_eq!(crate::http::path::decode(&encoded).as_deref(), Some(segment));
        }
    }
    let token = crate::http::path::query_value(&request.query, "t").unwrap_or(&request.query);
    let upload = crate::services::upload::Upload::new(
        crate::services::upload::UploadConfig {
            domain: crate::jid::Domain::parse("upload.fuzz").expect("a valid domain"),
            max_file_size: 10,
            quota_per_account: 10,
            quota_total: 10,
            keep_secs: 0,
            slot_secs: 1,
        },
        b"fuzz",
        "https://fuzz".into(),
        crate::store::uploads::UploadDir::in_data_dir(std::path::Path::new("/nonexistent")),
        &[],
    );
    assert!(upload.verify("aaaaaaaaaaaaaaaaaaaaaa", "f", token, 0).is_err(), "nothing unsigned is granted");
}

/// Entry point for the `websocket` target: the frames a browser sends after the
/// upgrade (RFC 6455, RFC 7395). Asserts no panic; that decoding in pieces gives
/// the same stream bytes as at once; and that our own output, whatever it holds,
/// is framed without a panic.
pub fn websocket_frames(data: &[u8]) {
    use crate::net::websocket::WsFraming;
    let whole = WsFraming::new(1024, data).decode_all();
    for piece in [1, 5, 64] {
        let mut ws = WsFraming::new(1024, &[]);
        let (mut bytes, mut ended) = (Vec::new(), false);
        for chunk in data.chunks(piece) {
            ws.push(chunk);
            let (more, end) = ws.decode_all();
            bytes.extend(more);
            ended |= end;
            if ended {
                break;
            }
        }
        assert_eq!((bytes, ended), whole, "decoded alike in pieces of {piece}");
    }
    let mut frames = Vec::new();
    WsFraming::new(16, &[]).frame_output(data, &mut frames);
}
