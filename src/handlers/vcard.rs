//! XEP-0054: vcard-temp. An account sets its own vCard; anyone on the server may
//! read it (clients show nicknames and avatars from it, XEP-0153). Its photo and
//! the PEP avatar are one (XEP-0398, `pep::avatar`).

use super::{Handler, Hub, IqReply, IqRequest, IqType};
use crate::ns::NS_VCARD;
use crate::services::pep::avatar;
use crate::stanza::{Condition, StanzaError};
use crate::xml::writer::{write_element, XmlWriter};

/// The vCard's key among the account's XML documents.
pub const KEY: &str = "vcard";

pub const HANDLER: Handler = Handler {
    namespace: NS_VCARD,
    element: "vCard",
    features: &[NS_VCARD],
    for_server: false,
    advertised_on_server: true,
    for_account: true,
    for_remote: true,
    handle,
};

fn handle(hub: &Hub<'_>, req: &IqRequest<'_>, pushes: &mut Vec<u8>) -> IqReply {
    let own = req.sender.jid.to_bare();
    let owner = req.on_behalf_of.cloned().unwrap_or_else(|| own.clone());
    match req.iq_type {
        IqType::Get => match hub.store.account_xml(&owner, KEY) {
            Ok(stored) => match avatar::vcard_as_read(hub, &owner, stored.as_deref()).or(stored) {
                Some(xml) => IqReply::Result(Some(xml)),
                None => {
                    let mut empty = Vec::new();
                    XmlWriter::new(&mut empty).empty_ns("vCard", NS_VCARD);
                    IqReply::Result(Some(empty))
                }
            },
            Err(e) => {
                log::error!("vcard: {e}");
                IqReply::Error(StanzaError::new(Condition::InternalServerError))
            }
        },
        IqType::Set if owner != own => IqReply::Error(StanzaError::new(Condition::Forbidden)),
        IqType::Set => {
            let xml = if avatar::vcard_set(hub, req.sender, &req.payload, pushes) {
                avatar::without_photo(&req.payload)
            } else {
                let mut xml = Vec::new();
                write_element(&mut xml, &req.payload, "", None, &[]);
                xml
            };
            match hub.store.put_account_xml(&owner, KEY, &xml, usize::MAX) {
                Ok(_) => IqReply::Result(None),
                Err(e) => {
                    log::error!("vcard: {e}");
                    IqReply::Error(StanzaError::new(Condition::InternalServerError))
                }
            }
        }
    }
}
