//! Server-to-server federation (RFC 6120 §3 and §13.7; XEP-0178, XEP-0220,
//! XEP-0368): the outbound links to remote domains with their bounded queues, the
//! dialback requests that travel on them, and the bounces for what cannot be
//! delivered. The stream state machines are in `stream::s2s_in` / `stream::s2s_out`,
//! the connection tasks in `net::s2s_in` / `net::s2s_out`.
//!
//! One outbound link per pair of a local domain (the hub's, or one of its
//! built-in services' such as group chat) and a remote domain, created on demand when the router sends
//! the first stanza there. Its queue is bounded in bytes (`s2s_queue_size`) and in
//! time: the link must be connected and authenticated within `s2s_connect_timeout`,
//! after which the queue drains at once; a stanza that cannot go out is bounced to
//! its local sender with `remote-server-not-found`, `remote-server-timeout` or
//! `resource-constraint` (RFC 6120 §8.3.3), never dropped silently and never retried
//! forever.

pub mod dialback;
pub mod dns;
pub mod resolve;

use crate::jid::{Domain, Jid};
use crate::sessions::Registry;
use crate::stanza::{Condition, Kind, StanzaError};
use crate::tls::peer::PeerTrust;
use crate::xml::writer::XmlWriter;
use event_listener::{Event, EventListener};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};

/// Dialback requests one link carries at once.
const MAX_VERIFIES: usize = 32;

/// Where the error for an undeliverable stanza goes: the stanza's addresses, kind
/// and id. Errors, results and presence are never bounced.
#[derive(Clone, Debug)]
pub struct Bounce {
    pub kind: Kind,
    pub from: String,
    pub to: String,
    pub id: Option<String>,
}

struct Queued {
    bytes: Box<[u8]>,
    bounce: Option<Bounce>,
}

/// A `<db:verify/>` to send to the authoritative server, for an inbound stream
/// that waits for the answer (XEP-0220 §2.3).
pub struct VerifyRequest {
    /// The id of the inbound stream the key was presented on.
    pub stream_id: String,
    pub key: String,
    pub waiter: Weak<DialbackWaiter>,
}

/// What the authoritative server said about a dialback key (XEP-0220 §2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    Invalid,
    /// It could not be asked: no route, no connection, no TLS, or the link ended.
    Unreachable,
    /// Too many requests are waiting already.
    Overloaded,
}

/// Answers to an inbound stream's dialback requests, by originating domain.
#[derive(Default)]
pub struct DialbackWaiter {
    answers: RefCell<Vec<(Domain, Verdict)>>,
    wake: Event,
}

impl DialbackWaiter {
    pub fn answer(&self, domain: Domain, verdict: Verdict) {
        self.answers.borrow_mut().push((domain, verdict));
        self.wake.notify(1);
    }

    pub fn take(&self) -> Vec<(Domain, Verdict)> {
        std::mem::take(&mut *self.answers.borrow_mut())
    }

    /// A listener, or `None` when answers are already waiting.
    pub fn listen_if_idle(&self) -> Option<EventListener> {
        let l = self.wake.listen();
        self.answers.borrow().is_empty().then_some(l)
    }
}

/// Why a stanza could not be queued.
#[derive(Debug, PartialEq, Eq)]
pub enum SendError {
    /// The remote domain's queue is full.
    QueueFull,
    /// `max_s2s_links` links are open.
    TooManyLinks,
}

impl SendError {
    pub fn stanza_error(&self) -> StanzaError {
        match self {
            SendError::QueueFull => StanzaError::with_text(
                Condition::ResourceConstraint,
                "too much is waiting for the remote server (s2s_queue_size)",
            ),
            SendError::TooManyLinks => StanzaError::with_text(
                Condition::ResourceConstraint,
                "the server has its maximum of server-to-server links open (max_s2s_links)",
            ),
        }
    }
}

/// The outbound link from one local domain to one remote domain, as the router
/// sees it (RFC 6120 §4.2: a stream authenticates one pair of domains).
pub struct OutLink {
    /// The domain this side speaks for (the stream's `from`).
    pub local: Domain,
    pub remote: Domain,
    /// Authenticated: queued stanzas may go out.
    ready: Cell<bool>,
    /// The task ended; nothing more is accepted.
    closed: Cell<bool>,
    queue: RefCell<VecDeque<Queued>>,
    queued_bytes: Cell<usize>,
    /// What was drained into the connection's output but not yet written: it
    /// bounces if the link ends first (REVIEW D1).
    in_flight: RefCell<Vec<Bounce>>,
    limit: usize,
    verifies: RefCell<Vec<VerifyRequest>>,
    wake: Event,
    /// Stanzas were queued on it: it counts against `max_s2s_links`. A link made
    /// only to verify dialback keys counts against its own small budget (S11).
    carries_stanzas: Cell<bool>,
}

