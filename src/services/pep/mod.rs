//! XEP-0163 Personal Eventing Protocol: a XEP-0060 subset on every account's bare
//! JID, answered by the server on the account's behalf (RFC 6121 §8.5.2.1.3).
//!
//! - `node`: a node's configuration (access models, max items, …) and items.
//! - `caps`: XEP-0115 caps → features, for `+notify` filtering (§4.3).
//! - this module: the iqs (publish with XEP-0223 publish-options, retract, items,
//!   create; owner: configure, delete, purge, default), access checks (§4.5 of
//!   XEP-0060 for PEP's four models), who is notified, and the last items a
//!   contact's resource gets when it becomes available with `+notify` (§4.3.2).
//!
//! - `avatar`: XEP-0398, the XEP-0084 avatar and the vCard photo kept one.
//! - `bookmarks`: XEP-0402's node seen as XEP-0048's private-storage document.
//! - `remote`: the resources of contacts on other servers, for their notifications.
//!
//! Nodes live in the store (`store::pep`), read and written whole; nothing of a
//! node stays in memory. Notifications go to local resources and to remote
//! contacts' resources over federation; a remote entity fetches items it may see
//! (an `open` node: OMEMO bundles).

pub mod avatar;
pub mod bookmarks;
pub mod caps;
pub mod node;
pub mod remote;

use crate::handlers::{Handler, IqReply, IqRequest, IqType};
use crate::hub::Hub;
use crate::jid::{BareJid, Jid};
use crate::sessions::Session;
use crate::stanza::{Condition, StanzaError};
use crate::store::roster::RosterItem;
use crate::xml::writer::{write_element, XmlWriter};
use crate::xml::Element;
use caps::{Advertised, CapsCache, Features};
use node::{Access, BadOption, Item, Node, NodeConfig, SendLast};
use remote::RemoteResources;
use std::rc::Rc;

pub const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
pub const NS_PUBSUB_OWNER: &str = "http://jabber.org/protocol/pubsub#owner";
pub const NS_PUBSUB_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
pub const NS_PUBSUB_ERRORS: &str = "http://jabber.org/protocol/pubsub#errors";

/// The bounds of PEP (config keys `pep_*`).
#[derive(Clone, Copy, Debug)]
pub struct PepLimits {
    /// Nodes per account.
    pub max_nodes: usize,
    /// Items per node (what `pubsub#max_items = max` means).
    pub max_items: usize,
    /// Bytes of one item's payload.
    pub max_item_bytes: usize,
    /// Bytes of all of an account's nodes.
    pub max_bytes: usize,
}

/// The PEP service's state: the caps cache and remote contacts' resources (nodes
/// are in the store).
pub struct Pep {
    pub caps: CapsCache,
    pub remote: RemoteResources,
}

impl Pep {
    pub fn new(max_caps: usize, max_remote: usize) -> Pep {
        Pep { caps: CapsCache::new(max_caps, 64), remote: RemoteResources::new(max_remote) }
    }
}

/// The features PEP announces on an account (XEP-0060 §10, what is implemented).
const FEATURES: &[&str] = &[
    NS_PUBSUB,
    "http://jabber.org/protocol/pubsub#access-open",
    "http://jabber.org/protocol/pubsub#access-presence",
    "http://jabber.org/protocol/pubsub#access-roster",
    "http://jabber.org/protocol/pubsub#access-whitelist",
    "http://jabber.org/protocol/pubsub#auto-create",
    "http://jabber.org/protocol/pubsub#auto-subscribe",
    "http://jabber.org/protocol/pubsub#config-node",
    "http://jabber.org/protocol/pubsub#config-node-max",
    "http://jabber.org/protocol/pubsub#create-and-configure",
    "http://jabber.org/protocol/pubsub#create-nodes",
    "http://jabber.org/protocol/pubsub#delete-items",
    "http://jabber.org/protocol/pubsub#delete-nodes",
    "http://jabber.org/protocol/pubsub#filtered-notifications",
    "http://jabber.org/protocol/pubsub#item-ids",
    "http://jabber.org/protocol/pubsub#last-published",
    "http://jabber.org/protocol/pubsub#meta-data",
    "http://jabber.org/protocol/pubsub#persistent-items",
    "http://jabber.org/protocol/pubsub#presence-notifications",
    "http://jabber.org/protocol/pubsub#publish",
    "http://jabber.org/protocol/pubsub#publish-options",
    "http://jabber.org/protocol/pubsub#purge-nodes",
    "http://jabber.org/protocol/pubsub#retract-items",
    "http://jabber.org/protocol/pubsub#retrieve-default",
    "http://jabber.org/protocol/pubsub#retrieve-items",
    // XEP-0398: the avatar and the vCard photo are one.
    "urn:xmpp:pep-vcard-conversion:0",
    // XEP-0402 §5.3 and XEP-0411: bookmarks are one list for both XEPs.
    "urn:xmpp:bookmarks:1#compat",
    "urn:xmpp:bookmarks-conversion:0",
];

