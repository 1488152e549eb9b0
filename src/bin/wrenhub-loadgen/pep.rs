//! PEP (XEP-0163) as clients use it.
//!
//! `pep-store`: K accounts each publish what a modern client keeps in PEP: an
//! avatar (XEP-0084 data and metadata), an OMEMO device list and bundle (XEP-0384,
//! `open`, with 100 pre-keys as Conversations publishes them) and B group-chat
//! bookmarks (XEP-0402). Prints `{"phase":"logged_in"}`, waits for a line on
//! stdin, publishes, prints `{"phase":"published",…}`, waits for a line.
//!
//! `pep-fanout`: account 0 publishes N items to a node that C contacts (accounts
//! 1..=C, mutually subscribed, each with its own XEP-0115 caps naming the node's
//! `+notify`, answered to whoever asks) receive. After a warm-up item reached
//! every contact it prints `{"phase":"ready"}`, waits for a line, publishes with
//! W in flight, and prints the notifications counted when every contact has all N.

use super::{b64, login_all, other, print, wait_for_stdin, Conn, Ev, Target};
use argh::FromArgs;
use std::cell::Cell;
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
const FANOUT_NODE: &str = "urn:wrenhub:bench:fanout";
/// Every wait for the server's answers (a phase fails after it).
const PHASE_LIMIT: Duration = Duration::from_secs(60);

#[derive(FromArgs)]
/// K accounts publish an avatar, OMEMO keys and B bookmarks
#[argh(subcommand, name = "pep-store")]
pub struct PepStoreCmd {
    /// accounts that publish
    #[argh(option, default = "50")]
    accounts: usize,
    /// bookmarks per account
    #[argh(option, default = "20")]
    bookmarks: usize,
    /// bytes of the avatar image
    #[argh(option, default = "16384")]
    avatar_bytes: usize,
}

#[derive(FromArgs)]
/// one account publishes N items to C contacts that want them
#[argh(subcommand, name = "pep-fanout")]
pub struct PepFanoutCmd {
    /// contacts (accounts 1..=C)
    #[argh(option, default = "100")]
    contacts: usize,
    /// items published
    #[argh(option, default = "200")]
    publishes: usize,
    /// publishes in flight
    #[argh(option, default = "4")]
    window: usize,
}

fn fail(e: impl std::fmt::Display) -> std::process::ExitCode {
    print(format!("{{\"error\":{:?}}}", e.to_string()));
    std::process::ExitCode::FAILURE
}

/// Bytes that look random enough to be an image (no compression helps).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn sha1_hex(data: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, data);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn publish_options(fields: &[(&str, &str)]) -> String {
    let mut x = String::from(
        "<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>\
         <value>http://jabber.org/protocol/pubsub#publish-options</value></field>",
    );
    for (var, value) in fields {
        x.push_str(&format!("<field var='{var}'><value>{value}</value></field>"));
    }
    x.push_str("</x></publish-options>");
    x
}

fn publish(id: &str, node: &str, item: &str, payload: &str, options: &str) -> String {
    format!(
        "<iq type='set' id='{id}'><pubsub xmlns='{PUBSUB}'><publish node='{node}'><item id='{item}'>{payload}</item>\
         </publish>{options}</pubsub></iq>"
    )
}

/// Sends `stanza` and reads up to the iq answering `id`, answering the server's
/// caps queries meanwhile; an error answer fails.
async fn round_trip(conn: &mut Conn, stanza: &str, id: &str, caps: Option<&Caps>) -> io::Result<()> {
    conn.send(stanza.as_bytes()).await?;
    loop {
        let ev = conn.element().await?;
        if let Some(caps) = caps {
            caps.answer(conn, &ev).await?;
        }
        if ev.name == "iq" && ev.id == id {
            return match ev.kind.as_deref() {
                Some("result") => Ok(()),
                _ => Err(other(format!("{id}: {ev:?} {}", ev.text))),
            };
        }
    }
}

