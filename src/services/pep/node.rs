//! A PEP node: its configuration (XEP-0060 §16.4.4 `pubsub#node_config`, the
//! options PEP clients set) and its items, oldest first; encoded for the store.

use crate::store::record::{put, Reader};
use crate::xml::writer::XmlWriter;
use crate::xml::Element;

pub const NS_DATA: &str = "jabber:x:data";
pub const NODE_CONFIG: &str = "http://jabber.org/protocol/pubsub#node_config";
pub const META_DATA: &str = "http://jabber.org/protocol/pubsub#meta-data";
pub const PUBLISH_OPTIONS: &str = "http://jabber.org/protocol/pubsub#publish-options";

/// `pubsub#access_model` (XEP-0060 §4.5); PEP's default is `presence`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Open,
    Presence,
    Roster,
    Whitelist,
}

impl Access {
    const ALL: [(Access, &'static str); 4] = [
        (Access::Open, "open"),
        (Access::Presence, "presence"),
        (Access::Roster, "roster"),
        (Access::Whitelist, "whitelist"),
    ];

    pub fn name(self) -> &'static str {
        Access::ALL.iter().find(|(a, _)| *a == self).map_or("presence", |(_, n)| n)
    }

    fn parse(s: &str) -> Option<Access> {
        Access::ALL.iter().find(|(_, n)| *n == s).map(|(a, _)| *a)
    }
}

/// `pubsub#send_last_published_item`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendLast {
    Never,
    OnSub,
    OnSubAndPresence,
}

impl SendLast {
    const ALL: [(SendLast, &'static str); 3] =
        [(SendLast::Never, "never"), (SendLast::OnSub, "on_sub"), (SendLast::OnSubAndPresence, "on_sub_and_presence")];

    fn name(self) -> &'static str {
        SendLast::ALL.iter().find(|(a, _)| *a == self).map_or("never", |(_, n)| n)
    }

    fn parse(s: &str) -> Option<SendLast> {
        SendLast::ALL.iter().find(|(_, n)| *n == s).map(|(a, _)| *a)
    }
}

/// `pubsub#max_items`: a number, or `max` (the service's bound, `pep_max_items`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaxItems {
    Count(u32),
    Max,
}

impl MaxItems {
    pub fn resolve(self, service_max: usize) -> usize {
        match self {
            MaxItems::Count(n) => (n as usize).min(service_max),
            MaxItems::Max => service_max,
        }
    }

