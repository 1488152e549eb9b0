//! Group-chat bookmarks as one list for old and new clients: XEP-0402 §5.3
//! compatibility (`urn:xmpp:bookmarks:1#compat`; the XEP-0411 conversion,
//! `urn:xmpp:bookmarks-conversion:0`, turned toward XEP-0402). The PEP node
//! `urn:xmpp:bookmarks:1` (an item per room, whitelist) is the list; a client of
//! XEP-0048 sees it as the `<storage xmlns='storage:bookmarks'/>` document of
//! private XML storage (XEP-0049):
//! - reading the document builds it from the node's items, with the document's
//!   own `<url/>` bookmarks as it was stored;
//! - writing it sets the node's items to its rooms: new and changed rooms are
//!   published, missing ones retracted, with the notifications the account's
//!   resources want. A room's XEP-0402 `<extensions/>` survive a rewrite by an
//!   old client.

use super::node::{Access, Item, MaxItems, Node, NodeConfig, SendLast};
use super::{item_event, load, notify, retract_event, save, Ask};
use crate::jid::BareJid;
use crate::sessions::Session;
use crate::stanza::StanzaError;
use crate::xml::writer::{write_element, XmlWriter};
use crate::xml::Element;
use std::rc::Rc;

/// XEP-0402's node and namespace.
pub const NODE: &str = "urn:xmpp:bookmarks:1";
/// XEP-0048's namespace.
pub const NS_STORAGE: &str = "storage:bookmarks";

/// One bookmarked room, in either form.
#[derive(Debug, PartialEq, Eq)]
struct Conference {
    jid: String,
    name: Option<String>,
    autojoin: bool,
    nick: Option<String>,
    password: Option<String>,
    /// XEP-0402's `<extensions/>`, as published (the new form only).
    extensions: Option<Vec<u8>>,
}

fn is_true(v: Option<std::borrow::Cow<'_, str>>) -> bool {
    v.is_some_and(|v| matches!(&*v, "true" | "1"))
}

impl Conference {
    /// A `<conference/>` of either namespace; `jid` is the item id for XEP-0402.
    fn parse(el: &Element<'_>, jid: String) -> Conference {
        let text = |name: &str| el.child(name, el.ns()).map(|c| c.text().into_owned());
        let extensions = el.child("extensions", NODE).map(|x| {
            let mut b = Vec::new();
            write_element(&mut b, &x, NODE, None, &[]);
            b
        });
        Conference {
            jid,
            name: el.attr("name").map(|n| n.into_owned()),
            autojoin: is_true(el.attr("autojoin")),
            nick: text("nick"),
            password: text("password"),
            extensions,
        }
    }

    /// The same room as far as an old client can say.
    fn same_for_storage(&self, other: &Conference) -> bool {
        (&self.jid, &self.name, self.autojoin, &self.nick, &self.password)
            == (&other.jid, &other.name, other.autojoin, &other.nick, &other.password)
    }

    fn write(&self, ns: &str, out: &mut Vec<u8>) {
        let mut w = XmlWriter::new(out);
        w.start("conference");
        if ns == NODE {
            w.attr("xmlns", NODE);
        } else {
            w.attr("jid", &self.jid);
        }
        if let Some(name) = &self.name {
            w.attr("name", name);
        }
        if self.autojoin {
            w.attr("autojoin", "true");
        }
        w.open();
        if let Some(nick) = &self.nick {
            w.start("nick").open().text(nick).end("nick");
        }
        if let Some(password) = &self.password {
            w.start("password").open().text(password).end("password");
        }
        if let Some(x) = self.extensions.as_ref().filter(|_| ns == NODE) {
            out.extend_from_slice(x);
        }
        XmlWriter::new(out).end("conference");
    }
}

/// The rooms of the node's items.
fn conferences(node: &Node) -> Vec<Conference> {
    let mut rooms = Vec::with_capacity(node.items.len());
    for item in &node.items {
        crate::xml::for_each_stanza(&item.payload, |el| {
            if el.is("conference", NODE) {
                rooms.push(Conference::parse(el, item.id.to_string()));
            }
        });
    }
    rooms
}

/// What XEP-0402 §3 has a client create the node with.
fn node_config() -> NodeConfig {
    NodeConfig {
        access: Access::Whitelist,
        max_items: MaxItems::Max,
        send_last: SendLast::Never,
        ..NodeConfig::default()
    }
}

