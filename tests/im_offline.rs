//! XEP-0160 offline messages with XEP-0203 delay stamps, on the wire: stored for an
//! account with no available resource, delivered at its next available presence,
//! removed after delivery, bounded by quotas (the sender is told), durable across
//! a kill -9.

mod common;
use common::*;

/// Reads up to the ping that follows an offline batch, answers it, and returns
/// what came before it (the batch).
fn take_batch(c: &mut Client) -> String {
    let got = c.read_until("<ping xmlns='urn:xmpp:ping'/></iq>", WAIT);
    let start = got.rfind("<iq ").expect("the ping after the batch");
    let id = between(&got[start..], "id='", "'").to_string();
    assert!(id.starts_with("wrenhub-offline-"), "{got}");
    c.send(&format!("<iq type='result' id='{id}' to='localhost'/>"));
    got[..start].to_string()
}

#[test]
fn messages_wait_for_the_next_available_presence_with_a_delay_stamp() {
    let server = Server::start();
    server.add_user("juliet", "pw");
    server.add_user("romeo", "pw");
    let mut romeo = server.login("romeo", "pw", "garden");
    for i in 0..3 {
        romeo.send(&format!(
            "<message to='juliet@localhost' id='o{i}' type='chat'><body>while you slept {i}</body></message>"
        ));
    }
    romeo.send("<message to='juliet@localhost' type='headline'><body>news</body></message>");
    let answers = romeo.sync("r1");
    assert!(!answers.contains("type='error'"), "no error for stored messages: {answers}");
    let mut juliet = server.login("juliet", "pw", "balcony");
    // Negative priority: not a delivery target (XEP-0160 §3).
    juliet.send("<presence><priority>-1</priority></presence>");
    juliet.read_until("</presence>", WAIT);
    assert!(!juliet.sync("j1").contains("<message"));
    juliet.send("<presence/>");
    let batch = take_batch(&mut juliet);
    let messages: Vec<&str> = batch.split("<message ").skip(1).collect();
    assert_eq!(messages.len(), 3, "{batch}");
    for (i, m) in messages.iter().enumerate() {
        assert!(m.contains(&format!("<body>while you slept {i}</body>")), "{m}");
        assert!(m.contains("from='romeo@localhost/garden'"), "{m}");
        assert!(m.contains("<delay xmlns='urn:xmpp:delay' from='localhost' stamp='"), "{m}");
    }
    assert!(!batch.contains("news"), "a headline is not stored");
    juliet.sync("j2");
    drop(juliet);
    // Acknowledged once: the next login gets nothing.
    let mut again = server.login("juliet", "pw", "phone");
    again.send("<presence/>");
    assert!(!again.sync("a1").contains("<message"), "{}", again.received());
}

#[test]
fn a_batch_the_client_did_not_acknowledge_comes_again_at_the_next_login() {
    // D2: messages were deleted once written to the kernel; a phone that lost its
    // connection right after login lost them.
    let server = Server::start();
    server.add_user("juliet", "pw");
    server.add_user("romeo", "pw");
    let mut romeo = server.login("romeo", "pw", "garden");
    romeo.send("<message to='juliet@localhost' id='k'><body>keep me</body></message>");
    romeo.sync("r1");
    let mut phone = server.login("juliet", "pw", "phone");
    phone.send("<presence/>");
    phone.read_until("<ping xmlns='urn:xmpp:ping'/></iq>", WAIT);
    assert!(phone.received().contains("<body>keep me</body>"));
    drop(phone); // gone before answering the ping
    let mut again = server.login("juliet", "pw", "phone2");
    again.send("<presence/>");
    assert!(take_batch(&mut again).contains("<body>keep me</body>"));
    again.sync("a1");
    drop(again);
    let mut third = server.login("juliet", "pw", "phone3");
    third.send("<presence/>");
    assert!(!third.sync("t1").contains("<message"));
}

#[test]
fn a_large_backlog_arrives_in_batches_that_fit_the_queue() {
    // S3: the whole backlog used to be loaded into memory and written at once.
    let server = Server::start_with("c2s_queue_size = 16384");
    server.add_user("juliet", "pw");
    server.add_user("romeo", "pw");
    let mut romeo = server.login("romeo", "pw", "garden");
    let body = "x".repeat(3000);
    for i in 0..10 {
        romeo.send(&format!("<message to='juliet@localhost' id='b{i}'><body>{i} {body}</body></message>"));
    }
    assert!(!romeo.sync("r1").contains("type='error'"));
    let mut juliet = server.login("juliet", "pw", "balcony");
    juliet.send("<presence/>");
    let mut received = 0;
    let mut batches = 0;
    while received < 10 {
        let batch = take_batch(&mut juliet);
        let n = batch.matches("<message ").count();
        assert!(batch.len() <= 8192 + 2048, "a batch of {} bytes", batch.len());
        assert!((1..=2).contains(&n), "{n} messages of 3 KB in a batch of 8 KiB");
        received += n;
        batches += 1;
    }
    assert_eq!((received, batches), (10, 5));
    assert!(!juliet.sync("j1").contains("<message"));
}

