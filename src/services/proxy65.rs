//! XEP-0065 SOCKS5 Bytestreams proxy at `proxy65_domain` (§6): the streamhost
//! the hub offers its users (disco `proxy/bytestreams`, §6.3.1), the pairing of
//! the two SOCKS5 connections of one bytestream by their DST.ADDR (§6.3.2:
//! SHA-1 of SID, initiator and target JIDs), and activation by the initiator
//! (§6.3.3). The sockets and the relaying are `net::proxy65`'s.

use crate::hub::Hub;
use crate::jid::{Domain, Jid};
use crate::ns::{NS_INFO, NS_ITEMS};
use crate::stanza::{Condition, StanzaError};
use crate::xml::writer::XmlWriter;
use crate::xml::Element;
use async_io::Async;
use event_listener::Event;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::TcpStream;
use std::rc::Rc;

pub const NS_BYTESTREAMS: &str = "http://jabber.org/protocol/bytestreams";

/// The proxy's settings.
#[derive(Clone, Debug)]
pub struct Proxy65Config {
    pub domain: Domain,
    pub listen: Vec<std::net::SocketAddr>,
    /// The host clients are told to connect to ("" = the listener's address, or
    /// the domain for a wildcard listener).
    pub host: String,
    pub max_connections: usize,
    /// Bytes per second each way of one bytestream (0: no limit).
    pub rate: u32,
    pub idle_timeout: std::time::Duration,
}

/// The two connections of one bytestream, from their first until activation.
pub struct Pair {
    pub streams: RefCell<Vec<Rc<Async<TcpStream>>>>,
    pub activated: Cell<bool>,
    pub wake: Event,
    /// Last data either way (the idle timeout is the pair's, not a direction's).
    pub last_activity: Cell<std::time::Instant>,
}

/// The proxy service.
pub struct Proxy65 {
    pub config: Proxy65Config,
    /// `host:port` of the streamhost.
    host: String,
    port: u16,
    /// Pairs waiting for activation, by DST.ADDR (lower-case hex).
    waiting: RefCell<HashMap<String, Rc<Pair>>>,
    /// SOCKS5 connections open now (`max_connections`).
    pub open: Cell<usize>,
}

impl Proxy65 {
    pub fn new(config: Proxy65Config, host: String, port: u16) -> Proxy65 {
        Proxy65 { config, host, port, waiting: RefCell::new(HashMap::new()), open: Cell::new(0) }
    }

    pub fn domain(&self) -> &Domain {
        &self.config.domain
    }

    /// A connection asked for `addr`: its pair (the first or the second of it);
    /// `None` when the pair is complete already.
    pub fn join(&self, addr: &str, stream: Rc<Async<TcpStream>>) -> Option<Rc<Pair>> {
        let mut waiting = self.waiting.borrow_mut();
        let pair = waiting.entry(addr.to_string()).or_insert_with(|| {
            Rc::new(Pair {
                streams: RefCell::new(Vec::with_capacity(2)),
                activated: Cell::new(false),
                wake: Event::new(),
                last_activity: Cell::new(std::time::Instant::now()),
            })
        });
        if pair.streams.borrow().len() >= 2 {
            return None;
        }
        pair.streams.borrow_mut().push(stream);
        Some(Rc::clone(pair))
    }

    /// A connection gave up before activation.
    pub fn leave(&self, addr: &str, pair: &Rc<Pair>, stream: &Rc<Async<TcpStream>>) {
        pair.streams.borrow_mut().retain(|s| !Rc::ptr_eq(s, stream));
        let mut waiting = self.waiting.borrow_mut();
        if pair.streams.borrow().is_empty() && waiting.get(addr).is_some_and(|p| Rc::ptr_eq(p, pair)) {
            waiting.remove(addr);
        }
    }