/// What one account publishes (`pep-store`).
fn store_stanzas(account: usize, domain: &str, cmd: &PepStoreCmd) -> Vec<String> {
    let image = noise(cmd.avatar_bytes, account as u64 + 1);
    let id = sha1_hex(&image);
    let open = publish_options(&[("pubsub#access_model", "open")]);
    let mut out = vec![
        publish(
            "a1",
            "urn:xmpp:avatar:data",
            &id,
            &format!("<data xmlns='urn:xmpp:avatar:data'>{}</data>", b64(&image)),
            "",
        ),
        publish(
            "a2",
            "urn:xmpp:avatar:metadata",
            &id,
            &format!(
                "<metadata xmlns='urn:xmpp:avatar:metadata'><info id='{id}' type='image/png' bytes='{}' \
                 width='96' height='96'/></metadata>",
                image.len()
            ),
            "",
        ),
    ];
    let device = 1000 + account;
    out.push(publish(
        "o1",
        "eu.siacs.conversations.axolotl.devicelist",
        "current",
        &format!("<list xmlns='eu.siacs.conversations.axolotl'><device id='{device}'/></list>"),
        &open,
    ));
    let key = |k: u64| b64(&noise(33, k));
    let mut bundle = format!(
        "<bundle xmlns='eu.siacs.conversations.axolotl'><signedPreKeyPublic signedPreKeyId='1'>{}</signedPreKeyPublic>\
         <signedPreKeySignature>{}</signedPreKeySignature><identityKey>{}</identityKey><prekeys>",
        key(1),
        b64(&noise(64, 2)),
        key(3)
    );
    for k in 1..=100u64 {
        bundle.push_str(&format!("<preKeyPublic preKeyId='{k}'>{}</preKeyPublic>", key(k + 10)));
    }
    bundle.push_str("</prekeys></bundle>");
    out.push(publish("o2", &format!("eu.siacs.conversations.axolotl.bundles:{device}"), "current", &bundle, &open));
    let bookmarks = publish_options(&[
        ("pubsub#persist_items", "true"),
        ("pubsub#max_items", "max"),
        ("pubsub#send_last_published_item", "never"),
        ("pubsub#access_model", "whitelist"),
    ]);
    for b in 0..cmd.bookmarks {
        out.push(publish(
            &format!("b{b}"),
            "urn:xmpp:bookmarks:1",
            &format!("room{b}@conference.{domain}"),
            &format!("<conference xmlns='urn:xmpp:bookmarks:1' name='Room {b}' autojoin='true'><nick>n{account}</nick></conference>"),
            &bookmarks,
        ));
    }
    out
}

pub fn store(
    ex: &smol::LocalExecutor<'static>,
    target: &Rc<Target>,
    user: &dyn Fn(usize) -> String,
    cmd: PepStoreCmd,
) -> std::process::ExitCode {
    let names: Vec<String> = (0..cmd.accounts.max(1)).map(user).collect();
    let conns = match login_all(ex, target, &names, "p") {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    print("{\"phase\":\"logged_in\"}".to_string());
    wait_for_stdin();
    let started = Instant::now();
    let published = Rc::new(Cell::new(0usize));
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(k, mut c)| {
            let stanzas = store_stanzas(k, &target.domain, &cmd);
            let published = Rc::clone(&published);
            ex.spawn(async move {
                for s in &stanzas {
                    let id = s.split("id='").nth(1).and_then(|r| r.split('\'').next()).unwrap_or_default();
                    round_trip(&mut c, s, id, None).await?;
                    published.set(published.get() + 1);
                }
                Ok::<_, io::Error>(c)
            })
        })
        .collect();
    let mut kept = Vec::new();
    for t in tasks {
        match futures_lite::future::block_on(ex.run(t)) {
            Ok(c) => kept.push(c),
            Err(e) => return fail(e),
        }
    }
    print(format!(
        "{{\"phase\":\"published\",\"accounts\":{},\"items\":{},\"seconds\":{:.3}}}",
        kept.len(),
        published.get(),
        started.elapsed().as_secs_f64()
    ));
    wait_for_stdin();
    std::process::ExitCode::SUCCESS
}