pub const HANDLER: Handler = Handler {
    namespace: NS_PUBSUB,
    element: "pubsub",
    features: FEATURES,
    for_server: false,
    advertised_on_server: false,
    for_account: true,
    // A contact on another server reads nodes it may see (OMEMO bundles).
    for_remote: true,
    handle,
};

pub const OWNER: Handler = Handler {
    namespace: NS_PUBSUB_OWNER,
    element: "pubsub",
    features: &[],
    for_server: false,
    advertised_on_server: false,
    for_account: true,
    for_remote: false,
    handle: handle_owner,
};

/// A XEP-0060 error: a stanza condition with a `pubsub#errors` condition.
fn error(condition: Condition, app: Option<&'static str>) -> StanzaError {
    StanzaError { app: app.map(|a| (a, NS_PUBSUB_ERRORS)), ..StanzaError::new(condition) }
}

fn internal(e: impl std::fmt::Display) -> StanzaError {
    log::error!("pep: {e}");
    StanzaError::new(Condition::InternalServerError)
}

/// Whose node, and who asks.
struct Ask<'a> {
    owner: BareJid,
    requester: BareJid,
    sender: &'a Rc<Session>,
}

impl Ask<'_> {
    fn of<'a>(req: &'a IqRequest<'_>) -> Ask<'a> {
        let requester = req.sender.jid.to_bare();
        Ask { owner: req.on_behalf_of.cloned().unwrap_or_else(|| requester.clone()), requester, sender: req.sender }
    }

    fn is_owner(&self) -> bool {
        self.owner == self.requester
    }
}

fn handle(hub: &Hub<'_>, req: &IqRequest<'_>, pushes: &mut Vec<u8>) -> IqReply {
    let ask = Ask::of(req);
    let Some(op) = req.payload.children().find(|c| c.ns() == NS_PUBSUB && c.name() != "publish-options") else {
        return IqReply::Error(StanzaError::new(Condition::BadRequest));
    };
    let result = match (req.iq_type, op.name()) {
        (IqType::Set, "publish") => {
            publish(hub, &ask, &op, req.payload.child("publish-options", NS_PUBSUB).as_ref(), pushes)
        }
        (IqType::Set, "retract") => retract(hub, &ask, &op, pushes),
        (IqType::Set, "create") => create(hub, &ask, &op, req.payload.child("configure", NS_PUBSUB).as_ref()),
        (IqType::Get, "items") => items(hub, &ask, &op),
        // PEP's subscriptions are implied by presence (XEP-0163 §4.1).
        (_, "subscribe" | "unsubscribe" | "options" | "subscriptions" | "affiliations") => {
            Err(StanzaError::new(Condition::FeatureNotImplemented))
        }
        _ => Err(StanzaError::new(Condition::BadRequest)),
    };
    result.map_or_else(IqReply::Error, IqReply::Result)
}

fn handle_owner(hub: &Hub<'_>, req: &IqRequest<'_>, pushes: &mut Vec<u8>) -> IqReply {
    let ask = Ask::of(req);
    if !ask.is_owner() {
        return IqReply::Error(StanzaError::new(Condition::Forbidden));
    }
    let Some(op) = req.payload.children().next() else {
        return IqReply::Error(StanzaError::new(Condition::BadRequest));
    };
    let result = match (req.iq_type, op.name()) {
        (IqType::Get, "configure") => get_configuration(hub, &ask, &op),
        (IqType::Set, "configure") => set_configuration(hub, &ask, &op),
        (IqType::Get, "default") => {
            let mut p = Vec::new();
            XmlWriter::new(&mut p).start("pubsub").attr("xmlns", NS_PUBSUB_OWNER).open().start("default").open();
            NodeConfig::default().write_form(&mut p);
            XmlWriter::new(&mut p).end("default").end("pubsub");
            Ok(Some(p))
        }
        (IqType::Set, "delete") => delete(hub, &ask, &op, pushes),
        (IqType::Set, "purge") => purge(hub, &ask, &op, pushes),
        (_, "subscriptions" | "affiliations") => Err(StanzaError::new(Condition::FeatureNotImplemented)),
        _ => Err(StanzaError::new(Condition::BadRequest)),
    };
    result.map_or_else(IqReply::Error, IqReply::Result)
}

