//! Connected external components (XEP-0114): one link per configured domain, each
//! with a bounded outbound queue. A component serves its domain and every JID or
//! subdomain under it.

use crate::config::ResourceConflict;
use crate::jid::Domain;
use crate::sessions::Outbox;
use crate::stream::{StreamCondition, StreamError};
use std::cell::RefCell;
use std::rc::Rc;

/// A connected component, as the router sees it.
pub struct Link {
    pub domain: Domain,
    outbox: Outbox,
}

impl std::ops::Deref for Link {
    type Target = Outbox;
    fn deref(&self) -> &Outbox {
        &self.outbox
    }
}

/// The connected components.
pub struct ComponentRegistry {
    links: RefCell<Vec<Rc<Link>>>,
    conflict: ResourceConflict,
    queue_limit: usize,
}

impl ComponentRegistry {
    pub fn new(conflict: ResourceConflict, queue_limit: usize) -> ComponentRegistry {
        ComponentRegistry { links: RefCell::new(Vec::new()), conflict, queue_limit }
    }

    /// Registers a component that completed its handshake; `None` when the domain
    /// is connected and the policy refuses a second connection.
    pub fn connect(&self, domain: Domain) -> Option<Rc<Link>> {
        let mut links = self.links.borrow_mut();
        if let Some(i) = links.iter().position(|l| l.domain == domain) {
            match self.conflict {
                ResourceConflict::Refuse => return None,
                ResourceConflict::Takeover => {
                    let old = links.remove(i);
                    old.close_with(StreamError::with_text(
                        StreamCondition::Conflict,
                        "another connection for this component took over",
                    ));
                }
            }
        }
        let link = Rc::new(Link { domain, outbox: Outbox::new(self.queue_limit) });
        links.push(Rc::clone(&link));
        Some(link)
    }

    pub fn disconnect(&self, link: &Rc<Link>) {
        self.links.borrow_mut().retain(|l| !Rc::ptr_eq(l, link));
    }

    /// The component serving a domain (itself or a subdomain of its domain).
    pub fn serving(&self, domain: &str) -> Option<Rc<Link>> {
        self.links.borrow().iter().find(|l| crate::jid::within(domain, l.domain.as_str())).cloned()
    }

    /// The connected components' domains (for disco#items).
    pub fn domains(&self) -> Vec<String> {
        self.links.borrow().iter().map(|l| l.domain.as_str().to_string()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_and_subdomains_are_served_and_conflicts_follow_the_policy() {
        let reg = ComponentRegistry::new(ResourceConflict::Refuse, 100);
        let gw = reg.connect("gw.localhost".parse().unwrap()).unwrap();
        assert!(reg.serving("gw.localhost").is_some());
        assert!(reg.serving("rooms.gw.localhost").is_some());
        assert!(reg.serving("xgw.localhost").is_none());
        assert!(reg.connect("gw.localhost".parse().unwrap()).is_none());
        let take = ComponentRegistry::new(ResourceConflict::Takeover, 100);
        let first = take.connect("gw.localhost".parse().unwrap()).unwrap();
        let _second = take.connect("gw.localhost".parse().unwrap()).unwrap();
        assert_eq!(first.take_close().map(|e| e.condition), Some(StreamCondition::Conflict));
        reg.disconnect(&gw);
        assert!(reg.serving("gw.localhost").is_none());
    }
}