    /// A stanza for the proxy from `from` (as its stream checked it).
    pub fn handle(&self, hub: &Hub<'_>, from: &str, stanza: &Element<'_>) {
        let Ok(sender) = from.parse::<Jid>() else { return };
        let to = self.domain().as_str();
        let kind = stanza.attr("type");
        if stanza.name() != "iq" || !matches!(kind.as_deref(), Some("get") | Some("set")) {
            return;
        }
        let Some(payload) = stanza.children().next() else { return };
        let mut body = Vec::new();
        let result = match (kind.as_deref(), payload.ns(), payload.name()) {
            (Some("get"), NS_INFO, "query") if payload.attr("node").is_none() => {
                super::write_info(&mut body, ("proxy", "bytestreams", "File proxy"), &[NS_BYTESTREAMS], &[]);
                Ok(())
            }
            (Some("get"), NS_ITEMS, "query") => {
                XmlWriter::new(&mut body).empty_ns("query", NS_ITEMS);
                Ok(())
            }
            (_, NS_BYTESTREAMS, "query") if sender.domain() != hub.domain.as_str() => {
                Err(StanzaError::with_text(Condition::Forbidden, "the proxy is for the hub's own users"))
            }
            // §6.3.1: the streamhost.
            (Some("get"), NS_BYTESTREAMS, "query") => {
                let mut w = XmlWriter::new(&mut body);
                w.start("query").attr("xmlns", NS_BYTESTREAMS).open();
                w.start("streamhost").attr("jid", to).attr("host", &self.host).attr("port", &self.port.to_string());
                w.close_empty();
                w.end("query");
                Ok(())
            }
            // §6.3.3: activation by the initiator.
            (Some("set"), NS_BYTESTREAMS, "query") => self.activate(from, &payload),
            _ => Err(StanzaError::new(Condition::ServiceUnavailable)),
        };
        hub.push_from_service(self.domain(), from, super::muc::iq_reply(stanza, to, from, result, &body));
    }

    fn activate(&self, initiator: &str, query: &Element<'_>) -> Result<(), StanzaError> {
        let sid = query.attr("sid").map(|s| s.to_string()).unwrap_or_default();
        let target = query.child("activate", NS_BYTESTREAMS).map(|a| a.text().trim().to_string()).unwrap_or_default();
        let Ok(target) = target.parse::<Jid>() else {
            return Err(StanzaError::with_text(Condition::BadRequest, "activate names the target's JID"));
        };
        if sid.is_empty() {
            return Err(StanzaError::with_text(Condition::BadRequest, "the query needs the bytestream's sid"));
        }
        let addr = dst_addr(&sid, initiator, target.as_str());
        let pair = self.waiting.borrow_mut().remove(&addr);
        match pair {
            Some(pair) if pair.streams.borrow().len() == 2 => {
                pair.activated.set(true);
                pair.last_activity.set(std::time::Instant::now());
                pair.wake.notify(usize::MAX);
                log::info!("proxy65: bytestream {sid} from {initiator} to {target} activated");
                Ok(())
            }
            Some(pair) => {
                self.waiting.borrow_mut().insert(addr, pair);
                Err(StanzaError::with_text(Condition::ItemNotFound, "the target has not connected to the proxy"))
            }
            None => Err(StanzaError::with_text(Condition::ItemNotFound, "no connection for this bytestream")),
        }
    }
}

/// §5.3.2: the DST.ADDR of a bytestream: SHA-1 of SID, initiator and target JIDs,
/// in lower-case hex.
pub fn dst_addr(sid: &str, initiator: &str, target: &str) -> String {
    let digest =
        ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, format!("{sid}{initiator}{target}").as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dst_addr_is_the_xeps_hash() {
        // XEP-0065's example JIDs; `printf %s SIDJIDJID | sha1sum`.
        let addr = dst_addr("vxf9n471bn46", "requester@example.com/foo", "target@example.org/bar");
        assert_eq!(addr, "98b8d688d0f5d895fd41c5e7309a2e9e33ba32ff");
    }
}