type Answer = Result<Option<Vec<u8>>, StanzaError>;

fn node_name(op: &Element<'_>) -> Result<String, StanzaError> {
    match op.attr("node") {
        Some(n) if !n.is_empty() && n.len() <= 1024 => Ok(n.into_owned()),
        _ => Err(error(Condition::BadRequest, Some("nodeid-required"))),
    }
}

fn load(hub: &Hub<'_>, owner: &BareJid, name: &str) -> Result<Option<Node>, StanzaError> {
    match hub.store.pep_node(owner, name).map_err(internal)? {
        None => Ok(None),
        Some(bytes) => Node::decode(&bytes).map(Some).ok_or_else(|| internal(format!("node {name} of {owner}"))),
    }
}

/// Stores a node within the account's bounds.
fn save(hub: &Hub<'_>, owner: &BareJid, name: &str, node: &Node, new: bool) -> Result<(), StanzaError> {
    let limits = hub.limits.pep;
    let encoded = node.encode();
    let (count, bytes) = hub.store.pep_usage_besides(owner, name).map_err(internal)?;
    if new && count >= limits.max_nodes {
        return Err(StanzaError {
            text: Some("pep_max_nodes reached".into()),
            ..error(Condition::NotAllowed, Some("max-nodes-exceeded"))
        });
    }
    if bytes + name.len() + encoded.len() > limits.max_bytes {
        return Err(StanzaError::with_text(Condition::ResourceConstraint, "pep_max_bytes reached"));
    }
    hub.store.put_pep_node(owner, name, Some(&encoded)).map_err(internal)
}

fn bad_options(e: BadOption) -> StanzaError {
    StanzaError {
        text: Some(format!("{} cannot take that value", e.0)),
        ..error(Condition::BadRequest, Some("invalid-options"))
    }
}

/// A configuration from a submitted `jabber:x:data` form inside `parent`.
fn configured(mut config: NodeConfig, parent: Option<&Element<'_>>) -> Result<NodeConfig, StanzaError> {
    let Some(form) = parent.and_then(|p| p.child("x", node::NS_DATA)) else { return Ok(config) };
    for (var, values) in node::form_fields(&form) {
        config.apply(&var, &values).map_err(bad_options)?;
    }
    Ok(config)
}

/// XEP-0060 §7.1 (with XEP-0163 §3's auto-create and XEP-0223's preconditions).
fn publish(
    hub: &Hub<'_>,
    ask: &Ask<'_>,
    op: &Element<'_>,
    options: Option<&Element<'_>>,
    pushes: &mut Vec<u8>,
) -> Answer {
    if !ask.is_owner() {
        return Err(StanzaError::new(Condition::Forbidden));
    }
    let name = node_name(op)?;
    let mut items = op.children().filter(|c| c.name() == "item");
    let (Some(item), None) = (items.next(), items.next()) else {
        return Err(error(Condition::BadRequest, Some("invalid-payload")));
    };
    let mut payloads = item.children();
    let (Some(payload), None) = (payloads.next(), payloads.next()) else {
        return Err(error(Condition::BadRequest, Some("payload-required")));
    };
    let id: Box<str> = match item.attr("id") {
        Some(id) if !id.is_empty() && id.len() <= 256 => id.into(),
        Some(_) => return Err(error(Condition::BadRequest, Some("item-forbidden"))),
        None => new_item_id().into(),
    };
    let mut bytes = Vec::with_capacity(256);
    write_element(&mut bytes, &payload, NS_PUBSUB, None, &[]);
    if bytes.len() > hub.limits.pep.max_item_bytes {
        return Err(StanzaError {
            text: Some(format!(
                "an item's payload is at most {} bytes (pep_max_item_bytes)",
                hub.limits.pep.max_item_bytes
            )),
            ..error(Condition::NotAcceptable, Some("payload-too-big"))
        });
    }
    let form = options.and_then(|o| o.child("x", node::NS_DATA));
    let (node, new) = match load(hub, &ask.owner, &name)? {
        Some(node) => {
            if let Some(form) = &form {
                // XEP-0223 §5: the options are preconditions on an existing node.
                if let Err(BadOption(var)) = node.config.meets(&node::form_fields(form)) {
                    return Err(StanzaError {
                        text: Some(format!("the node's {var} differs")),
                        ..error(Condition::Conflict, Some("precondition-not-met"))
                    });
                }
            }
            (node, false)
        }
        None => (Node { config: configured(NodeConfig::default(), options)?, items: Vec::new() }, true),
    };
    let item = Item { id, payload: bytes.into() };
    commit_item(hub, ask, &name, node, new, &item, pushes)?;
    let mut p = Vec::with_capacity(160);
    let mut w = XmlWriter::new(&mut p);
    w.start("pubsub").attr("xmlns", NS_PUBSUB).open().start("publish").attr("node", &name).open();
    w.start("item").attr("id", &item.id).close_empty().end("publish").end("pubsub");
    Ok(Some(p))
}

