//! XEP-0198 stream management (v1.6): the counters and the unacknowledged queue
//! of one session. It lives in the session, not the connection, so that a
//! session whose connection dropped can be resumed with nothing lost or sent
//! twice. Pure data: the c2s stream and its connection drive it.
//!
//! Counting what is sent: the connection hands every buffer it is about to
//! write to [`SmState::record_sent`], which finds the stanzas in it. That output
//! is wrenhub's own (every stanza is re-emitted by its writer, which escapes `<`
//! and `>` in attribute values and `<` in text, writes no comments, CDATA or
//! processing instructions), so a scan for tags finds the top-level elements
//! exactly.

use crate::xml::writer::XmlWriter;
use std::collections::VecDeque;

pub const NS_SM: &str = "urn:xmpp:sm:3";

/// Ask the client for an ack once this many stanzas are unacknowledged.
const REQUEST_EVERY: usize = 8;

/// One session's stream management.
#[derive(Debug, Default)]
pub struct SmState {
    /// The resumption id (`<enabled id>`), when resumption was asked for.
    pub id: Option<Box<str>>,
    /// Stanzas handled from the client (our `h`), modulo 2^32.
    pub handled: u32,
    /// The client's last `h`: stanzas it acknowledged, modulo 2^32.
    pub acked: u32,
    /// Sent and not yet acknowledged, oldest first.
    unacked: VecDeque<Box<[u8]>>,
    unacked_bytes: usize,
    /// Where counting starts in the next buffer handed to `record_sent` (what
    /// the buffer held before `<enabled/>` or `<resumed/>` is not counted).
    pub count_from: usize,
    /// An `<r/>` was sent and its `<a/>` has not come yet.
    requested: bool,
    /// Since when the oldest stanza not covered by an ack has waited.
    unacked_since: Option<std::time::Instant>,
}

/// The client acknowledged more than was sent (XEP-0198 §4, `handled-count-too-high`).
#[derive(Debug, PartialEq, Eq)]
pub struct TooHigh {
    pub h: u32,
    pub sent: u32,
}

impl SmState {
    pub fn new(id: Option<Box<str>>) -> SmState {
        SmState { id, ..SmState::default() }
    }

    /// Stanzas sent so far, modulo 2^32.
    pub fn sent(&self) -> u32 {
        self.acked.wrapping_add(self.unacked.len() as u32)
    }

    pub fn unacked_bytes(&self) -> usize {
        self.unacked_bytes
    }

    pub fn unacked(&self) -> impl Iterator<Item = &[u8]> {
        self.unacked.iter().map(|s| &s[..])
    }

    /// Takes the unacknowledged stanzas (the session expires: they are routed
    /// again).
    pub fn take_unacked(&mut self) -> Vec<Box<[u8]>> {
        self.unacked_bytes = 0;
        std::mem::take(&mut self.unacked).into()
    }

    /// Keeps a copy of each stanza in `out[count_from..]`; true when the client
    /// should be asked for an ack now.
    pub fn record_sent(&mut self, out: &[u8]) -> bool {
        let from = std::mem::take(&mut self.count_from).min(out.len());
        for stanza in stanzas(&out[from..]) {
            self.unacked_bytes += stanza.len();
            self.unacked.push_back(stanza.into());
        }
        if !self.unacked.is_empty() && self.unacked_since.is_none() {
            self.unacked_since = Some(std::time::Instant::now());
        }
        let ask = !self.requested && self.unacked.len() >= REQUEST_EVERY;
        if ask {
            self.requested = true;
        }
        ask
    }

    /// The client's `<a h/>` (or the `h` of its `<resume/>`): what it has is
    /// dropped from the queue.
    pub fn ack(&mut self, h: u32) -> Result<(), TooHigh> {
        self.ack_watching(h, b"").map(|_| ())
    }

    /// [`SmState::ack`], telling whether one of the stanzas acknowledged now
    /// contains `needle` (empty: never).
    pub fn ack_watching(&mut self, h: u32, needle: &[u8]) -> Result<bool, TooHigh> {
        let newly = h.wrapping_sub(self.acked) as usize;
        if newly > self.unacked.len() {
            return Err(TooHigh { h, sent: self.sent() });
        }
        let mut seen = false;
        for _ in 0..newly {
            if let Some(s) = self.unacked.pop_front() {
                self.unacked_bytes -= s.len();
                seen |= !needle.is_empty() && s.windows(needle.len()).any(|w| w == needle);
            }
        }
        self.acked = h;
        self.requested = false;
        self.unacked_since = (!self.unacked.is_empty()).then(std::time::Instant::now);
        Ok(seen)
    }

    /// When to ask for an ack if none comes (`delay` after the oldest stanza an
    /// ack does not cover was sent); `None` while a request is out or all is acked.
    pub fn ack_request_due(&self, delay: std::time::Duration) -> Option<std::time::Instant> {
        if self.requested {
            return None;
        }
        self.unacked_since.map(|since| since + delay)
    }

    /// An `<r/>` goes out now.
    pub fn mark_requested(&mut self) {
        self.requested = true;
    }

    /// Drops the unacknowledged stanzas that end with the one containing
    /// `needle`, `count` before it and itself (what is still in the store need not
    /// be routed again); false when it is not there.
    pub fn forget_through(&mut self, needle: &[u8], count: usize) -> bool {
        let Some(end) = self.unacked.iter().position(|s| s.windows(needle.len()).any(|w| w == needle)) else {
            return false;
        };
        let start = end.saturating_sub(count);
        for s in self.unacked.drain(start..=end) {
            self.unacked_bytes -= s.len();
        }
        true
    }
}

