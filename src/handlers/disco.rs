//! XEP-0030: Service Discovery. disco#info on the server lists the identity and
//! every feature the handler table announces; on an account it lists the account
//! identity and PEP's (XEP-0163), and on one of its nodes the node's (XEP-0060
//! §5.3). disco#items on the server lists the connected
//! components and services; on an account, the PEP nodes the requester may see.

use super::{Handler, Hub, IqReply, IqRequest, IqType, HANDLERS};
use crate::ns::{NS_INFO, NS_ITEMS};
use crate::stanza::{Condition, StanzaError};
use crate::xml::writer::XmlWriter;

pub const INFO: Handler = Handler {
    namespace: NS_INFO,
    element: "query",
    features: &[NS_INFO, NS_ITEMS],
    for_server: true,
    advertised_on_server: true,
    for_account: true,
    for_remote: true,
    handle: info,
};

pub const ITEMS: Handler = Handler {
    namespace: NS_ITEMS,
    element: "query",
    features: &[],
    for_server: true,
    advertised_on_server: true,
    for_account: true,
    for_remote: true,
    handle: items,
};

fn info(hub: &Hub<'_>, req: &IqRequest<'_>, _: &mut Vec<u8>) -> IqReply {
    if req.iq_type != IqType::Get {
        return IqReply::Error(StanzaError::new(Condition::BadRequest));
    }
    // XEP-0115 §6.2: the caps node#ver answers like the plain query.
    let node = req.payload.attr("node");
    if let (Some(node), Some(owner)) = (&node, req.on_behalf_of) {
        // XEP-0060 §5.3: a PEP node's own information.
        return match crate::services::pep::node_info(hub, owner, &req.sender.jid.to_bare(), node) {
            Ok(p) => IqReply::Result(Some(p)),
            Err(e) => IqReply::Error(e),
        };
    }
    if let Some(node) = &node {
        let ours = format!("{CAPS_NODE}#{}", server_caps_ver());
        if **node != *ours {
            return IqReply::Error(StanzaError::new(Condition::ItemNotFound));
        }
    }
    let mut p = Vec::new();
    let mut w = XmlWriter::new(&mut p);
    w.start("query").attr("xmlns", NS_INFO).attr_opt("node", node.as_deref()).open();
    if req.on_behalf_of.is_some() {
        w.start("identity").attr("category", "account").attr("type", "registered").close_empty();
        // XEP-0163 §6.1: the account is a virtual pubsub service.
        w.start("identity").attr("category", "pubsub").attr("type", "pep").close_empty();
    } else {
        w.start("identity").attr("category", "server").attr("type", "im").attr("name", "wrenhub").close_empty();
    }
    let features = if req.on_behalf_of.is_some() {
        let mut f: Vec<&str> = HANDLERS
            .iter()
            .filter(|h| h.for_account)
            .flat_map(|h| h.features.iter().copied())
            // The archive's, only when it is on.
            .filter(|f| hub.mam.is_some() || !f.starts_with(crate::services::mam::NS_MAM))
            .collect();
        f.sort_unstable();
        f.dedup();
        f
    } else {
        server_features()
    };
    for f in features {
        XmlWriter::new(&mut p).start("feature").attr("var", f).close_empty();
    }
    XmlWriter::new(&mut p).end("query");
    IqReply::Result(Some(p))
}

/// The server's items are the connected components (XEP-0114 gateways) and the
/// built-in services.
fn items(hub: &Hub<'_>, req: &IqRequest<'_>, _: &mut Vec<u8>) -> IqReply {
    if req.iq_type != IqType::Get {
        return IqReply::Error(StanzaError::new(Condition::BadRequest));
    }
    let mut domains = if req.on_behalf_of.is_none() { hub.components.domains() } else { Vec::new() };
    if let (None, Some(muc)) = (req.on_behalf_of, hub.muc) {
        domains.push(muc.domain().as_str().to_string());
    }
    if let (None, Some(directory)) = (req.on_behalf_of, hub.directory) {
        domains.push(directory.domain().as_str().to_string());
    }
    // XEP-0363 §3: clients find the upload service among the server's items.
    if let (None, Some(upload)) = (req.on_behalf_of, hub.upload) {
        domains.push(upload.domain().as_str().to_string());
    }
    // XEP-0065 §4: and the bytestreams proxy.
    if let (None, Some(proxy)) = (req.on_behalf_of, hub.proxy65) {
        domains.push(proxy.domain().as_str().to_string());
    }
    // XEP-0163 §6.2 (XEP-0060 §5.2): an account's items are the nodes the
    // requester may see.
    let nodes = match req.on_behalf_of {
        Some(owner) if req.payload.attr("node").is_none() => {
            crate::services::pep::visible_nodes(hub, owner, &req.sender.jid.to_bare())
        }
        _ => Vec::new(),
    };
    let mut p = Vec::new();
    let mut w = XmlWriter::new(&mut p);
    w.start("query").attr("xmlns", NS_ITEMS);
    if domains.is_empty() && nodes.is_empty() {
        w.close_empty();
    } else {
        w.open();
        for d in &domains {
            XmlWriter::new(&mut p).start("item").attr("jid", d).close_empty();
        }
        if let Some(owner) = req.on_behalf_of {
            for n in &nodes {
                XmlWriter::new(&mut p).start("item").attr("jid", owner.as_str()).attr("node", n).close_empty();
            }
        }
        XmlWriter::new(&mut p).end("query");
    }
    IqReply::Result(Some(p))
}

/// XEP-0115 §5.1: the verification string of the server's disco#info (identity
/// `server/im//wrenhub`, then the sorted features), SHA-1, base64.
pub fn server_caps_ver() -> String {
    use base64::Engine;
    let mut s = String::from("server/im//wrenhub<");
    for f in server_features() {
        s.push_str(f);
        s.push('<');
    }
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, s.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// Features the server announces that no iq handler stands for.
const SERVER_ONLY_FEATURES: &[&str] = &[
    // XEP-0160 §5: messages for an offline account are stored.
    "msgoffline",
];

/// The server's disco#info features, sorted (XEP-0115 hashes them in this order).
fn server_features() -> Vec<&'static str> {
    let mut features: Vec<&str> = HANDLERS
        .iter()
        .filter(|h| h.advertised_on_server)
        .flat_map(|h| h.features.iter().copied())
        .chain(SERVER_ONLY_FEATURES.iter().copied())
        .collect();
    features.sort_unstable();
    features.dedup();
    features
}

/// The node wrenhub names in its caps.
pub const CAPS_NODE: &str = "https://wrenhub.invalid/caps";