/// Stores a published item on its node (a new one is created) within the bounds
/// and notifies those who want it (XEP-0060 §7.1.2).
fn commit_item(
    hub: &Hub<'_>,
    ask: &Ask<'_>,
    name: &str,
    mut node: Node,
    new: bool,
    item: &Item,
    pushes: &mut Vec<u8>,
) -> Result<(), StanzaError> {
    node.items.retain(|i| i.id != item.id);
    if node.config.persist_items {
        node.items.push(item.clone());
        let keep = node.config.max_items.resolve(hub.limits.pep.max_items).max(1);
        let excess = node.items.len().saturating_sub(keep);
        node.items.drain(..excess);
    }
    save(hub, &ask.owner, name, &node, new)?;
    notify(hub, ask, name, &node.config, &item_event(name, item), pushes);
    Ok(())
}

/// A published item's event: `<items node><item id>payload</item></items>`.
fn item_event(node: &str, item: &Item) -> Vec<u8> {
    let mut event = Vec::with_capacity(item.payload.len() + 128);
    XmlWriter::new(&mut event).start("items").attr("node", node).open().start("item").attr("id", &item.id).open();
    event.extend_from_slice(&item.payload);
    XmlWriter::new(&mut event).end("item").end("items");
    event
}

/// A retraction's event: `<items node><retract id/></items>`.
fn retract_event(node: &str, id: &str) -> Vec<u8> {
    let mut event = Vec::new();
    XmlWriter::new(&mut event)
        .start("items")
        .attr("node", node)
        .open()
        .start("retract")
        .attr("id", id)
        .close_empty()
        .end("items");
    event
}

