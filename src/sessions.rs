//! Bound client sessions (RFC 6120 §7): the registry the router looks recipients
//! up in, and each session's bounded outbound queue. A reader that stops reading
//! fills only its own queue; past `c2s_queue_size` a new stanza for it is refused
//! (the sender gets `resource-constraint`, REVIEW S5) while the recipient stays
//! connected; its connection ends only when a write makes no progress for
//! `write_timeout`. Nothing else slows down.

use crate::config::ResourceConflict;
use crate::jid::{BareJid, FullJid};
use crate::stream::{StreamCondition, StreamError};
use event_listener::{Event, EventListener};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

/// A bounded outbound queue with a wake-up for the task that writes it, and a
/// close request. Sessions and component links each have one.
pub struct Outbox {
    queue: RefCell<VecDeque<Box<[u8]>>>,
    queued_bytes: Cell<usize>,
    /// Bytes its owner holds elsewhere against the same limit (a session's
    /// unacknowledged stanzas, XEP-0198).
    held: Cell<usize>,
    /// The client said it is inactive (XEP-0352): what is not urgent waits.
    inactive: Cell<bool>,
    /// Queued items that are urgent (see [`urgent`]).
    urgent_queued: Cell<usize>,
    limit: usize,
    wake: Event,
    closing: RefCell<Option<StreamError>>,
}

/// A session's last available presence and when it was sent: whoever gets it
/// later (a probe's answer) learns its age (XEP-0203).
#[derive(Clone, Debug)]
pub struct LastPresence {
    pub bytes: Box<[u8]>,
    /// Seconds since the Unix epoch.
    pub sent_at: u64,
}

/// One bound session, as others see it.
pub struct Session {
    pub jid: FullJid,
    outbox: Outbox,
    /// The priority of the session's last available presence (RFC 6121 §4.7.2.3);
    /// `None` until it sends initial presence, and after unavailable presence.
    pub priority: Cell<Option<i8>>,
    /// The session requested the roster: it gets roster pushes (RFC 6121 §2.1.6).
    pub roster_interested: Cell<bool>,
    /// The last available presence it broadcast, re-emitted without `to` (for
    /// probes, RFC 6121 §4.3.2).
    pub last_presence: RefCell<Option<LastPresence>>,
    /// Who got directed presence from it and must get unavailable presence when it
    /// goes offline (RFC 6121 §4.6.3); at most [`MAX_DIRECTED`] entries.
    pub directed: RefCell<Vec<Box<str>>>,
    /// The offline batch sent to this session and not yet acknowledged (XEP-0160).
    pub offline_batch: RefCell<Option<OfflineBatch>>,
    /// XEP-0280 carbons are enabled.
    pub carbons: Cell<bool>,
    /// XEP-0198 stream management, once enabled: it outlives the connection.
    pub sm: RefCell<Option<crate::stream::sm::SmState>>,
    /// Which connection serves the session: a resumption moves it to a new one
    /// (and the old one, if still open, ends with `conflict`).
    pub connection: Cell<u32>,
    /// No connection serves it now: it waits to be resumed (XEP-0198 §5).
    pub hibernating: Cell<bool>,
    /// The session requested the blocklist: it gets blocklist pushes (XEP-0191).
    pub blocklist_interested: Cell<bool>,
    /// The XEP-0115 verification string of its last available presence (PEP's
    /// `+notify` filter, XEP-0163 §4.3).
    pub caps: RefCell<Option<Rc<str>>>,
    /// The `<status/>` of the unavailable presence it sent, for XEP-0012 once the
    /// account's last session is gone.
    pub unavailable_status: RefCell<Option<Box<str>>>,
}

/// Offline messages sent to a session, waiting for the answer to the ping after
/// them (`id`) before they leave the store.
#[derive(Debug)]
pub struct OfflineBatch {
    pub id: String,
    pub seqs: Vec<u64>,
    /// The last sequence number of the batch: the next batch starts after it.
    pub last: u64,
}