    fn text(self) -> String {
        match self {
            MaxItems::Count(n) => n.to_string(),
            MaxItems::Max => "max".to_string(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    pub access: Access,
    pub max_items: MaxItems,
    pub persist_items: bool,
    pub send_last: SendLast,
    pub notify_retract: bool,
    pub notify_delete: bool,
    /// `pubsub#roster_groups_allowed`, for the `roster` access model.
    pub roster_groups: Vec<String>,
    pub title: String,
}

impl Default for NodeConfig {
    /// What a PEP node gets when a client says nothing (XEP-0163 §4.3: presence
    /// access, the last item sent on presence; one item, as other servers do).
    fn default() -> Self {
        NodeConfig {
            access: Access::Presence,
            max_items: MaxItems::Count(1),
            persist_items: true,
            send_last: SendLast::OnSubAndPresence,
            notify_retract: true,
            notify_delete: true,
            roster_groups: Vec::new(),
            title: String::new(),
        }
    }
}

/// A field the form named that wrenhub cannot take (its var), or a value it
/// cannot.
#[derive(Debug, PartialEq, Eq)]
pub struct BadOption(pub String);

fn boolean(s: &str) -> Option<bool> {
    match s {
        "1" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

/// The fields of a submitted data form: (var, values), FORM_TYPE left out.
pub fn form_fields(form: &Element<'_>) -> Vec<(String, Vec<String>)> {
    form.children()
        .filter(|f| f.name() == "field")
        .filter_map(|f| {
            let var = f.attr("var")?.into_owned();
            let values = f.children().filter(|v| v.name() == "value").map(|v| v.text().trim().to_string()).collect();
            Some((var, values))
        })
        .filter(|(var, _)| var != "FORM_TYPE")
        .collect()
}

impl NodeConfig {
    /// Applies one field; unknown fields are left alone (clients send options for
    /// features other servers have; XEP-0223 §5 preconditions still check the
    /// known ones).
    pub fn apply(&mut self, var: &str, values: &[String]) -> Result<(), BadOption> {
        let first = values.first().map(String::as_str).unwrap_or("");
        let bad = || BadOption(var.to_string());
        match var {
            "pubsub#access_model" => self.access = Access::parse(first).ok_or_else(bad)?,
            "pubsub#max_items" => {
                self.max_items =
                    if first == "max" { MaxItems::Max } else { MaxItems::Count(first.parse().map_err(|_| bad())?) }
            }
            "pubsub#persist_items" => self.persist_items = boolean(first).ok_or_else(bad)?,
            "pubsub#send_last_published_item" => self.send_last = SendLast::parse(first).ok_or_else(bad)?,
            "pubsub#notify_retract" => self.notify_retract = boolean(first).ok_or_else(bad)?,
            "pubsub#notify_delete" => self.notify_delete = boolean(first).ok_or_else(bad)?,
            "pubsub#roster_groups_allowed" => {
                if values.len() > 32 || values.iter().any(|g| g.len() > 1024) {
                    return Err(bad());
                }
                self.roster_groups = values.to_vec();
            }
            "pubsub#title" => self.title = first.chars().take(256).collect(),
            // Always true here: notifications carry their payloads.
            "pubsub#deliver_payloads"
            | "pubsub#deliver_notifications"
            | "pubsub#notify_config"
            | "pubsub#presence_based_delivery" => {
                boolean(first).ok_or_else(bad)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// XEP-0223 §5 / XEP-0060 §7.1.5: does the node's configuration match what the
    /// publish-options ask for? `Err` names the first field that does not.
    pub fn meets(&self, fields: &[(String, Vec<String>)]) -> Result<(), BadOption> {
        for (var, values) in fields {
            let mut wanted = self.clone();
            wanted.apply(var, values)?;
            if wanted != *self {
                return Err(BadOption(var.clone()));
            }
        }
        Ok(())
    }

    /// The `pubsub#node_config` form (XEP-0060 §8.2.1), `type='form'`.
    pub fn write_form(&self, out: &mut Vec<u8>) {
        let mut w = XmlWriter::new(out);
        w.start("x").attr("xmlns", NS_DATA).attr("type", "form").open();
        w.start("field").attr("var", "FORM_TYPE").attr("type", "hidden").open();
        w.start("value").open().text(NODE_CONFIG).end("value").end("field");
        let single = |w: &mut XmlWriter<'_>, var: &str, kind: &str, value: &str, options: &[&str]| {
            w.start("field").attr("var", var).attr("type", kind).open();
            for o in options {
                w.start("option").open().start("value").open().text(o).end("value").end("option");
            }
            w.start("value").open().text(value).end("value").end("field");
        };
        let names: Vec<&str> = Access::ALL.iter().map(|(_, n)| *n).collect();
        single(&mut w, "pubsub#access_model", "list-single", self.access.name(), &names);
        single(&mut w, "pubsub#max_items", "text-single", &self.max_items.text(), &[]);
        single(&mut w, "pubsub#persist_items", "boolean", if self.persist_items { "1" } else { "0" }, &[]);
        let names: Vec<&str> = SendLast::ALL.iter().map(|(_, n)| *n).collect();
        single(&mut w, "pubsub#send_last_published_item", "list-single", self.send_last.name(), &names);
        single(&mut w, "pubsub#notify_retract", "boolean", if self.notify_retract { "1" } else { "0" }, &[]);
        single(&mut w, "pubsub#notify_delete", "boolean", if self.notify_delete { "1" } else { "0" }, &[]);
        single(&mut w, "pubsub#deliver_payloads", "boolean", "1", &[]);
        single(&mut w, "pubsub#title", "text-single", &self.title, &[]);
        w.start("field").attr("var", "pubsub#roster_groups_allowed").attr("type", "list-multi").open();
        for g in &self.roster_groups {
            w.start("value").open().text(g).end("value");
        }
        w.end("field").end("x");
    }
}

impl NodeConfig {
    /// The `pubsub#meta-data` form of a node's disco#info (XEP-0060 §5.3, §16.4.3).
    pub fn write_meta_data(&self, owner: &crate::jid::BareJid, out: &mut Vec<u8>) {
        let mut w = XmlWriter::new(out);
        w.start("x").attr("xmlns", NS_DATA).attr("type", "result").open();
        let field = |w: &mut XmlWriter<'_>, var: &str, value: &str| {
            w.start("field").attr("var", var).open().start("value").open().text(value).end("value").end("field");
        };
        w.start("field").attr("var", "FORM_TYPE").attr("type", "hidden").open();
        w.start("value").open().text(META_DATA).end("value").end("field");
        field(&mut w, "pubsub#type", "leaf");
        field(&mut w, "pubsub#access_model", self.access.name());
        field(&mut w, "pubsub#owner", owner.as_str());
        field(&mut w, "pubsub#publisher", owner.as_str());
        field(&mut w, "pubsub#max_items", &self.max_items.text());
        if !self.title.is_empty() {
            field(&mut w, "pubsub#title", &self.title);
        }
        w.end("x");
    }
}

/// One published item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub id: Box<str>,
    /// The payload element, re-emitted (in the `pubsub` namespace's view: it
    /// carries its own `xmlns`).
    pub payload: Box<[u8]>,
}

/// A node as stored.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Node {
    pub config: NodeConfig,
    /// Oldest first.
    pub items: Vec<Item>,
}

const RECORD_VERSION: u8 = 1;

impl Node {
    pub fn last(&self) -> Option<&Item> {
        self.items.last()
    }

    pub fn encode(&self) -> Vec<u8> {
        let c = &self.config;
        let mut out = vec![RECORD_VERSION];
        out.push(Access::ALL.iter().position(|(a, _)| *a == c.access).unwrap_or(1) as u8);
        out.push(SendLast::ALL.iter().position(|(a, _)| *a == c.send_last).unwrap_or(2) as u8);
        out.push(u8::from(c.persist_items) | u8::from(c.notify_retract) << 1 | u8::from(c.notify_delete) << 2);
        let max = match c.max_items {
            MaxItems::Count(n) => n.min(u32::MAX - 1),
            MaxItems::Max => u32::MAX,
        };
        out.extend_from_slice(&max.to_be_bytes());
        put(&mut out, c.title.as_bytes());
        out.push(c.roster_groups.len().min(255) as u8);
        for g in c.roster_groups.iter().take(255) {
            put(&mut out, g.as_bytes());
        }
        out.extend_from_slice(&(self.items.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
        for item in self.items.iter().take(usize::from(u16::MAX)) {
            put(&mut out, item.id.as_bytes());
            out.extend_from_slice(&(item.payload.len() as u32).to_be_bytes());
            out.extend_from_slice(&item.payload);
        }
        out
    }

    pub fn decode(b: &[u8]) -> Option<Node> {
        let mut r = Reader(b);
        if r.u8()? != RECORD_VERSION {
            return None;
        }
        let access = Access::ALL.get(usize::from(r.u8()?))?.0;
        let send_last = SendLast::ALL.get(usize::from(r.u8()?))?.0;
        let flags = r.u8()?;
        let max = u32::from_be_bytes(r.take(4)?.try_into().ok()?);
        let title = r.string()?;
        let groups = r.u8()?;
        let mut roster_groups = Vec::with_capacity(usize::from(groups));
        for _ in 0..groups {
            roster_groups.push(r.string()?);
        }
        let count = u16::from_be_bytes(r.take(2)?.try_into().ok()?);
        let mut items = Vec::with_capacity(usize::from(count).min(1024));
        for _ in 0..count {
            let id = std::str::from_utf8(r.bytes()?).ok()?.into();
            let len = u32::from_be_bytes(r.take(4)?.try_into().ok()?) as usize;
            items.push(Item { id, payload: r.take(len)?.into() });
        }
        let config = NodeConfig {
            access,
            max_items: if max == u32::MAX { MaxItems::Max } else { MaxItems::Count(max) },
            persist_items: flags & 1 != 0,
            send_last,
            notify_retract: flags & 2 != 0,
            notify_delete: flags & 4 != 0,
            roster_groups,
            title,
        };
        Some(Node { config, items })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_survives_its_encoding() {
        let mut config = NodeConfig::default();
        config.apply("pubsub#access_model", &["roster".into()]).unwrap();
        config.apply("pubsub#roster_groups_allowed", &["family".into(), "work".into()]).unwrap();
        config.apply("pubsub#max_items", &["max".into()]).unwrap();
        config.apply("pubsub#notify_retract", &["false".into()]).unwrap();
        let node = Node { config, items: vec![Item { id: "a".into(), payload: b"<x xmlns='y'/>"[..].into() }] };
        assert_eq!(Node::decode(&node.encode()), Some(node.clone()));
        assert_eq!(Node::decode(&node.encode()[..10]), None);
    }

    #[test]
    fn preconditions_compare_normalised_values_and_name_the_field_that_differs() {
        let config = NodeConfig::default();
        let f = |var: &str, v: &str| vec![(var.to_string(), vec![v.to_string()])];
        assert_eq!(config.meets(&f("pubsub#persist_items", "true")), Ok(()));
        assert_eq!(config.meets(&f("pubsub#access_model", "presence")), Ok(()));
        assert_eq!(config.meets(&f("pubsub#access_model", "open")), Err(BadOption("pubsub#access_model".into())));
        assert_eq!(config.meets(&f("pubsub#max_items", "max")), Err(BadOption("pubsub#max_items".into())));
        assert_eq!(config.meets(&f("pubsub#access_model", "nonsense")), Err(BadOption("pubsub#access_model".into())));
        assert_eq!(config.meets(&f("urn:other#option", "x")), Ok(()), "unknown options are not preconditions");
    }
}
