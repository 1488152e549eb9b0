//! `room`: N sessions in one group chat (XEP-0045), S of them sending.
//!
//! 1. logs N sessions in, prints `{"phase":"logged_in"}`, waits for a line on stdin;
//! 2. with `--rooms K`, the same sessions enter K-1 rooms one session after
//!    another (what a room keeps per occupant, without a burst of N² queued
//!    presences whose peak the allocator would keep), each followed by
//!    `{"phase":"joined","at_once":false,…}` and a line on stdin;
//! 3. then the first creates the room the messages go to (and submits the
//!    instant-room form), the others enter at once; prints
//!    `{"phase":"joined","at_once":true,"join_seconds":…}` (the time for all N to
//!    be in) and waits for a line on stdin;
//! 4. S senders send groupchat messages for D seconds, each with at most W of its
//!    own in flight (until the room reflects them back); every occupant counts
//!    what it receives: deliveries per second.

use super::{login_all, other, print, wait_for_stdin, Conn, Target};
use argh::FromArgs;
use std::cell::Cell;
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

#[derive(FromArgs)]
/// N sessions in one group chat, S of them sending for D seconds
#[argh(subcommand, name = "room")]
pub struct RoomCmd {
    /// sessions in the room
    #[argh(option, default = "50")]
    occupants: usize,
    /// of them, how many send
    #[argh(option, default = "5")]
    senders: usize,
    /// seconds of sending
    #[argh(option, default = "10.0")]
    duration: f64,
    /// messages a sender may have in flight
    #[argh(option, default = "16")]
    window: usize,
    /// the group-chat service (default conference.DOMAIN)
    #[argh(option)]
    muc: Option<String>,
    /// rooms the sessions enter, one after another (messages go to the last)
    #[argh(option, default = "1")]
    rooms: usize,
}

const MUC: &str = "http://jabber.org/protocol/muc";

/// Enters the room; returns once the subject (the end of the join) arrived.
async fn enter(conn: &mut Conn, room: &str, nick: &str) -> io::Result<()> {
    conn.send(
        format!("<presence to='{room}/{nick}'><x xmlns='{MUC}'><history maxstanzas='0'/></x></presence>").as_bytes(),
    )
    .await?;
    loop {
        let ev = conn.element().await?;
        match (ev.name.as_str(), ev.kind.as_deref()) {
            ("presence", Some("error")) => return Err(other(format!("{nick} could not enter: {ev:?}"))),
            ("message", _) => return Ok(()),
            _ => {}
        }
    }
}

