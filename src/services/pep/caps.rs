//! XEP-0115 entity capabilities, as PEP needs them (XEP-0163 §4.3: `+notify`
//! filtering): a bounded cache of verification string → features, and the server's
//! own disco#info queries for strings it has not met, each answer checked against
//! its hash before it is believed (§5.4, §8.4: a forged answer poisons nothing).

use crate::jid::FullJid;
use crate::ns::NS_INFO;
use crate::xml::writer::XmlWriter;
use crate::xml::Element;
use base64::Engine;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

pub const NS_CAPS: &str = "http://jabber.org/protocol/caps";
/// The ids of the server's disco#info queries start with this.
pub const QUERY_ID_PREFIX: &str = "wrenhub-caps-";
/// Sessions waiting for one query's answer.
const MAX_WAITING: usize = 16;

/// The `<c/>` of a presence: (hash, node, ver).
pub struct Advertised {
    pub hash: Box<str>,
    pub node: Box<str>,
    pub ver: Box<str>,
}

impl Advertised {
    /// A presence's caps, if it has current ones (`hash` set: the legacy form
    /// without one cannot be verified and is ignored).
    pub fn of(presence: &Element<'_>) -> Option<Advertised> {
        let c = presence.child("c", NS_CAPS)?;
        let hash = c.attr("hash")?;
        if !matches!(&*hash, "sha-1" | "sha-256") {
            return None;
        }
        let (node, ver) = (c.attr("node")?, c.attr("ver")?);
        if ver.is_empty() || ver.len() > 128 || node.len() > 1024 {
            return None;
        }
        Some(Advertised { hash: hash.into(), node: node.into(), ver: ver.into() })
    }
}

struct Pending {
    id: Box<str>,
    hash: Box<str>,
    ver: Box<str>,
    waiting: Vec<FullJid>,
}

/// The features of a verified string, shared by every session that advertises it.
pub type Features = Rc<[Box<str>]>;

pub struct CapsCache {
    known: RefCell<VecDeque<(Box<str>, Features)>>,
    pending: RefCell<VecDeque<Pending>>,
    next_id: Cell<u64>,
    max_known: usize,
    max_pending: usize,
}

impl CapsCache {
    pub fn new(max_known: usize, max_pending: usize) -> CapsCache {
        CapsCache {
            known: RefCell::new(VecDeque::new()),
            pending: RefCell::new(VecDeque::new()),
            next_id: Cell::new(0),
            max_known: max_known.max(1),
            max_pending: max_pending.max(1),
        }
    }

    pub fn features(&self, ver: &str) -> Option<Features> {
        self.known.borrow().iter().find(|(v, _)| &**v == ver).map(|(_, f)| Rc::clone(f))
    }

    /// A disco#info query to `to` for an unknown string (from `domain`), or `None`
    /// when one is already out for it (then `to` waits for that one). The oldest
    /// query is forgotten when `max_pending` are out.
    pub fn query(&self, domain: &str, to: &FullJid, caps: &Advertised) -> Option<Vec<u8>> {
        let mut pending = self.pending.borrow_mut();
        if let Some(p) = pending.iter_mut().find(|p| p.ver == caps.ver && p.hash == caps.hash) {
            if p.waiting.len() < MAX_WAITING && !p.waiting.contains(to) {
                p.waiting.push(to.clone());
            }
            return None;
        }
        if pending.len() >= self.max_pending {
            pending.pop_front();
        }
        let n = self.next_id.get();
        self.next_id.set(n.wrapping_add(1));
        let id: Box<str> = format!("{QUERY_ID_PREFIX}{n}").into();
        let mut bytes = Vec::with_capacity(200);
        let mut w = XmlWriter::new(&mut bytes);
        w.start("iq").attr("type", "get").attr("from", domain).attr("to", to.as_str()).attr("id", &id).open();
        let node = format!("{}#{}", caps.node, caps.ver);
        w.start("query").attr("xmlns", NS_INFO).attr("node", &node).close_empty().end("iq");
        pending.push_back(Pending { id, hash: caps.hash.clone(), ver: caps.ver.clone(), waiting: vec![to.clone()] });
        Some(bytes)
    }

    /// An answer to one of the queries (`iq` of type result or error from `from`):
    /// the string and its features if the answer verifies, with the sessions that
    /// waited for it. `None` for an answer to nothing asked, or one that does not
    /// hash to the string.
    pub fn answered(&self, iq: &Element<'_>, from: &str) -> Option<(Features, Vec<FullJid>)> {
        let id = iq.attr("id")?;
        let mut pending = self.pending.borrow_mut();
        let at = pending.iter().position(|p| *p.id == *id && p.waiting.first().is_some_and(|j| j.as_str() == from))?;
        let p = pending.remove(at)?;
        drop(pending);
        let query = iq.child("query", NS_INFO)?;
        if iq.attr("type").as_deref() != Some("result") || verification_hash(&query, &p.hash)? != *p.ver {
            log::debug!("caps {} from {from}: the answer does not verify", p.ver);
            return None;
        }
        let mut features: Vec<Box<str>> = query
            .children()
            .filter(|c| c.name() == "feature")
            .filter_map(|c| c.attr("var").map(|v| v.into()))
            .take(1024)
            .collect();
        features.sort_unstable();
        let features: Features = features.into();
        let mut known = self.known.borrow_mut();
        if known.len() >= self.max_known {
            known.pop_front();
        }
        known.push_back((p.ver.clone(), Rc::clone(&features)));
        Some((features, p.waiting))
    }
}