/// A contact's XEP-0115 caps: a feature of its own (so that every contact is
/// asked) and the fan-out node's `+notify`.
#[derive(Clone)]
struct Caps {
    ver: String,
    features: Vec<String>,
}

const CAPS_NODE: &str = "https://wrenhub.example/loadgen";

impl Caps {
    fn new(k: usize) -> Caps {
        let mut features = vec![
            "http://jabber.org/protocol/caps".to_string(),
            DISCO_INFO.to_string(),
            format!("{FANOUT_NODE}+notify"),
            format!("urn:wrenhub:bench:contact:{k}"),
        ];
        features.sort();
        let mut s = String::from("client/pc//loadgen<");
        for f in &features {
            s.push_str(f);
            s.push('<');
        }
        let ver = b64(ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, s.as_bytes()).as_ref());
        Caps { ver, features }
    }

    fn presence(&self) -> String {
        format!(
            "<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='{CAPS_NODE}' ver='{}'/></presence>",
            self.ver
        )
    }

    /// Answers `ev` when it is a disco#info query (from the server or a PEP
    /// service); true when it was.
    async fn answer(&self, conn: &mut Conn, ev: &Ev) -> io::Result<bool> {
        if ev.name != "iq" || ev.kind.as_deref() != Some("get") || ev.child_ns != DISCO_INFO {
            return Ok(false);
        }
        let node = ev.child_node.clone().unwrap_or_default();
        let mut answer = format!(
            "<iq type='result' to='{}' id='{}'><query xmlns='{DISCO_INFO}' node='{node}'>\
             <identity category='client' type='pc' name='loadgen'/>",
            ev.from, ev.id
        );
        for f in &self.features {
            answer.push_str(&format!("<feature var='{f}'/>"));
        }
        answer.push_str("</query></iq>");
        conn.send(answer.as_bytes()).await?;
        Ok(true)
    }
}

/// Each of `conns` sends `stanza(k)` then pings the server, reading (and answering
/// caps queries) up to the pong.
async fn each_then_sync(
    conns: &mut [Conn],
    caps: &[Caps],
    domain: &str,
    stanza: &dyn Fn(usize) -> String,
) -> io::Result<()> {
    for (k, c) in conns.iter_mut().enumerate() {
        let ping = format!("{}<iq type='get' to='{domain}' id='sync'><ping xmlns='urn:xmpp:ping'/></iq>", stanza(k));
        round_trip(c, &ping, "sync", caps.get(k)).await?;
    }
    Ok(())
}

/// Reads until `want` events of `token` arrived (answering caps queries), within
/// the phase limit; returns how many did.
async fn count_events(conn: &mut Conn, caps: &Caps, token: &str, want: usize) -> io::Result<usize> {
    let deadline = Instant::now() + PHASE_LIMIT;
    let mut got = 0;
    while got < want {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = futures_lite::future::or(async { Some(conn.element().await) }, async {
            async_io::Timer::after(left).await;
            None
        })
        .await;
        let Some(ev) = ev else { break };
        let ev = ev?;
        if caps.answer(conn, &ev).await? {
            continue;
        }
        if ev.name == "message" && ev.item_id.as_deref().is_some_and(|i| i.starts_with(token)) {
            got += 1;
        }
    }
    Ok(got)
}