/// The XEP-0048 document for `owner`, when the node exists (otherwise private
/// storage answers with what it holds). `stored` is the document as last stored,
/// for its `<url/>` bookmarks.
pub fn as_storage(hub: &crate::hub::Hub<'_>, owner: &BareJid, stored: Option<&[u8]>) -> Option<Vec<u8>> {
    let node = load(hub, owner, NODE).ok().flatten()?;
    let mut out = Vec::with_capacity(128 + node.items.len() * 128);
    XmlWriter::new(&mut out).start("storage").attr("xmlns", NS_STORAGE).open();
    for room in conferences(&node) {
        room.write(NS_STORAGE, &mut out);
    }
    if let Some(stored) = stored {
        crate::xml::for_each_stanza(stored, |doc| {
            for url in doc.children().filter(|c| c.is("url", NS_STORAGE)) {
                write_element(&mut out, &url, NS_STORAGE, None, &[]);
            }
        });
    }
    XmlWriter::new(&mut out).end("storage");
    Some(out)
}

/// A XEP-0048 document was stored: the node's items become its rooms.
pub fn from_storage(
    hub: &crate::hub::Hub<'_>,
    sender: &Rc<Session>,
    storage: &Element<'_>,
    pushes: &mut Vec<u8>,
) -> Result<(), StanzaError> {
    let owner = sender.jid.to_bare();
    let ask = Ask { owner: owner.clone(), requester: owner.clone(), sender };
    let wanted: Vec<Conference> = storage
        .children()
        .filter(|c| c.is("conference", NS_STORAGE))
        .filter_map(|c| {
            let jid = c.attr("jid")?.parse::<BareJid>().ok()?;
            Some(Conference::parse(&c, jid.as_str().to_string()))
        })
        .collect();
    let (mut node, new) = match load(hub, &owner, NODE)? {
        Some(node) => (node, false),
        None if wanted.is_empty() => return Ok(()),
        None => (Node { config: node_config(), items: Vec::new() }, true),
    };
    let had = conferences(&node);
    let gone: Vec<String> =
        had.iter().filter(|h| !wanted.iter().any(|w| w.jid == h.jid)).map(|h| h.jid.clone()).collect();
    let mut published = Vec::new();
    for mut room in wanted {
        let before = had.iter().find(|h| h.jid == room.jid);
        if before.is_some_and(|b| b.same_for_storage(&room)) || published.iter().any(|i: &Item| *i.id == room.jid) {
            continue;
        }
        room.extensions = before.and_then(|b| b.extensions.clone());
        let mut payload = Vec::with_capacity(128);
        room.write(NODE, &mut payload);
        published.push(Item { id: room.jid.into(), payload: payload.into() });
    }
    if published.is_empty() && gone.is_empty() {
        return Ok(());
    }
    node.items.retain(|i| !gone.iter().any(|g| **g == *i.id) && !published.iter().any(|p| p.id == i.id));
    node.items.extend(published.iter().cloned());
    let keep = node.config.max_items.resolve(hub.limits.pep.max_items).max(1);
    let excess = node.items.len().saturating_sub(keep);
    node.items.drain(..excess);
    save(hub, &owner, NODE, &node, new)?;
    for item in &published {
        notify(hub, &ask, NODE, &node.config, &item_event(NODE, item), pushes);
    }
    if node.config.notify_retract {
        for id in &gone {
            notify(hub, &ask, NODE, &node.config, &retract_event(NODE, id), pushes);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(xml: &str) -> Vec<Conference> {
        let mut rooms = Vec::new();
        crate::xml::for_each_stanza(xml.as_bytes(), |el| {
            for c in el.children() {
                let jid = c.attr("jid").unwrap_or_default().into_owned();
                rooms.push(Conference::parse(&c, jid));
            }
        });
        rooms
    }

    #[test]
    fn a_room_reads_the_same_in_both_forms_and_only_the_new_keeps_extensions() {
        let old = "<storage xmlns='storage:bookmarks'><conference jid='garden@conference.localhost' \
                   name='The Garden' autojoin='1'><nick>Juliet</nick><password>rose</password></conference></storage>";
        let rooms = parsed(old);
        assert_eq!(rooms.len(), 1);
        let mut room = rooms.into_iter().next().unwrap();
        assert!(room.autojoin && room.nick.as_deref() == Some("Juliet") && room.password.as_deref() == Some("rose"));
        room.extensions =
            Some(b"<extensions xmlns='urn:xmpp:bookmarks:1'><x xmlns='urn:example'/></extensions>".to_vec());
        let mut new = Vec::new();
        room.write(NODE, &mut new);
        let new = String::from_utf8(new).unwrap();
        assert!(
            new.starts_with("<conference xmlns='urn:xmpp:bookmarks:1' name='The Garden' autojoin='true'>"),
            "{new}"
        );
        assert!(new.contains("<x xmlns='urn:example'/>"), "{new}");
        let mut back = Vec::new();
        room.write(NS_STORAGE, &mut back);
        let back = String::from_utf8(back).unwrap();
        assert!(back.contains("jid='garden@conference.localhost'") && !back.contains("extensions"), "{back}");
    }
}