/// XEP-0115 §5.1/§5.4: the verification string of a disco#info answer, hashed
/// with `hash`, base64. `None` for what §5.4 says to reject (duplicate identities
/// or features, a form without FORM_TYPE).
pub fn verification_hash(query: &Element<'_>, hash: &str) -> Option<String> {
    let mut identities: Vec<String> = query
        .children()
        .filter(|c| c.name() == "identity")
        .map(|c| {
            let lang = c.attr_ns(crate::xml::NS_XML, "lang").unwrap_or_default();
            format!(
                "{}/{}/{}/{}",
                c.attr("category").unwrap_or_default(),
                c.attr("type").unwrap_or_default(),
                lang,
                c.attr("name").unwrap_or_default()
            )
        })
        .collect();
    let mut features: Vec<String> = query
        .children()
        .filter(|c| c.name() == "feature")
        .filter_map(|c| c.attr("var").map(|v| v.into_owned()))
        .collect();
    identities.sort_unstable();
    features.sort_unstable();
    if identities.windows(2).any(|w| w[0] == w[1]) || features.windows(2).any(|w| w[0] == w[1]) {
        return None;
    }
    let mut s = String::new();
    for i in &identities {
        s.push_str(i);
        s.push('<');
    }
    for f in &features {
        s.push_str(f);
        s.push('<');
    }
    let mut forms = Vec::new();
    for x in query.children().filter(|c| c.is("x", "jabber:x:data")) {
        let mut form_type = None;
        let mut fields = Vec::new();
        for f in x.children().filter(|f| f.name() == "field") {
            let var = f.attr("var").unwrap_or_default().into_owned();
            let mut values: Vec<String> =
                f.children().filter(|v| v.name() == "value").map(|v| v.text().into_owned()).collect();
            if var == "FORM_TYPE" {
                form_type = values.pop();
            } else {
                values.sort_unstable();
                fields.push((var, values));
            }
        }
        fields.sort_unstable();
        forms.push((form_type?, fields));
    }
    forms.sort_unstable();
    for (form_type, fields) in forms {
        s.push_str(&form_type);
        s.push('<');
        for (var, values) in fields {
            s.push_str(&var);
            s.push('<');
            for v in values {
                s.push_str(&v);
                s.push('<');
            }
        }
    }
    let algorithm = match hash {
        "sha-1" => &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        "sha-256" => &ring::digest::SHA256,
        _ => return None,
    };
    Some(base64::engine::general_purpose::STANDARD.encode(ring::digest::digest(algorithm, s.as_bytes()).as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// XEP-0115 §5.3's complex example.
    const COMPLEX: &str =
        "<query xmlns='http://jabber.org/protocol/disco#info' node='http://psi-im.org#q07IKJEyjvHSyhy//CH0CxmKi8w='>\
        <identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>\
        <identity xml:lang='el' category='client' name='Ψ 0.11' type='pc'/>\
        <feature var='http://jabber.org/protocol/caps'/>\
        <feature var='http://jabber.org/protocol/disco#info'/>\
        <feature var='http://jabber.org/protocol/disco#items'/>\
        <feature var='http://jabber.org/protocol/muc'/>\
        <x xmlns='jabber:x:data' type='result'>\
        <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:dataforms:softwareinfo</value></field>\
        <field var='ip_version'><value>ipv4</value><value>ipv6</value></field>\
        <field var='os'><value>Mac</value></field>\
        <field var='os_version'><value>10.5.1</value></field>\
        <field var='software'><value>Psi</value></field>\
        <field var='software_version'><value>0.11</value></field>\
        </x></query>";

    #[test]
    fn the_xep_examples_verify() {
        assert_eq!(hash_of(COMPLEX).as_deref(), Some("q07IKJEyjvHSyhy//CH0CxmKi8w="));
        let simple = "<query xmlns='http://jabber.org/protocol/disco#info'>\
            <identity category='client' name='Exodus 0.9.1' type='pc'/>\
            <feature var='http://jabber.org/protocol/caps'/>\
            <feature var='http://jabber.org/protocol/disco#info'/>\
            <feature var='http://jabber.org/protocol/disco#items'/>\
            <feature var='http://jabber.org/protocol/muc'/></query>";
        assert_eq!(hash_of(simple).as_deref(), Some("QgayPKawpkPSDYmwT/WM94uAlu0="));
        let twice = simple.replace("</query>", "<feature var='http://jabber.org/protocol/muc'/></query>");
        assert_eq!(hash_of(&twice), None, "a feature twice is rejected (§5.4)");
    }

    fn hash_of(query: &str) -> Option<String> {
        let mut hash = None;
        assert_eq!(crate::xml::for_each_stanza(query.as_bytes(), |q| hash = verification_hash(q, "sha-1")), 1);
        hash
    }
}