/// Whether a queued stanza (wrenhub's own re-emitted bytes) must reach a client
/// that said it is inactive (XEP-0352) now: anything but presence updates and
/// messages without a body (chat states, receipts, markers). A subscription
/// request, an iq, a message with a body (or a carbon of one) is urgent.
fn urgent(bytes: &[u8]) -> bool {
    let tag_end = bytes.iter().position(|&b| b == b'>').unwrap_or(bytes.len());
    let tag = &bytes[..tag_end];
    let has = |needle: &[u8], hay: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    if tag.starts_with(b"<presence") {
        return [&b"'subscribe'"[..], b"'subscribed'", b"'unsubscribe'", b"'unsubscribed'", b"'error'"]
            .iter()
            .any(|t| has(t, tag));
    }
    if tag.starts_with(b"<message") {
        return has(b"<body", bytes) || has(b"type='error'", tag);
    }
    true
}

/// The `from` of a presence update (the key XEP-0352 buffering keeps one per).
fn presence_from(bytes: &[u8]) -> Option<&[u8]> {
    if !bytes.starts_with(b"<presence") {
        return None;
    }
    let tag_end = bytes.iter().position(|&b| b == b'>')?;
    let tag = &bytes[..tag_end];
    let start = tag.windows(6).position(|w| w == b"from='")? + 6;
    let len = tag[start..].iter().position(|&b| b == b'\'')?;
    Some(&tag[start..start + len])
}

/// Directed-presence recipients tracked per session.
pub const MAX_DIRECTED: usize = 64;

/// The queue is full (or its owner is closing): the stanza was not queued.
#[derive(Debug, PartialEq, Eq)]
pub struct QueueFull;

impl Outbox {
    pub fn new(limit: usize) -> Outbox {
        Outbox {
            queue: RefCell::new(VecDeque::new()),
            queued_bytes: Cell::new(0),
            held: Cell::new(0),
            inactive: Cell::new(false),
            urgent_queued: Cell::new(0),
            limit,
            wake: Event::new(),
            closing: RefCell::new(None),
        }
    }

    /// Queues bytes; over the limit they are refused and the caller answers for
    /// them (a bounce), the owner is not disturbed.
    pub fn push(&self, bytes: Vec<u8>) -> Result<(), QueueFull> {
        if self.closing.borrow().is_some() {
            return Err(QueueFull);
        }
        let is_urgent = urgent(&bytes);
        if self.inactive.get() && !is_urgent {
            self.drop_superseded_presence(&bytes);
        }
        let total = self.queued_bytes.get() + bytes.len();
        if total + self.held.get() > self.limit {
            return Err(QueueFull);
        }
        self.queued_bytes.set(total);
        self.queue.borrow_mut().push_back(bytes.into_boxed_slice());
        if is_urgent {
            self.urgent_queued.set(self.urgent_queued.get() + 1);
        }
        self.wake.notify(1);
        Ok(())
    }

    /// XEP-0352: of the presence an inactive client has not been sent yet, only
    /// the latest from each sender matters.
    fn drop_superseded_presence(&self, bytes: &[u8]) {
        let Some(from) = presence_from(bytes) else { return };
        let mut queue = self.queue.borrow_mut();
        let before = queue.len();
        let mut freed = 0;
        queue.retain(|item| {
            let superseded = !urgent(item) && presence_from(item) == Some(from);
            if superseded {
                freed += item.len();
            }
            !superseded
        });
        if queue.len() != before {
            self.queued_bytes.set(self.queued_bytes.get() - freed);
        }
    }

    /// XEP-0352 `<inactive/>` (true) or `<active/>` (false).
    pub fn set_inactive(&self, inactive: bool) {
        self.inactive.set(inactive);
        if !inactive {
            self.wake.notify(usize::MAX);
        }
    }

