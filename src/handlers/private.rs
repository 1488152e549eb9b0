//! XEP-0049: private XML storage — an account keeps small XML documents on the
//! server, one per `{namespace}name`, at most `max_private_items`. XEP-0048's
//! bookmarks document is PEP's XEP-0402 node seen the old way (`pep::bookmarks`).

use super::{Handler, Hub, IqReply, IqRequest, IqType};
use crate::ns::NS_PRIVATE;
use crate::services::pep::bookmarks;
use crate::stanza::{Condition, StanzaError};
use crate::xml::writer::{write_element, XmlWriter};

pub const HANDLER: Handler = Handler {
    namespace: NS_PRIVATE,
    element: "query",
    features: &[NS_PRIVATE],
    for_server: false,
    advertised_on_server: true,
    for_account: true,
    for_remote: false,
    handle,
};

fn handle(hub: &Hub<'_>, req: &IqRequest<'_>, pushes: &mut Vec<u8>) -> IqReply {
    let owner = req.sender.jid.to_bare();
    if req.on_behalf_of.is_some_and(|b| *b != owner) {
        return IqReply::Error(StanzaError::new(Condition::Forbidden));
    }
    let mut children = req.payload.children();
    let (Some(item), None) = (children.next(), children.next()) else {
        return IqReply::Error(StanzaError::with_text(Condition::BadRequest, "exactly one child element"));
    };
    // §3: reserved namespaces cannot be stored.
    if matches!(item.ns(), "" | "jabber:client" | "jabber:server" | "jabber:component:accept" | NS_PRIVATE) {
        return IqReply::Error(StanzaError::new(Condition::NotAcceptable));
    }
    let key = format!("private {{{}}}{}", item.ns(), item.name());
    let wrap = |inner: &[u8]| {
        let mut p = Vec::new();
        XmlWriter::new(&mut p).start("query").attr("xmlns", NS_PRIVATE).open();
        p.extend_from_slice(inner);
        XmlWriter::new(&mut p).end("query");
        p
    };
    let bookmarks = item.is("storage", bookmarks::NS_STORAGE);
    match req.iq_type {
        IqType::Get => match hub.store.account_xml(&owner, &key) {
            Ok(stored) => {
                let converted = if bookmarks { bookmarks::as_storage(hub, &owner, stored.as_deref()) } else { None };
                match converted.or(stored) {
                    Some(xml) => IqReply::Result(Some(wrap(&xml))),
                    None => {
                        // Nothing stored: the empty element as asked for.
                        let mut empty = Vec::new();
                        XmlWriter::new(&mut empty).empty_ns(item.name(), item.ns());
                        IqReply::Result(Some(wrap(&empty)))
                    }
                }
            }
            Err(e) => {
                log::error!("private storage: {e}");
                IqReply::Error(StanzaError::new(Condition::InternalServerError))
            }
        },
        IqType::Set => {
            if bookmarks {
                if let Err(e) = bookmarks::from_storage(hub, req.sender, &item, pushes) {
                    return IqReply::Error(e);
                }
            }
            let mut xml = Vec::new();
            write_element(&mut xml, &item, NS_PRIVATE, None, &[]);
            match hub.store.put_account_xml(&owner, &key, &xml, hub.limits.max_private_items) {
                Ok(true) => IqReply::Result(None),
                Ok(false) => IqReply::Error(StanzaError::with_text(Condition::NotAllowed, "max_private_items reached")),
                Err(e) => {
                    log::error!("private storage: {e}");
                    IqReply::Error(StanzaError::new(Condition::InternalServerError))
                }
            }
        }
    }
}
