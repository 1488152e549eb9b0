//! `room`: N sessions in one group chat (XEP-0045), S of them sending.
//!
//! 1. logs N sessions in, prints `{"phase":"logged_in"}`, waits for a line on stdin;
//! 2. the first creates the room (and submits the instant-room form), the others
//!    enter at once; prints `{"phase":"joined","join_seconds":…}` (the time for
//!    all N to be in) and waits for a line on stdin;
//! 3. S senders send groupchat messages for D seconds, each with at most W of its
//!    own in flight (until the room reflects them back); every occupant counts
//!    what it receives: deliveries per second.

use super::{login, other, print, run_jobs, Conn, Target};
use argh::FromArgs;
use std::cell::{Cell, RefCell};
use std::io::{self, BufRead};
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

fn wait_for_stdin() {
    let _ = io::stdin().lock().read_line(&mut String::new());
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
    let conns: Rc<RefCell<Vec<Option<Conn>>>> = Rc::new(RefCell::new((0..n).map(|_| None).collect()));
    let failed = Rc::new(RefCell::new(None::<String>));
    {
        let (conns, failed, target) = (Rc::clone(&conns), Rc::clone(&failed), Rc::clone(target));
        let names = names.clone();
        futures_lite::future::block_on(ex.run(run_jobs(ex, n, 50, move |i| {
            let (conns, failed, target, name) =
                (Rc::clone(&conns), Rc::clone(&failed), Rc::clone(&target), names[i].clone());
            async move {
                match login(&target, &name, &format!("m{i}")).await {
                    Ok(c) => conns.borrow_mut()[i] = Some(c),
                    Err(e) => {
                        failed.borrow_mut().get_or_insert(e.to_string());
                    }
                }
            }
        })));
    }
    if let Some(e) = failed.borrow().clone() {
        print(format!("{{\"error\":{e:?}}}"));
        return std::process::ExitCode::FAILURE;
    }
    print("{\"phase\":\"logged_in\"}".to_string());
    wait_for_stdin();
    let mut conns: Vec<Conn> = conns.borrow_mut().drain(..).flatten().collect();
    // The first creates the room and makes it an instant room (§10.1.2).
    let created = futures_lite::future::block_on(ex.run(async {
        let first = &mut conns[0];
        enter(first, &room, "n0").await?;
        let iq = format!(
            "<iq type='set' to='{room}' id='instant'><query xmlns='{MUC}#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>"
        );
        first.send(iq.as_bytes()).await?;
        loop {
            let ev = first.element().await?;
            if ev.name == "iq" {
                return match ev.kind.as_deref() {
                    Some("result") => Ok(()),
                    _ => Err(other(format!("instant room: {ev:?}"))),
                };
            }
        }
    }));
    if let Err(e) = created {
        print(format!("{{\"error\":{:?}}}", e.to_string()));
        return std::process::ExitCode::FAILURE;
    }
    let started = Instant::now();
    let rest: Vec<Conn> = conns.drain(1..).collect();
    let entered: Vec<io::Result<Conn>> = futures_lite::future::block_on(ex.run(async {
        let tasks: Vec<_> = rest
            .into_iter()
            .enumerate()
            .map(|(k, mut c)| {
                let room = room.clone();
                ex.spawn(async move {
                    enter(&mut c, &room, &format!("n{}", k + 1)).await?;
                    Ok(c)
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await);
        }
        out
    }));
    let join_seconds = started.elapsed().as_secs_f64();
    for c in entered {
        match c {
            Ok(c) => conns.push(c),
            Err(e) => {
                print(format!("{{\"error\":{:?}}}", e.to_string()));
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    // Everyone reads what the joins sent it (the others' presence), so that the
    // memory measured next is the room's, not unread queues.
    let domain = target.domain.clone();
    let drained = futures_lite::future::block_on(ex.run(async {
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
        Ok::<_, io::Error>(())
    }));
    if let Err(e) = drained {
        print(format!("{{\"error\":{:?}}}", e.to_string()));
        return std::process::ExitCode::FAILURE;
    }
    print(format!("{{\"phase\":\"joined\",\"join_seconds\":{join_seconds:.4}}}"));
    wait_for_stdin();

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