fn new_item_id() -> String {
    let mut b = [0u8; 8];
    crate::random::fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// XEP-0060 §7.2.
fn retract(hub: &Hub<'_>, ask: &Ask<'_>, op: &Element<'_>, pushes: &mut Vec<u8>) -> Answer {
    if !ask.is_owner() {
        return Err(StanzaError::new(Condition::Forbidden));
    }
    let name = node_name(op)?;
    let Some(id) = op.children().find(|c| c.name() == "item").and_then(|i| i.attr("id")) else {
        return Err(error(Condition::BadRequest, Some("item-required")));
    };
    let Some(mut node) = load(hub, &ask.owner, &name)? else {
        return Err(StanzaError::new(Condition::ItemNotFound));
    };
    let before = node.items.len();
    node.items.retain(|i| *i.id != *id);
    if node.items.len() == before {
        return Err(StanzaError::new(Condition::ItemNotFound));
    }
    save(hub, &ask.owner, &name, &node, false)?;
    let asked = op.attr("notify").is_some_and(|n| matches!(&*n, "1" | "true"));
    if node.config.notify_retract || asked {
        notify(hub, ask, &name, &node.config, &retract_event(&name, &id), pushes);
    }
    Ok(None)
}

/// XEP-0060 §8.1 (with §8.1.3's create-and-configure).
fn create(hub: &Hub<'_>, ask: &Ask<'_>, op: &Element<'_>, configure: Option<&Element<'_>>) -> Answer {
    if !ask.is_owner() {
        return Err(StanzaError::new(Condition::Forbidden));
    }
    let name = match op.attr("node") {
        Some(n) if !n.is_empty() && n.len() <= 1024 => n.into_owned(),
        // §8.1.2: PEP has no instant nodes.
        _ => return Err(error(Condition::NotAcceptable, Some("nodeid-required"))),
    };
    if load(hub, &ask.owner, &name)?.is_some() {
        return Err(StanzaError::new(Condition::Conflict));
    }
    let node = Node { config: configured(NodeConfig::default(), configure)?, items: Vec::new() };
    save(hub, &ask.owner, &name, &node, true)?;
    Ok(None)
}

/// XEP-0060 §6.5: all items, the last `max_items`, or those asked for by id.
fn items(hub: &Hub<'_>, ask: &Ask<'_>, op: &Element<'_>) -> Answer {
    let name = node_name(op)?;
    let Some(node) = load(hub, &ask.owner, &name)? else {
        return Err(StanzaError::new(Condition::ItemNotFound));
    };
    allowed(hub, &node.config, &ask.owner, &ask.requester)?;
    let wanted: Vec<String> =
        op.children().filter(|c| c.name() == "item").filter_map(|c| c.attr("id").map(|i| i.into_owned())).collect();
    let chosen: Vec<&Item> = if !wanted.is_empty() {
        node.items.iter().filter(|i| wanted.iter().any(|w| **w == *i.id)).collect()
    } else {
        let max = op.attr("max_items").and_then(|m| m.parse::<usize>().ok()).unwrap_or(usize::MAX);
        let skip = node.items.len().saturating_sub(max);
        node.items.iter().skip(skip).collect()
    };
    let mut p = Vec::with_capacity(chosen.iter().map(|i| i.payload.len() + 40).sum::<usize>() + 100);
    XmlWriter::new(&mut p).start("pubsub").attr("xmlns", NS_PUBSUB).open().start("items").attr("node", &name).open();
    for item in chosen {
        XmlWriter::new(&mut p).start("item").attr("id", &item.id).open();
        p.extend_from_slice(&item.payload);
        XmlWriter::new(&mut p).end("item");
    }
    XmlWriter::new(&mut p).end("items").end("pubsub");
    Ok(Some(p))
}

fn get_configuration(hub: &Hub<'_>, ask: &Ask<'_>, op: &Element<'_>) -> Answer {
    let name = node_name(op)?;
    let Some(node) = load(hub, &ask.owner, &name)? else {
        return Err(StanzaError::new(Condition::ItemNotFound));
    };
    let mut p = Vec::new();
    let mut w = XmlWriter::new(&mut p);
    w.start("pubsub").attr("xmlns", NS_PUBSUB_OWNER).open().start("configure").attr("node", &name).open();
    node.config.write_form(&mut p);
    XmlWriter::new(&mut p).end("configure").end("pubsub");
    Ok(Some(p))
}

/// XEP-0060 §8.2.
fn set_configuration(hub: &Hub<'_>, ask: &Ask<'_>, op: &Element<'_>) -> Answer {
    let name = node_name(op)?;
    let Some(mut node) = load(hub, &ask.owner, &name)? else {
        return Err(StanzaError::new(Condition::ItemNotFound));
    };
    let Some(form) = op.child("x", node::NS_DATA) else {
        return Err(StanzaError::new(Condition::BadRequest));
    };
    if form.attr("type").as_deref() == Some("cancel") {
        return Ok(None);
    }
    node.config = configured(node.config, Some(op))?;
    let keep = node.config.max_items.resolve(hub.limits.pep.max_items).max(1);
    let excess = node.items.len().saturating_sub(keep);
    node.items.drain(..excess);
    if !node.config.persist_items {
        node.items.clear();
    }
    save(hub, &ask.owner, &name, &node, false)?;
    Ok(None)
}

/// XEP-0060 §8.4.
fn delete(hub: &Hub<'_>, ask: &Ask<'_>, op: &Element<'_>, pushes: &mut Vec<u8>) -> Answer {
    let name = node_name(op)?;
    let Some(node) = load(hub, &ask.owner, &name)? else {
        return Err(StanzaError::new(Condition::ItemNotFound));
    };
    hub.store.put_pep_node(&ask.owner, &name, None).map_err(internal)?;
    if node.config.notify_delete {
        let mut event = Vec::new();
        XmlWriter::new(&mut event).start("delete").attr("node", &name).close_empty();
        notify(hub, ask, &name, &node.config, &event, pushes);
    }
    Ok(None)
}

/// XEP-0060 §8.5.
fn purge(hub: &Hub<'_>, ask: &Ask<'_>, op: &Element<'_>, pushes: &mut Vec<u8>) -> Answer {
    let name = node_name(op)?;
    let Some(mut node) = load(hub, &ask.owner, &name)? else {
        return Err(StanzaError::new(Condition::ItemNotFound));
    };
    node.items.clear();
    save(hub, &ask.owner, &name, &node, false)?;
    if node.config.notify_retract {
        let mut event = Vec::new();
        XmlWriter::new(&mut event).start("purge").attr("node", &name).close_empty();
        notify(hub, ask, &name, &node.config, &event, pushes);
    }
    Ok(None)
}

/// The access model's answer for `viewer` (XEP-0060 §6.1.3 / §6.5.9).
fn allowed(hub: &Hub<'_>, config: &NodeConfig, owner: &BareJid, viewer: &BareJid) -> Result<(), StanzaError> {
    if owner == viewer || config.access == Access::Open {
        return Ok(());
    }
    let item = hub.store.roster_item(owner, viewer).map_err(internal)?;
    if allows(config, item.as_ref()) {
        return Ok(());
    }
    Err(match config.access {
        Access::Presence => error(Condition::NotAuthorized, Some("presence-subscription-required")),
        Access::Roster => error(Condition::NotAuthorized, Some("not-in-roster-group")),
        Access::Whitelist | Access::Open => error(Condition::NotAllowed, Some("closed-node")),
    })
}

/// Does the owner's roster item for a contact let it see the node?
fn allows(config: &NodeConfig, item: Option<&RosterItem>) -> bool {
    let Some(item) = item.filter(|i| !i.removed && !i.hidden) else {
        return config.access == Access::Open;
    };
    match config.access {
        Access::Open => true,
        Access::Presence => item.subscription.has_from(),
        Access::Roster => item.groups.iter().any(|g| config.roster_groups.contains(g)),
        Access::Whitelist => false,
    }
}

/// Do these caps (a verification string) want notifications of `node`
/// (`node+notify` among their verified features)?
fn wants(hub: &Hub<'_>, caps: Option<&str>, node: &str) -> bool {
    let Some(features) = caps.and_then(|ver| hub.pep.caps.features(ver)) else { return false };
    let wanted = format!("{node}+notify");
    features.binary_search_by(|f| (**f).cmp(wanted.as_str())).is_ok()
}

fn session_wants(hub: &Hub<'_>, session: &Session, node: &str) -> bool {
    wants(hub, session.caps.borrow().as_deref(), node)
}

/// `<message type='headline'>` with a pubsub event (XEP-0060 §7.1.2.1).
fn event_message(owner: &BareJid, to: &str, event: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(event.len() + 200);
    let mut w = XmlWriter::new(&mut m);
    w.start("message").attr("from", owner.as_str()).attr("to", to).attr("type", "headline").open();
    w.start("event").attr("xmlns", NS_PUBSUB_EVENT).open();
    m.extend_from_slice(event);
    XmlWriter::new(&mut m).end("event").end("message");
    m
}

/// Notifies the owner's resources and its contacts' that the node's access model
/// lets see it, those with `node+notify` (XEP-0163 §4.3): local sessions, and
/// remote contacts' resources over federation. The asking session's own copy
/// follows its answer.
fn notify(hub: &Hub<'_>, ask: &Ask<'_>, name: &str, config: &NodeConfig, event: &[u8], pushes: &mut Vec<u8>) {
    let mut recipients: Vec<Rc<Session>> = hub.registry.sessions(&ask.owner);
    let mut remote = Vec::new();
    if config.access != Access::Whitelist {
        let roster = hub.store.roster_items(&ask.owner).unwrap_or_default();
        let remote_resources = hub.pep.remote.of(&ask.owner);
        for item in roster.iter().filter(|i| i.subscription.has_from() && allows(config, Some(i))) {
            if crate::handlers::blocking::blocked(hub, &ask.owner, &Jid::Bare(item.jid.clone())) {
                continue;
            }
            if item.jid.domain() == hub.domain.as_str() {
                recipients.extend(hub.registry.sessions(&item.jid));
            } else {
                remote.extend(remote_resources.iter().filter(|r| r.jid.to_bare() == item.jid).cloned());
            }
        }
    }
    for s in recipients.iter().filter(|s| s.available() && session_wants(hub, s, name)) {
        let m = event_message(&ask.owner, s.jid.as_str(), event);
        if Rc::ptr_eq(s, ask.sender) {
            pushes.extend_from_slice(&m);
        } else {
            let _ = s.push(m);
        }
    }
    for r in remote.into_iter().filter(|r| wants(hub, r.caps.as_deref(), name)) {
        hub.send_to_domain(r.jid.domain(), &event_message(&ask.owner, r.jid.as_str(), event));
    }
}

/// disco#info of one of `owner`'s nodes, for `viewer` (XEP-0060 §5.3): the
/// `pubsub/leaf` identity and the `pubsub#meta-data` form.
pub fn node_info(hub: &Hub<'_>, owner: &BareJid, viewer: &BareJid, name: &str) -> Result<Vec<u8>, StanzaError> {
    let Some(node) = load(hub, owner, name)? else {
        return Err(StanzaError::new(Condition::ItemNotFound));
    };
    allowed(hub, &node.config, owner, viewer)?;
    let mut p = Vec::with_capacity(512);
    let mut w = XmlWriter::new(&mut p);
    w.start("query").attr("xmlns", crate::ns::NS_INFO).attr("node", name).open();
    w.start("identity").attr("category", "pubsub").attr("type", "leaf").close_empty();
    w.start("feature").attr("var", NS_PUBSUB).close_empty();
    node.config.write_meta_data(owner, &mut p);
    XmlWriter::new(&mut p).end("query");
    Ok(p)
}

/// The nodes of `owner` that `viewer` may see (the account's disco#items).
pub fn visible_nodes(hub: &Hub<'_>, owner: &BareJid, viewer: &BareJid) -> Vec<String> {
    let nodes = hub.store.pep_nodes(owner).unwrap_or_default();
    nodes
        .into_iter()
        .filter_map(|(name, bytes)| Some((name, Node::decode(&bytes)?)))
        .filter(|(_, node)| allowed(hub, &node.config, owner, viewer).is_ok())
        .map(|(name, _)| name)
        .collect()
}

/// A session's available presence (RFC 6121 §4.2/§4.4): keeps its caps, and when
/// they are new sends it the last item of every node it may see and wants, its
/// own account's and its contacts' (XEP-0163 §4.3.2). Unknown caps are asked for
/// first; the items follow the verified answer. Bytes for the session go to `out`.
pub fn presence_available(hub: &Hub<'_>, session: &Rc<Session>, presence: &Element<'_>, out: &mut Vec<u8>) {
    let advertised = Advertised::of(presence);
    let ver: Option<Rc<str>> = advertised.as_ref().map(|a| Rc::from(&*a.ver));
    let unchanged = *session.caps.borrow() == ver;
    *session.caps.borrow_mut() = ver;
    let Some(advertised) = advertised.filter(|_| !unchanged) else { return };
    match hub.pep.caps.features(&advertised.ver) {
        Some(features) => last_items(hub, session, &features, out),
        None => {
            if let Some(query) = hub.pep.caps.query(hub.domain.as_str(), &session.jid, &advertised) {
                out.extend_from_slice(&query);
            }
        }
    }
}

/// The answer to one of the server's caps queries, from a local session or (over
/// federation, `from` as the remote stream checked it) a remote resource: once
/// verified, the resources that waited get their last items.
pub fn caps_answered(hub: &Hub<'_>, from: &str, current: Option<&Rc<Session>>, iq: &Element<'_>, out: &mut Vec<u8>) {
    let Some((features, waiting)) = hub.pep.caps.answered(iq, from) else { return };
    for jid in waiting {
        if jid.domain() != hub.domain.as_str() {
            for heard in hub.pep.remote.hearing(&jid) {
                remote_last_items(hub, &heard.owner, &jid, &features);
            }
            continue;
        }
        let Some(s) = hub.registry.get(&jid) else { continue };
        if !s.available() {
            continue;
        }
        if current.is_some_and(|c| Rc::ptr_eq(&s, c)) {
            last_items(hub, &s, &features, out);
        } else {
            let mut bytes = Vec::new();
            last_items(hub, &s, &features, &mut bytes);
            if !bytes.is_empty() {
                let _ = s.push(bytes);
            }
        }
    }
}

/// The `+notify` nodes among caps features.
fn notify_nodes(features: &Features) -> Vec<&str> {
    features.iter().filter_map(|f| f.strip_suffix("+notify")).collect()
}

/// The last items a newly available session gets: its own account's nodes and
/// those of local contacts whose presence it receives.
fn last_items(hub: &Hub<'_>, session: &Session, features: &Features, out: &mut Vec<u8>) {
    let viewer = session.jid.to_bare();
    let wanted = notify_nodes(features);
    if wanted.is_empty() {
        return;
    }
    let roster = hub.store.roster_items(&viewer).unwrap_or_default();
    let contacts = roster
        .into_iter()
        .filter(|i| i.subscription.has_to() && !i.removed && i.jid.domain() == hub.domain.as_str())
        .map(|i| i.jid);
    for owner in std::iter::once(viewer.clone()).chain(contacts) {
        last_items_of(hub, &owner, &viewer, &wanted, session.jid.as_str(), out);
    }
}

/// The last item of each of `owner`'s nodes among `wanted` that `viewer` may see
/// and that sends its last item on presence, as events to `to`.
fn last_items_of(hub: &Hub<'_>, owner: &BareJid, viewer: &BareJid, wanted: &[&str], to: &str, out: &mut Vec<u8>) {
    for (name, bytes) in hub.store.pep_nodes(owner).unwrap_or_default() {
        if !wanted.contains(&name.as_str()) {
            continue;
        }
        let Some(node) = Node::decode(&bytes) else { continue };
        if node.config.send_last != SendLast::OnSubAndPresence || allowed(hub, &node.config, owner, viewer).is_err() {
            continue;
        }
        let Some(item) = node.last() else { continue };
        out.extend_from_slice(&event_message(owner, to, &item_event(&name, item)));
    }
}

/// `owner`'s last items for a remote resource, sent over federation.
fn remote_last_items(hub: &Hub<'_>, owner: &BareJid, to: &crate::jid::FullJid, features: &Features) {
    let wanted = notify_nodes(features);
    if wanted.is_empty() {
        return;
    }
    let mut bytes = Vec::new();
    last_items_of(hub, owner, &to.to_bare(), &wanted, to.as_str(), &mut bytes);
    if !bytes.is_empty() {
        hub.send_to_domain(to.domain(), &bytes);
    }
}

/// Presence from a remote contact's resource to a local account (RFC 6121 §4.4
/// inbound, broadcast to the bare JID): kept for notifications while available;
/// with new caps it gets the account's last items, after the server asked for
/// unknown caps (over federation) and verified them.
pub fn remote_presence(hub: &Hub<'_>, owner: &BareJid, from: &crate::jid::FullJid, presence: &Element<'_>) {
    if presence.attr("type").as_deref() == Some("unavailable") {
        hub.pep.remote.unavailable(owner, from);
        return;
    }
    let on_roster = hub.store.roster_item(owner, &from.to_bare()).ok().flatten().is_some_and(|i| !i.removed);
    if !on_roster {
        return;
    }
    let advertised = Advertised::of(presence);
    let ver: Option<Rc<str>> = advertised.as_ref().map(|a| Rc::from(&*a.ver));
    if !hub.pep.remote.available(owner, from, ver) {
        return;
    }
    let Some(advertised) = advertised else { return };
    match hub.pep.caps.features(&advertised.ver) {
        Some(features) => remote_last_items(hub, owner, from, &features),
        None => {
            if let Some(query) = hub.pep.caps.query(hub.domain.as_str(), from, &advertised) {
                hub.send_to_domain(from.domain(), &query);
            }
        }
    }
}

/// `owner` approved `contact`'s subscription (RFC 6121 §3.1.5): the contact's
/// available resources get the last items they want of the nodes it may now see
/// (XEP-0060 §4.3's on_sub). `current` is the session being served.
pub fn subscription_approved(
    hub: &Hub<'_>,
    owner: &BareJid,
    contact: &BareJid,
    current: Option<&Rc<Session>>,
    out: &mut Vec<u8>,
) {
    if contact.domain() != hub.domain.as_str() {
        for r in hub.pep.remote.of(owner).into_iter().filter(|r| r.jid.to_bare() == *contact) {
            if let Some(features) = r.caps.as_deref().and_then(|v| hub.pep.caps.features(v)) {
                remote_last_items(hub, owner, &r.jid, &features);
            }
        }
        return;
    }
    for s in hub.registry.sessions(contact).iter().filter(|s| s.available()) {
        let Some(features) = s.caps.borrow().as_deref().and_then(|v| hub.pep.caps.features(v)) else { continue };
        let mut bytes = Vec::new();
        last_items_of(hub, owner, contact, &notify_nodes(&features), s.jid.as_str(), &mut bytes);
        if current.is_some_and(|c| Rc::ptr_eq(s, c)) {
            out.extend_from_slice(&bytes);
        } else if !bytes.is_empty() {
            let _ = s.push(bytes);
        }
    }
}