/// Links made only to verify dialback keys others claimed: an unauthenticated
/// peer names the domains, so they get their own budget and cannot crowd out the
/// links that carry stanzas (REVIEW S11).
pub fn max_verify_links(max_links: usize) -> usize {
    (max_links / 4).max(4)
}

impl OutLink {
    fn new(local: Domain, remote: Domain, limit: usize) -> OutLink {
        OutLink {
            local,
            remote,
            ready: Cell::new(false),
            closed: Cell::new(false),
            queue: RefCell::new(VecDeque::new()),
            queued_bytes: Cell::new(0),
            in_flight: RefCell::new(Vec::new()),
            limit,
            verifies: RefCell::new(Vec::new()),
            wake: Event::new(),
            carries_stanzas: Cell::new(false),
        }
    }

    fn push(&self, bytes: Vec<u8>, bounce: Option<Bounce>) -> Result<(), SendError> {
        let total = self.queued_bytes.get() + bytes.len();
        if total > self.limit {
            return Err(SendError::QueueFull);
        }
        self.queued_bytes.set(total);
        self.queue.borrow_mut().push_back(Queued { bytes: bytes.into_boxed_slice(), bounce });
        self.wake.notify(1);
        Ok(())
    }

    pub fn set_ready(&self) {
        self.ready.set(true);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.get()
    }

    pub fn has_queued(&self) -> bool {
        !self.queue.borrow().is_empty()
    }

    /// Moves every queued stanza into `out` (once the link is authenticated);
    /// their bounces wait in flight until [`OutLink::written`].
    pub fn drain_into(&self, out: &mut Vec<u8>) {
        let mut queue = self.queue.borrow_mut();
        let mut in_flight = self.in_flight.borrow_mut();
        for item in queue.drain(..) {
            out.extend_from_slice(&item.bytes);
            in_flight.extend(item.bounce);
        }
        self.queued_bytes.set(0);
        if queue.capacity() > 16 {
            *queue = VecDeque::new();
        }
    }

    /// What was drained is written: no longer ours to bounce.
    pub fn written(&self) {
        let mut in_flight = self.in_flight.borrow_mut();
        in_flight.clear();
        if in_flight.capacity() > 16 {
            *in_flight = Vec::new();
        }
    }

    /// The link is gone: everything queued or drained but not written comes back
    /// for bouncing, and waiting dialback requests are answered "unreachable".
    pub fn close(&self) -> Vec<Bounce> {
        self.closed.set(true);
        self.ready.set(false);
        for v in self.verifies.borrow_mut().drain(..) {
            if let Some(w) = v.waiter.upgrade() {
                w.answer(self.remote.clone(), Verdict::Unreachable);
            }
        }
        let mut queue = self.queue.borrow_mut();
        self.queued_bytes.set(0);
        let mut bounces = std::mem::take(&mut *self.in_flight.borrow_mut());
        bounces.extend(queue.drain(..).filter_map(|q| q.bounce));
        bounces
    }

    pub fn take_verifies(&self) -> Vec<VerifyRequest> {
        std::mem::take(&mut *self.verifies.borrow_mut())
    }

    pub fn has_verifies(&self) -> bool {
        !self.verifies.borrow().is_empty()
    }

    /// A listener for the next stanza or request, or `None` when one is waiting
    /// that can go out now (stanzas once `ready`, verifications once `can_verify`).
    pub fn listen_if_idle(&self, ready: bool, can_verify: bool) -> Option<EventListener> {
        let l = self.wake.listen();
        let waiting = (ready && self.has_queued()) || (can_verify && self.has_verifies());
        (!waiting).then_some(l)
    }
}

/// The federation state of the server.
pub struct S2s {
    /// The hub's own domain: where stanzas come from unless a service says.
    home: Domain,
    links: RefCell<Vec<Rc<OutLink>>>,
    max_links: usize,
    queue_limit: usize,
    /// New links waiting for their connection task.
    spawn: RefCell<Vec<Rc<OutLink>>>,
    spawn_wake: Event,
    /// The secret behind dialback keys.
    pub secret: Vec<u8>,
    /// What authenticates a peer by its certificate.
    pub trust: PeerTrust,
}