#[test]
fn bodiless_messages_and_no_store_hints_are_not_kept_offline() {
    // R8: chat states and receipts filled the quota.
    let server = Server::start_with("max_offline_per_account = 1");
    server.add_user("juliet", "pw");
    server.add_user("romeo", "pw");
    let mut romeo = server.login("romeo", "pw", "garden");
    romeo.send(
        "<message to='juliet@localhost' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
    );
    romeo.send("<message to='juliet@localhost'><body>secret</body><no-store xmlns='urn:xmpp:hints'/></message>");
    romeo.send("<message to='juliet@localhost' id='real'><body>kept</body></message>");
    let answers = romeo.sync("r1");
    assert!(!answers.contains("type='error'"), "the one real message fits the quota of one: {answers}");
    let mut juliet = server.login("juliet", "pw", "balcony");
    juliet.send("<presence/>");
    let batch = take_batch(&mut juliet);
    assert_eq!(batch.matches("<message ").count(), 1, "{batch}");
    assert!(batch.contains("<body>kept</body>"));
}

#[test]
fn offline_bytes_per_account_are_bounded() {
    let server = Server::start_with("max_offline_bytes_per_account = 4096");
    server.add_user("juliet", "pw");
    server.add_user("romeo", "pw");
    let mut romeo = server.login("romeo", "pw", "garden");
    let body = "y".repeat(1500);
    for i in 0..3 {
        romeo.send(&format!("<message to='juliet@localhost' id='q{i}'><body>{body}</body></message>"));
    }
    let answers = romeo.sync("r1");
    assert!(answers.contains("id='q2'") && answers.contains("<service-unavailable "), "{answers}");
    assert!(!answers.contains("id='q1' type='error'"), "{answers}");
}

#[test]
fn offline_quota_is_answered_with_service_unavailable() {
    let server = Server::start_with("max_offline_per_account = 2");
    server.add_user("juliet", "pw");
    server.add_user("romeo", "pw");
    let mut romeo = server.login("romeo", "pw", "garden");
    for i in 0..2 {
        romeo.send(&format!("<message to='juliet@localhost' id='ok{i}'><body>{i}</body></message>"));
    }
    romeo.send("<message to='juliet@localhost' id='over'><body>too many</body></message>");
    let got = romeo.read_until("</message>", WAIT);
    assert!(
        got.contains("id='over'") && got.contains("<service-unavailable ") && got.contains("offline storage is full"),
        "{got}"
    );
}

#[test]
fn stored_messages_survive_kill_9() {
    let mut server = Server::start();
    server.add_user("juliet", "pw");
    server.add_user("romeo", "pw");
    let mut romeo = server.login("romeo", "pw", "garden");
    romeo.send("<message to='juliet@localhost' id='k'><body>before the crash</body></message>");
    // The ping's answer comes after the message was handled (and committed).
    romeo.sync("sync");
    server.signal("KILL");
    server.wait_exit(WAIT).expect("killed");
    let dir = std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap());
    let restarted = Server::start_in(dir, "");
    let mut juliet = restarted.login("juliet", "pw", "balcony");
    juliet.send("<presence/>");
    assert!(juliet.read_until("</message>", WAIT).contains("<body>before the crash</body>"));
}

#[test]
fn messages_stored_by_many_senders_at_once_are_all_durable_when_each_sender_is_answered() {
    // S9: the store writer commits the messages of many streams in one batch; a
    // stream reads on (and answers its ping) only once its messages are on disk.
    let mut server = Server::start();
    for i in 0..10 {
        server.add_user(&format!("s{i}"), "pw");
    }
    for r in 0..4 {
        server.add_user(&format!("r{r}"), "pw");
    }
    let threads: Vec<_> = (0..10)
        .map(|i| {
            let mut c = server.login(&format!("s{i}"), "pw", "x");
            std::thread::spawn(move || {
                for n in 0..20 {
                    c.send(&format!("<message to='r{}@localhost' id='m{i}-{n}'><body>{i} {n}</body></message>", n % 4));
                }
                let answers = c.sync("stored");
                assert!(!answers.contains("type='error'"), "{answers}");
                c
            })
        })
        .collect();
    let _senders: Vec<Client> = threads.into_iter().map(|t| t.join().expect("sender")).collect();
    server.signal("KILL");
    server.wait_exit(WAIT).expect("killed");
    let dir = std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap());
    let restarted = Server::start_in(dir, "");
    let mut got = 0;
    for r in 0..4 {
        let mut c = restarted.login(&format!("r{r}"), "pw", "x");
        c.send("<presence/>");
        while got < (r + 1) * 50 {
            got += take_batch(&mut c).matches("<message ").count();
        }
    }
    assert_eq!(got, 200, "every acknowledged message survived the kill");
}