/// `<a xmlns='urn:xmpp:sm:3' h='…'/>`
pub fn write_ack(h: u32, out: &mut Vec<u8>) {
    XmlWriter::new(out).start("a").attr("xmlns", NS_SM).attr("h", &h.to_string()).close_empty();
}

/// `<r xmlns='urn:xmpp:sm:3'/>`
pub fn write_request(out: &mut Vec<u8>) {
    XmlWriter::new(out).start("r").attr("xmlns", NS_SM).close_empty();
}

/// `<failed xmlns='urn:xmpp:sm:3' [h]><condition/></failed>`
pub fn write_failed(condition: &str, h: Option<u32>, out: &mut Vec<u8>) {
    let mut w = XmlWriter::new(out);
    w.start("failed").attr("xmlns", NS_SM);
    if let Some(h) = h {
        w.attr("h", &h.to_string());
    }
    w.open().start(condition).attr("xmlns", crate::ns::NS_STANZAS).close_empty().end("failed");
}

/// The top-level `message`, `presence` and `iq` elements of wrenhub's own output.
pub fn stanzas(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut at = 0;
    std::iter::from_fn(move || loop {
        let start = at + bytes.get(at..)?.iter().position(|&b| b == b'<')?;
        let end = element_end(bytes, start)?;
        at = end;
        let name_end =
            bytes[start + 1..end].iter().position(|&b| matches!(b, b' ' | b'>' | b'/')).map(|n| start + 1 + n)?;
        if matches!(&bytes[start + 1..name_end], b"message" | b"presence" | b"iq") {
            return Some(&bytes[start..end]);
        }
    })
}

/// Where the element (or end tag, or stream header) starting at `start` ends.
pub(crate) fn element_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut at = start;
    loop {
        let lt = at + bytes.get(at..)?.iter().position(|&b| b == b'<')?;
        let gt = lt + bytes[lt..].iter().position(|&b| b == b'>')?;
        let tag = &bytes[lt + 1..gt];
        at = gt + 1;
        if tag.first() == Some(&b'/') {
            // An end tag; at depth 0 it closes something outside (the stream).
            if depth <= 1 {
                return Some(at);
            }
            depth -= 1;
        } else if tag.last() == Some(&b'/') || tag.first().is_some_and(|b| matches!(b, b'?' | b'!')) {
            if depth == 0 {
                return Some(at);
            }
        } else if tag.starts_with(b"stream:stream") {
            return Some(at);
        } else {
            depth += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stanzas_of_our_own_output_are_found_exactly() {
        let out = b"<enabled xmlns='urn:xmpp:sm:3'/><message from='a@b/c' to='d@e'><body>1 &lt; 2 &gt; 0</body>\
<x xmlns='y'><message/></x></message><r xmlns='urn:xmpp:sm:3'/><presence from='a@b/c'/>\
<iq type='result' id='1'/><stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>";
        let found: Vec<&[u8]> = stanzas(out).collect();
        assert_eq!(found.len(), 3);
        assert!(found[0].starts_with(b"<message from") && found[0].ends_with(b"</x></message>"));
        assert_eq!(found[1], b"<presence from='a@b/c'/>");
        assert_eq!(found[2], b"<iq type='result' id='1'/>");
        // A truncated buffer yields what is complete and no panic.
        for cut in 0..out.len() {
            let _ = stanzas(&out[..cut]).count();
        }
    }

    #[test]
    fn acks_drop_what_the_client_has_and_counters_wrap() {
        let mut sm = SmState::new(None);
        sm.acked = u32::MAX - 1;
        sm.record_sent(b"<message/><presence/><iq/>");
        assert_eq!(sm.sent(), 1, "u32::MAX - 1 + 3 wraps to 1");
        assert_eq!(sm.ack(u32::MAX), Ok(()));
        assert_eq!(sm.unacked().count(), 2);
        assert_eq!(sm.ack(2), Err(TooHigh { h: 2, sent: 1 }));
        assert_eq!(sm.ack(1), Ok(()));
        assert_eq!((sm.unacked().count(), sm.unacked_bytes()), (0, 0));
    }

    #[test]
    fn an_ack_says_whether_it_covered_a_watched_stanza_and_a_run_ending_in_one_can_be_forgotten() {
        let mut sm = SmState::new(None);
        sm.record_sent(b"<presence/><message>a</message><message>b</message><iq id='ping-1'/><message>c</message>");
        assert_eq!(sm.ack_watching(2, b"id='ping-1'"), Ok(false));
        assert_eq!(sm.ack_watching(4, b"id='ping-1'"), Ok(true));
        let mut sm = SmState::new(None);
        sm.record_sent(b"<presence/><message>a</message><message>b</message><iq id='ping-1'/><message>c</message>");
        assert!(sm.forget_through(b"id='ping-1'", 2));
        let left: Vec<&[u8]> = sm.unacked().collect();
        assert_eq!(left, vec![&b"<presence/>"[..], &b"<message>c</message>"[..]]);
        assert_eq!(sm.unacked_bytes(), left.iter().map(|s| s.len()).sum::<usize>());
        assert!(!sm.forget_through(b"id='ping-2'", 2));
    }

    #[test]
    fn the_client_is_asked_for_an_ack_once_per_batch() {
        let mut sm = SmState::new(None);
        let eight = b"<message/>".repeat(REQUEST_EVERY);
        assert!(sm.record_sent(&eight));
        assert!(!sm.record_sent(b"<message/>"), "one request until its answer");
        sm.ack(3).unwrap();
        assert!(!sm.record_sent(b"<message/>"), "7 unacknowledged");
        assert!(sm.record_sent(b"<message/>"), "8 again, after an answer");
    }
}