pub fn fanout(
    ex: &smol::LocalExecutor<'static>,
    target: &Rc<Target>,
    user: &dyn Fn(usize) -> String,
    cmd: PepFanoutCmd,
) -> std::process::ExitCode {
    let c = cmd.contacts.max(1);
    let owner = format!("{}@{}", user(0), target.domain);
    let names: Vec<String> = (1..=c).map(user).collect();
    let mut contacts = match login_all(ex, target, &names, "c") {
        Ok(conns) => conns,
        Err(e) => return fail(e),
    };
    let mut publisher = match login_all(ex, target, &[user(0)], "pub") {
        Ok(mut conns) => conns.remove(0),
        Err(e) => return fail(e),
    };
    let caps: Vec<Caps> = (1..=c).map(Caps::new).collect();
    let domain = target.domain.clone();
    let jid = |k: usize| format!("{}@{}", names[k], domain);
    // Mutual subscriptions (kept across runs: asking again changes nothing). The
    // publisher asks first: its roster holds the contacts before they ask (a
    // server bounds the requests nobody answered yet).
    let setup = async {
        for kind in ["subscribe", "subscribed"] {
            let all: String = (0..c).map(|k| format!("<presence to='{}' type='{kind}'/>", jid(k))).collect();
            each_then_sync(std::slice::from_mut(&mut publisher), &[], &domain, &|_| all.clone()).await?;
            each_then_sync(&mut contacts, &[], &domain, &|_| format!("<presence to='{owner}' type='{kind}'/>")).await?;
        }
        each_then_sync(std::slice::from_mut(&mut publisher), &[], &domain, &|_| "<presence/>".to_string()).await?;
        // Each contact becomes available with its caps and answers whoever asks.
        each_then_sync(&mut contacts, &caps, &domain, &|k| caps[k].presence()).await?;
        Ok::<_, io::Error>(())
    };
    if let Err(e) = futures_lite::future::block_on(ex.run(setup)) {
        return fail(e);
    }
    let token = format!("t{:x}", std::process::id());
    let run = |items: usize, label: &str, contacts: Vec<Conn>, publisher: &mut Conn| {
        let prefix = format!("{token}-{label}-");
        let counters: Vec<_> = contacts
            .into_iter()
            .zip(&caps)
            .map(|(mut conn, caps)| {
                let (prefix, caps) = (prefix.clone(), caps.clone());
                ex.spawn(async move {
                    let got = count_events(&mut conn, &caps, &prefix, items).await?;
                    Ok::<_, io::Error>((conn, got))
                })
            })
            .collect();
        let window = cmd.window.max(1);
        let publishing = async {
            let mut next = 0;
            let mut in_flight = 0;
            while next < items || in_flight > 0 {
                while in_flight < window && next < items {
                    let payload = format!("<value xmlns='{FANOUT_NODE}'>{next}</value>");
                    let s = publish(&format!("f{next}"), FANOUT_NODE, &format!("{prefix}{next}"), &payload, "");
                    publisher.send(s.as_bytes()).await?;
                    next += 1;
                    in_flight += 1;
                }
                let ev = publisher.element().await?;
                if ev.name == "iq" && ev.id.starts_with('f') {
                    if ev.kind.as_deref() != Some("result") {
                        return Err(other(format!("publish: {ev:?} {}", ev.text)));
                    }
                    in_flight -= 1;
                }
            }
            Ok::<_, io::Error>(())
        };
        let started = Instant::now();
        futures_lite::future::block_on(ex.run(publishing))?;
        let mut back = Vec::new();
        let mut total = 0;
        for t in counters {
            let (conn, got) = futures_lite::future::block_on(ex.run(t))?;
            total += got;
            back.push(conn);
        }
        Ok::<_, io::Error>((back, total, started.elapsed().as_secs_f64()))
    };
    // A warm-up item reaches every contact: the server knows every caps string.
    let (contacts, got, _) = match run(1, "w", contacts, &mut publisher) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    if got != c {
        return fail(format!("the warm-up item reached {got} of {c} contacts"));
    }
    print("{\"phase\":\"ready\"}".to_string());
    wait_for_stdin();
    let n = cmd.publishes.max(1);
    let (contacts, total, seconds) = match run(n, "m", contacts, &mut publisher) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    print(format!(
        "{{\"contacts\":{c},\"publishes\":{n},\"notifications\":{total},\"expected\":{},\"seconds\":{seconds:.3},\
         \"per_second\":{:.1}}}",
        n * c,
        total as f64 / seconds
    ));
    drop(contacts);
    if total == n * c {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