/// The first of `conns` creates `room` as an instant room (§10.1.2), the others
/// enter it (`at_once`, or one after another); then everyone reads what the joins sent it (the others'
/// presence), so that memory measured next is the room's, not unread queues.
/// Returns the seconds from the first of the others entering to the last.
async fn fill_room(
    ex: &smol::LocalExecutor<'static>,
    conns: &mut Vec<Conn>,
    room: &str,
    domain: &str,
    at_once: bool,
) -> io::Result<f64> {
    let first = &mut conns[0];
    enter(first, room, "n0").await?;
    let iq = format!(
        "<iq type='set' to='{room}' id='instant'><query xmlns='{MUC}#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>"
    );
    first.send(iq.as_bytes()).await?;
    loop {
        let ev = first.element().await?;
        if ev.name == "iq" {
            match ev.kind.as_deref() {
                Some("result") => break,
                _ => return Err(other(format!("instant room: {ev:?}"))),
            }
        }
    }
    let started = Instant::now();
    if !at_once {
        for (k, c) in conns.iter_mut().enumerate().skip(1) {
            enter(c, room, &format!("n{k}")).await?;
        }
        return drain(conns, domain).await.map(|()| started.elapsed().as_secs_f64());
    }
    let tasks: Vec<_> = conns
        .drain(1..)
        .enumerate()
        .map(|(k, mut c)| {
            let room = room.to_string();
            ex.spawn(async move {
                enter(&mut c, &room, &format!("n{}", k + 1)).await?;
                Ok::<_, io::Error>(c)
            })
        })
        .collect();
    let mut failure = None;
    for t in tasks {
        match t.await {
            Ok(c) => conns.push(c),
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    let join_seconds = started.elapsed().as_secs_f64();
    if let Some(e) = failure {
        return Err(e);
    }
    drain(conns, domain).await?;
    Ok(join_seconds)
}

/// Everyone reads what it was sent, up to the answer to a ping.
async fn drain(conns: &mut [Conn], domain: &str) -> io::Result<()> {
    for c in conns.iter_mut() {
        c.send(format!("<iq type='get' to='{domain}' id='drain'><ping xmlns='urn:xmpp:ping'/></iq>").as_bytes())
            .await?;
        loop {
            let ev = c.element().await?;
            if ev.name == "iq" && ev.id == "drain" {
                break;
            }
        }
    }
    Ok(())
}

pub fn run(
    ex: &smol::LocalExecutor<'static>,
    target: &Rc<Target>,
    user: &dyn Fn(usize) -> String,
    cmd: RoomCmd,
) -> std::process::ExitCode {
    let n = cmd.occupants.max(1);
    let room = format!("bench@{}", cmd.muc.clone().unwrap_or_else(|| format!("conference.{}", target.domain)));
    let names: Vec<String> = (0..n).map(user).collect();
    let mut conns = match login_all(ex, target, &names, "m") {
        Ok(conns) => conns,
        Err(e) => {
            print(format!("{{\"error\":{e:?}}}"));
            return std::process::ExitCode::FAILURE;
        }
    };
    print("{\"phase\":\"logged_in\"}".to_string());
    wait_for_stdin();
    let service = cmd.muc.clone().unwrap_or_else(|| format!("conference.{}", target.domain));
    let rooms = cmd.rooms.max(1);
    for r in 1..=rooms {
        let at_once = r == rooms;
        let name = if at_once { room.clone() } else { format!("bench{r}@{service}") };
        match futures_lite::future::block_on(ex.run(fill_room(ex, &mut conns, &name, &target.domain, at_once))) {
            Ok(join_seconds) => {
                print(format!("{{\"phase\":\"joined\",\"at_once\":{at_once},\"join_seconds\":{join_seconds:.4}}}"))
            }
            Err(e) => {
                print(format!("{{\"error\":{:?}}}", e.to_string()));
                return std::process::ExitCode::FAILURE;
            }
        }
        wait_for_stdin();
    }

    let token: Rc<str> = format!("r{:x}", std::process::id()).into();
    let base = Instant::now();
    let stop_at = base + Duration::from_secs_f64(cmd.duration);
    let deliveries = Rc::new(Cell::new(0u64));
    let in_time = Rc::new(Cell::new(0u64));
    let sent = Rc::new(Cell::new(0u64));
    let window = cmd.window.max(1) as u64;
    let senders = cmd.senders.min(conns.len());
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(k, mut c)| {
            let (deliveries, in_time, sent, token, room) =
                (Rc::clone(&deliveries), Rc::clone(&in_time), Rc::clone(&sent), Rc::clone(&token), room.clone());
            ex.spawn(async move {
                let sender = k < senders;
                let mut in_flight = 0u64;
                let mut seq = 0u64;
                let mine = format!("{token} {k} ");
                loop {
                    let now = Instant::now();
                    if (now >= stop_at && in_flight == 0) || now > stop_at + Duration::from_secs(5) {
                        break;
                    }
                    if sender && now < stop_at && in_flight < window {
                        let mut batch = Vec::new();
                        for _ in in_flight..window {
                            batch.extend_from_slice(
                                format!("<message to='{room}' type='groupchat'><body>{mine}{seq}</body></message>")
                                    .as_bytes(),
                            );
                            seq += 1;
                        }
                        sent.set(sent.get() + (window - in_flight));
                        in_flight = window;
                        if c.send(&batch).await.is_err() {
                            break;
                        }
                    }
                    let ev = futures_lite::future::or(async { Some(c.next().await) }, async {
                        async_io::Timer::after(Duration::from_millis(200)).await;
                        None
                    })
                    .await;
                    let Some(Ok(ev)) = ev else { continue };
                    let Some(body) = ev.body else { continue };
                    if !body.starts_with(&*token) {
                        continue;
                    }
                    deliveries.set(deliveries.get() + 1);
                    if Instant::now() <= stop_at {
                        in_time.set(in_time.get() + 1);
                    }
                    if body.starts_with(&mine) {
                        in_flight = in_flight.saturating_sub(1);
                    }
                }
                let _ = c.send(b"</stream:stream>").await;
            })
        })
        .collect();
    futures_lite::future::block_on(ex.run(async {
        for t in tasks {
            t.await;
        }
    }));
    print(format!(
        "{{\"occupants\":{n},\"senders\":{senders},\"messages\":{},\"deliveries\":{},\"per_second\":{:.1}}}",
        sent.get(),
        deliveries.get(),
        in_time.get() as f64 / cmd.duration
    ));
    std::process::ExitCode::SUCCESS
}
