//! The one context every protocol core gets (REVIEW A4): what the server holds
//! that routing and the handlers use, borrowed for one event. Streams add their
//! own few fields (the peer, the TLS bindings) around it; nothing else rebuilds
//! these references.
//!
//! It also holds the address table (REVIEW A5): [`Hub::address`] is the one place
//! that says where a domain's stanzas go.

use crate::components::{ComponentRegistry, Link};
use crate::config::ComponentConfig;
use crate::handlers::ImLimits;
use crate::jid::{within, Domain};
use crate::s2s::S2s;
use crate::sessions::Registry;
use crate::store::Store;
use std::rc::Rc;

/// What the server holds, borrowed.
#[derive(Clone, Copy)]
pub struct Hub<'a> {
    pub domain: &'a Domain,
    pub store: &'a Store,
    /// Bound sessions.
    pub registry: &'a Registry,
    pub limits: ImLimits,
    /// Connected external components (XEP-0114).
    pub components: &'a ComponentRegistry,
    /// Components the config names, connected or not.
    pub configured_components: &'a [ComponentConfig],
    /// Federation, when enabled.
    pub s2s: Option<&'a S2s>,
    /// The group-chat service (XEP-0045), unless turned off.
    pub muc: Option<&'a crate::services::muc::Muc>,
    /// The user directory (XEP-0055), unless turned off.
    pub directory: Option<&'a crate::services::directory::Directory>,
    /// PEP's state (the caps cache).
    pub pep: &'a crate::services::pep::Pep,
    /// The message archive (XEP-0313), unless turned off.
    pub mam: Option<&'a crate::services::mam::Mam>,
    /// STUN and TURN servers (XEP-0215).
    pub external: &'a crate::services::extdisco::ExternalServices,
    /// The SOCKS5 bytestreams proxy (XEP-0065), when it listens.
    pub proxy65: Option<&'a crate::services::proxy65::Proxy65>,
    /// HTTP file upload (XEP-0363), unless turned off.
    pub upload: Option<&'a crate::services::upload::Upload>,
}

/// Where the stanzas for a domain go (RFC 6120 §8.5.1 / §8.5.2).
pub enum Address {
    /// The server's own domain: its accounts, and the server itself.
    Accounts,
    /// The built-in group-chat service (`muc_domain`).
    Muc,
    /// The built-in user directory (`directory_domain`).
    Directory,
    /// The built-in upload service (`upload_domain`).
    Upload,
    /// The built-in bytestreams proxy (`proxy65_domain`).
    Proxy65,
    /// A connected external component serves it (or a parent of it).
    Component(Rc<Link>),
    /// A configured component that is not connected now.
    ComponentAbsent,
    /// Another server's domain, over federation.
    Remote(Domain),
    /// Not a domain anything could serve (not a valid domain part).
    Nowhere,
}

impl Hub<'_> {
    /// The address table: the server's domain, then connected components, then
    /// configured ones, then federation.
    pub fn address(&self, domain: &str) -> Address {
        if domain == self.domain.as_str() {
            return Address::Accounts;
        }
        if self.muc.is_some_and(|m| m.domain().as_str() == domain) {
            return Address::Muc;
        }
        if self.directory.is_some_and(|d| d.domain().as_str() == domain) {
            return Address::Directory;
        }
        if self.upload.is_some_and(|u| u.domain().as_str() == domain) {
            return Address::Upload;
        }
        if self.proxy65.is_some_and(|p| p.domain().as_str() == domain) {
            return Address::Proxy65;
        }
        if let Some(link) = self.components.serving(domain) {
            return Address::Component(link);
        }
        if self.configured_components.iter().any(|c| within(domain, c.domain.as_str())) {
            return Address::ComponentAbsent;
        }
        match domain.parse::<Domain>() {
            Ok(d) => Address::Remote(d),
            Err(_) => Address::Nowhere,
        }
    }

    /// Is `domain` served here (ours, a built-in service's, or exactly a
    /// configured component's)? An inbound s2s stream may ask for these.
    pub fn serves(&self, domain: &str) -> bool {
        domain == self.domain.as_str()
            || self.muc.is_some_and(|m| m.domain().as_str() == domain)
            || self.directory.is_some_and(|d| d.domain().as_str() == domain)
            || self.upload.is_some_and(|u| u.domain().as_str() == domain)
            || self.proxy65.is_some_and(|p| p.domain().as_str() == domain)
            || self.configured_components.iter().any(|c| c.domain.as_str() == domain)
    }

    /// Sends a stanza that needs no answer (presence, a PEP event) to another
    /// domain: over federation, to the gateway or built-in service that serves it.
    /// True when `domain` is not the accounts' (sent, or dropped by a full queue:
    /// such stanzas are never bounced back).
    pub fn send_to_domain(&self, domain: &str, bytes: &[u8]) -> bool {
        match self.address(domain) {
            Address::Accounts => false,
            Address::Remote(d) => {
                if let Some(s2s) = self.s2s {
                    if let Err(e) = s2s.send(&d, bytes.to_vec(), None) {
                        log::debug!("a stanza to {domain} not sent: {e:?}");
                    }
                }
                true
            }
            Address::Component(link) => {
                let _ = link.push(bytes.to_vec());
                true
            }
            Address::Muc => {
                if let Some(muc) = self.muc {
                    muc.handle_bytes(self, bytes);
                }
                true
            }
            // The directory and the upload service take none of these.
            Address::Directory | Address::Upload | Address::Proxy65 | Address::ComponentAbsent | Address::Nowhere => {
                true
            }
        }
    }
}