    /// Is anything queued that should be written now? For an inactive client:
    /// only once something urgent is queued (then all of it goes, in order) or
    /// half the queue is used.
    fn ready(&self) -> bool {
        self.has_queued()
            && (!self.inactive.get()
                || self.urgent_queued.get() > 0
                || self.queued_bytes.get() + self.held.get() >= self.limit / 2)
    }

    /// Moves everything queued into `out`.
    pub fn drain_into(&self, out: &mut Vec<u8>) {
        let mut queue = self.queue.borrow_mut();
        for item in queue.drain(..) {
            out.extend_from_slice(&item);
        }
        self.queued_bytes.set(0);
        self.urgent_queued.set(0);
        if queue.capacity() > 16 {
            *queue = VecDeque::new();
        }
    }

    /// Takes every queued item (a session that ends re-routes them, D1).
    pub fn take_all(&self) -> Vec<Box<[u8]>> {
        self.queued_bytes.set(0);
        self.urgent_queued.set(0);
        std::mem::take(&mut *self.queue.borrow_mut()).into()
    }

    pub fn has_queued(&self) -> bool {
        !self.queue.borrow().is_empty()
    }

    /// Asks the owning task to end the stream with this error.
    pub fn close_with(&self, error: StreamError) {
        let mut closing = self.closing.borrow_mut();
        if closing.is_none() {
            *closing = Some(error);
        }
        self.wake.notify(1);
    }

    pub fn take_close(&self) -> Option<StreamError> {
        self.closing.borrow_mut().take()
    }

    pub fn closing(&self) -> bool {
        self.closing.borrow().is_some()
    }

    /// Resolves when something is queued or a close is asked for.
    pub fn listen(&self) -> EventListener {
        self.wake.listen()
    }

    /// What the writing task takes before it writes: a close request wins,
    /// otherwise everything queued moves into `out`.
    pub fn take_close_or_drain(&self, out: &mut Vec<u8>) -> Option<StreamError> {
        let close = self.take_close();
        if close.is_none() && self.ready() {
            self.drain_into(out);
        }
        close
    }

    /// A listener for the next push, or `None` when something is already waiting
    /// (pushed before the listener existed), so the task must not sleep.
    pub fn listen_if_idle(&self) -> Option<EventListener> {
        let listener = self.listen();
        (!self.ready() && !self.closing()).then_some(listener)
    }
}

impl std::ops::Deref for Session {
    type Target = Outbox;
    fn deref(&self) -> &Outbox {
        &self.outbox
    }
}

impl Session {
    fn new(jid: FullJid, limit: usize) -> Session {
        Session {
            jid,
            outbox: Outbox::new(limit),
            priority: Cell::new(None),
            roster_interested: Cell::new(false),
            last_presence: RefCell::new(None),
            directed: RefCell::new(Vec::new()),
            caps: RefCell::new(None),
            offline_batch: RefCell::new(None),
            carbons: Cell::new(false),
            blocklist_interested: Cell::new(false),
            sm: RefCell::new(None),
            connection: Cell::new(0),
            hibernating: Cell::new(false),
            unavailable_status: RefCell::new(None),
        }
    }

    /// Keeps what is about to be written in `out` until the client acknowledges
    /// it (stream management enabled); true when it should be asked to now.
    pub fn sm_sending(&self, out: &[u8]) -> bool {
        let mut sm = self.sm.borrow_mut();
        let Some(sm) = sm.as_mut() else { return false };
        let ask = sm.record_sent(out);
        self.outbox.held.set(sm.unacked_bytes());
        ask
    }

    /// The client's `h`.
    /// The client's `h`. Returns the id of the offline batch (XEP-0160) whose
    /// closing ping it acknowledged: the client has the whole batch.
    pub fn sm_ack(&self, h: u32) -> Result<Option<String>, crate::stream::sm::TooHigh> {
        let batch = self.offline_batch.borrow().as_ref().map(|b| b.id.clone());
        let needle = batch.as_ref().map(|id| format!("id='{id}'")).unwrap_or_default();
        let mut sm = self.sm.borrow_mut();
        let Some(sm) = sm.as_mut() else { return Ok(None) };
        let result = sm.ack_watching(h, needle.as_bytes());
        self.outbox.held.set(sm.unacked_bytes());
        Ok(result?.then_some(batch).flatten())
    }