impl S2s {
    pub fn new(home: Domain, max_links: usize, queue_limit: usize, secret: Vec<u8>, trust: PeerTrust) -> S2s {
        S2s {
            home,
            links: RefCell::new(Vec::new()),
            max_links,
            queue_limit,
            spawn: RefCell::new(Vec::new()),
            spawn_wake: Event::new(),
            secret,
            trust,
        }
    }

    /// The link from `local` to `remote`, created (and handed to the spawner) if
    /// there is none, within the budget of its purpose: stanzas, or only dialback
    /// verification.
    fn link(&self, local: &Domain, remote: &Domain, for_stanzas: bool) -> Result<Rc<OutLink>, SendError> {
        let mut links = self.links.borrow_mut();
        let carrying = links.iter().filter(|l| l.carries_stanzas.get()).count();
        if let Some(l) = links.iter().find(|l| l.remote == *remote && l.local == *local && !l.closed.get()) {
            if for_stanzas && !l.carries_stanzas.get() {
                if carrying >= self.max_links {
                    return Err(SendError::TooManyLinks);
                }
                l.carries_stanzas.set(true);
            }
            return Ok(Rc::clone(l));
        }
        let full = if for_stanzas {
            carrying >= self.max_links
        } else {
            links.len() - carrying >= max_verify_links(self.max_links)
        };
        if full {
            return Err(SendError::TooManyLinks);
        }
        let link = Rc::new(OutLink::new(local.clone(), remote.clone(), self.queue_limit));
        link.carries_stanzas.set(for_stanzas);
        links.push(Rc::clone(&link));
        self.spawn.borrow_mut().push(Rc::clone(&link));
        self.spawn_wake.notify(1);
        Ok(link)
    }

    /// Queues a stanza (already in `jabber:server`, `from` stamped) from the hub's
    /// domain for a remote domain.
    pub fn send(&self, remote: &Domain, bytes: Vec<u8>, bounce: Option<Bounce>) -> Result<(), SendError> {
        self.link(&self.home, remote, true)?.push(bytes, bounce)
    }

    /// Queues a stanza from another local domain (a built-in service's).
    pub fn send_from(
        &self,
        local: &Domain,
        remote: &Domain,
        bytes: Vec<u8>,
        bounce: Option<Bounce>,
    ) -> Result<(), SendError> {
        self.link(local, remote, true)?.push(bytes, bounce)
    }

    /// Asks the authoritative server of `remote` whether a dialback key it gave
    /// for `local` (the domain the key was presented to) is its own.
    pub fn request_verify(&self, local: &Domain, remote: &Domain, request: VerifyRequest) -> Result<(), SendError> {
        let link = self.link(local, remote, false)?;
        let mut verifies = link.verifies.borrow_mut();
        if verifies.len() >= MAX_VERIFIES {
            return Err(SendError::QueueFull);
        }
        verifies.push(request);
        link.wake.notify(1);
        Ok(())
    }

    /// Links created since the last call, for the spawner to start.
    pub fn take_new_links(&self) -> Vec<Rc<OutLink>> {
        std::mem::take(&mut *self.spawn.borrow_mut())
    }

    /// A listener for new links, or `None` when some are waiting.
    pub fn listen_for_new_links(&self) -> Option<EventListener> {
        let l = self.spawn_wake.listen();
        self.spawn.borrow().is_empty().then_some(l)
    }

    /// Forgets a link whose task ended; returns what was still queued.
    pub fn remove(&self, link: &Rc<OutLink>) -> Vec<Bounce> {
        self.links.borrow_mut().retain(|l| !Rc::ptr_eq(l, link));
        link.close()
    }

    /// Takes an idle link out of the table (its task closes it): the next stanza
    /// for that domain starts a new link.
    pub fn remove_idle(&self, link: &OutLink) {
        self.links.borrow_mut().retain(|l| !std::ptr::eq(&**l, link));
    }

    pub fn link_count(&self) -> usize {
        self.links.borrow().len()
    }
}

/// The error stanza for a bounce (RFC 6120 §8.3.1: `from` is the intended
/// recipient, `to` the sender, the original `id`), in `jabber:client`.
pub fn bounce_stanza(b: &Bounce, error: &StanzaError) -> Vec<u8> {
    let mut out = Vec::with_capacity(300);
    XmlWriter::new(&mut out)
        .start(b.kind.name())
        .attr("from", &b.to)
        .attr("to", &b.from)
        .attr_opt("id", b.id.as_deref())
        .attr("type", "error")
        .open();
    error.write_error_element(&mut out);
    XmlWriter::new(&mut out).end(b.kind.name());
    out
}