    /// The unacknowledged stanzas, taken (the session expires). An offline batch
    /// the client never acknowledged is left out: it is still in the store.
    pub fn sm_take_unacked(&self) -> Vec<Box<[u8]>> {
        self.outbox.held.set(0);
        let batch = self.offline_batch.borrow_mut().take();
        let mut sm = self.sm.borrow_mut();
        let Some(sm) = sm.as_mut() else { return Vec::new() };
        if let Some(b) = batch {
            sm.forget_through(format!("id='{}'", b.id).as_bytes(), b.seqs.len());
        }
        sm.take_unacked()
    }

    /// Moves the session to a new connection: the old one, if open, hears of it.
    pub fn move_to_new_connection(&self) -> u32 {
        let n = self.connection.get().wrapping_add(1);
        self.connection.set(n);
        self.hibernating.set(false);
        // XEP-0352 state belongs to a stream: a resumed one starts active.
        self.outbox.inactive.set(false);
        self.outbox.wake.notify(usize::MAX);
        n
    }

    /// A session for a remote sender, never registered: lets the iq handlers
    /// answer a remote entity the way they answer a local one.
    pub fn detached(jid: FullJid) -> Session {
        Session::new(jid, 0)
    }

    pub fn available(&self) -> bool {
        self.priority.get().is_some()
    }
}

/// Why a bind failed (RFC 6120 §7.6.2).
#[derive(Debug, PartialEq, Eq)]
pub enum BindError {
    /// `max_resources_per_account` reached.
    ResourceConstraint,
    /// The resource is connected and the policy refuses the new one.
    Conflict,
}

/// Every bound session, by account.
pub struct Registry {
    accounts: RefCell<HashMap<BareJid, Vec<Rc<Session>>>>,
    max_per_account: usize,
    conflict: ResourceConflict,
    queue_limit: usize,
}

impl Registry {
    pub fn new(max_per_account: usize, conflict: ResourceConflict, queue_limit: usize) -> Registry {
        Registry { accounts: RefCell::new(HashMap::new()), max_per_account, conflict, queue_limit }
    }

    /// Binds a full JID (§7.6.1). With the takeover policy an existing session of
    /// the same resource is told to close with `conflict` (§7.7.2.2).
    pub fn bind(&self, jid: FullJid) -> Result<Rc<Session>, BindError> {
        let bare = jid.to_bare();
        let mut accounts = self.accounts.borrow_mut();
        let sessions = accounts.entry(bare).or_default();
        if let Some(i) = sessions.iter().position(|s| s.jid == jid) {
            match self.conflict {
                ResourceConflict::Refuse => return Err(BindError::Conflict),
                ResourceConflict::Takeover => {
                    let old = sessions.remove(i);
                    old.close_with(StreamError::with_text(
                        StreamCondition::Conflict,
                        "another session bound the same resource",
                    ));
                }
            }
        }
        if sessions.len() >= self.max_per_account {
            return Err(BindError::ResourceConstraint);
        }
        let session = Rc::new(Session::new(jid, self.queue_limit));
        sessions.push(Rc::clone(&session));
        Ok(session)
    }

    /// Removes a session (if it is still the one bound to its JID).
    pub fn unbind(&self, session: &Rc<Session>) {
        let bare = session.jid.to_bare();
        let mut accounts = self.accounts.borrow_mut();
        if let Some(sessions) = accounts.get_mut(&bare) {
            sessions.retain(|s| !Rc::ptr_eq(s, session));
            if sessions.is_empty() {
                accounts.remove(&bare);
            }
        }
    }

    pub fn get(&self, jid: &FullJid) -> Option<Rc<Session>> {
        let accounts = self.accounts.borrow();
        accounts.get(&jid.to_bare())?.iter().find(|s| s.jid == *jid).cloned()
    }

    /// The sessions of an account.
    pub fn sessions(&self, bare: &BareJid) -> Vec<Rc<Session>> {
        self.accounts.borrow().get(bare).cloned().unwrap_or_default()
    }

    /// Ends every session of an account (e.g. the account was deleted).
    pub fn close_account(&self, bare: &BareJid, error: StreamError) -> usize {
        let sessions = self.sessions(bare);
        for s in &sessions {
            s.close_with(error.clone());
        }
        sessions.len()
    }

    pub fn len(&self) -> usize {
        self.accounts.borrow().values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_an_inactive_client_gets_at_once_is_what_is_urgent() {
        assert!(!urgent(b"<presence from='a@b/c'><show>away</show></presence>"));
        assert!(urgent(b"<presence from='a@b' to='d@e' type='subscribe'/>"));
        assert!(!urgent(b"<message from='a@b/c' type='chat'><composing xmlns='x'/></message>"));
        assert!(urgent(b"<message from='a@b/c'><body>hi</body></message>"));
        assert!(urgent(b"<message from='a@b'><received xmlns='urn:xmpp:carbons:2'><forwarded><message><body>hi</body></message></forwarded></received></message>"));
        assert!(urgent(b"<iq type='set' id='1'/>"));
        assert_eq!(presence_from(b"<presence from='a@b/c'/>"), Some(&b"a@b/c"[..]));
        let outbox = Outbox::new(1000);
        outbox.set_inactive(true);
        outbox.push(b"<presence from='a@b/c'><show>away</show></presence>".to_vec()).unwrap();
        outbox.push(b"<presence from='a@b/c'><show>dnd</show></presence>".to_vec()).unwrap();
        assert!(!outbox.ready() && outbox.queue.borrow().len() == 1, "only the latest waits");
        outbox.push(b"<message from='a@b/c'><body>hi</body></message>".to_vec()).unwrap();
        let mut out = Vec::new();
        assert!(outbox.ready());
        outbox.drain_into(&mut out);
        assert!(out.starts_with(b"<presence from='a@b/c'><show>dnd</show>"));
    }

    fn jid(s: &str) -> FullJid {
        s.parse().unwrap()
    }

    #[test]
    fn bind_limits_and_takeover() {
        let reg = Registry::new(2, ResourceConflict::Takeover, 100);
        let a = reg.bind(jid("u@d/a")).unwrap();
        let _b = reg.bind(jid("u@d/b")).unwrap();
        assert_eq!(reg.bind(jid("u@d/c")).err(), Some(BindError::ResourceConstraint));
        let a2 = reg.bind(jid("u@d/a")).unwrap();
        assert_eq!(a.take_close().map(|e| e.condition), Some(StreamCondition::Conflict));
        assert!(Rc::ptr_eq(&reg.get(&jid("u@d/a")).unwrap(), &a2));
        reg.unbind(&a); // the old session's unbind does not remove the new one
        assert_eq!(reg.len(), 2);
        let refuse = Registry::new(2, ResourceConflict::Refuse, 100);
        let _x = refuse.bind(jid("u@d/a")).unwrap();
        assert_eq!(refuse.bind(jid("u@d/a")).err(), Some(BindError::Conflict));
    }

    #[test]
    fn a_full_queue_refuses_the_new_stanza_and_keeps_its_owner() {
        let reg = Registry::new(2, ResourceConflict::Takeover, 10);
        let s = reg.bind(jid("u@d/a")).unwrap();
        s.push(b"12345".to_vec()).unwrap();
        s.push(b"67890".to_vec()).unwrap();
        assert_eq!(s.push(b"x".to_vec()), Err(QueueFull));
        assert_eq!(s.take_close(), None, "the recipient is not closed for it");
        let mut out = Vec::new();
        s.drain_into(&mut out);
        assert_eq!(out, b"1234567890");
        s.push(b"x".to_vec()).unwrap();
    }
}