/// Delivers bounces to the local sessions that sent the stanzas.
pub fn deliver_bounces(registry: &Registry, domain: &Domain, bounces: Vec<Bounce>, condition: Condition, text: &str) {
    for b in bounces {
        let mut error = StanzaError::with_text(condition, text);
        error.by = Some(domain.as_str().to_string());
        let Ok(Jid::Full(sender)) = b.from.parse::<Jid>() else { continue };
        if let Some(session) = registry.get(&sender) {
            log::debug!("bouncing a {} to {} with {}", b.kind.name(), b.from, condition.wire_name());
            let _ = session.push(bounce_stanza(&b, &error));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain(s: &str) -> Domain {
        s.parse().unwrap()
    }

    fn bounce(id: &str) -> Option<Bounce> {
        Some(Bounce { kind: Kind::Message, from: "a@here/r".into(), to: "b@there".into(), id: Some(id.into()) })
    }

    #[test]
    fn queues_are_bounded_and_links_limited() {
        let s2s = S2s::new(domain("here"), 1, 10, Vec::new(), PeerTrust::none());
        s2s.send(&domain("there"), b"12345".to_vec(), bounce("1")).unwrap();
        assert_eq!(s2s.send(&domain("there"), b"123456".to_vec(), bounce("2")), Err(SendError::QueueFull));
        assert_eq!(s2s.send(&domain("else"), b"1".to_vec(), None), Err(SendError::TooManyLinks));
        let new = s2s.take_new_links();
        assert_eq!(new.len(), 1);
        let bounced = s2s.remove(&new[0]);
        assert_eq!(bounced.len(), 1);
        assert_eq!(s2s.link_count(), 0);
    }

    #[test]
    fn stanzas_drained_but_not_written_bounce_when_the_link_ends() {
        // REVIEW D1: bytes moved into the connection's output are not yet sent.
        let s2s = S2s::new(domain("here"), 4, 1000, Vec::new(), PeerTrust::none());
        s2s.send(&domain("there"), b"one".to_vec(), bounce("1")).unwrap();
        s2s.send(&domain("there"), b"two".to_vec(), bounce("2")).unwrap();
        let link = s2s.take_new_links().remove(0);
        let mut out = Vec::new();
        link.drain_into(&mut out);
        assert_eq!(out, b"onetwo");
        s2s.send(&domain("there"), b"three".to_vec(), bounce("3")).unwrap();
        let ids = |b: Vec<Bounce>| b.into_iter().filter_map(|b| b.id).collect::<Vec<_>>();
        assert_eq!(ids(link.close()), ["1", "2", "3"], "the write failed: all three bounce, in order");
        // Once written, drained stanzas are the peer's.
        s2s.send(&domain("here2"), b"four".to_vec(), bounce("4")).unwrap();
        let link = s2s.take_new_links().remove(0);
        link.drain_into(&mut out);
        link.written();
        assert!(link.close().is_empty());
    }

    #[test]
    fn links_made_to_verify_claims_have_their_own_budget() {
        // S11: an unauthenticated peer claiming 32 domains filled max_s2s_links.
        let s2s = S2s::new(domain("here"), 8, 1000, Vec::new(), PeerTrust::none());
        let verify = || VerifyRequest { stream_id: "s".into(), key: "k".into(), waiter: Weak::new() };
        let allowed = (0..20)
            .filter(|i| s2s.request_verify(&domain("here"), &domain(&format!("x{i}.evil")), verify()).is_ok())
            .count();
        assert_eq!(allowed, max_verify_links(8));
        for i in 0..8 {
            s2s.send(&domain(&format!("real{i}.example")), b"m".to_vec(), None).unwrap();
        }
        assert_eq!(s2s.send(&domain("one-more.example"), b"m".to_vec(), None), Err(SendError::TooManyLinks));
        // A verify link that then carries a stanza moves to the stanza budget.
        assert_eq!(s2s.send(&domain("x0.evil"), b"m".to_vec(), None), Err(SendError::TooManyLinks));
    }

    #[test]
    fn bounce_swaps_addresses_and_keeps_the_id() {
        let b = bounce("x1").unwrap();
        let text = String::from_utf8(bounce_stanza(&b, &StanzaError::new(Condition::RemoteServerNotFound))).unwrap();
        assert!(text.starts_with("<message from='b@there' to='a@here/r' id='x1' type='error'>"), "{text}");
        assert!(text.contains("remote-server-not-found"), "{text}");
    }
}
