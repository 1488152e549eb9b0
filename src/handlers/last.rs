//! XEP-0012: Last Activity. The server reports its uptime; for an account, the
//! time since its last session ended (0 while it is online), with the status text
//! of its last unavailable presence, to the account itself and to contacts allowed
//! to see its presence (§4).

use super::{Handler, Hub, IqReply, IqRequest, IqType};
use crate::jid::BareJid;
use crate::ns::NS_LAST;
use crate::stanza::{Condition, StanzaError};
use crate::xml::writer::XmlWriter;

const KEY: &str = "last-logout";

/// Bytes of status text kept (the rest is cut at a character boundary).
pub const MAX_STATUS: usize = 1024;

pub const HANDLER: Handler = Handler {
    namespace: NS_LAST,
    element: "query",
    features: &[NS_LAST],
    for_server: true,
    advertised_on_server: true,
    for_account: true,
    for_remote: true,
    handle,
};

fn answer(seconds: u64, status: &str) -> IqReply {
    let mut p = Vec::new();
    let mut w = XmlWriter::new(&mut p);
    w.start("query").attr("xmlns", NS_LAST).attr("seconds", &seconds.to_string());
    if status.is_empty() {
        w.close_empty();
    } else {
        w.open().text(status).end("query");
    }
    IqReply::Result(Some(p))
}

fn handle(hub: &Hub<'_>, req: &IqRequest<'_>, _: &mut Vec<u8>) -> IqReply {
    if req.iq_type != IqType::Get {
        return IqReply::Error(StanzaError::new(Condition::BadRequest));
    }
    let Some(account) = req.on_behalf_of else {
        return answer(crate::clock::uptime_secs(), "");
    };
    let asker = req.sender.jid.to_bare();
    let allowed = *account == asker
        || matches!(
            hub.store.roster_item(account, &asker),
            Ok(Some(item)) if item.subscription.has_from()
        );
    if !allowed {
        return IqReply::Error(StanzaError::new(Condition::Forbidden));
    }
    // Online: for the account itself any session counts; contacts see only
    // available ones (a session without presence stays invisible to them).
    let sessions = hub.registry.sessions(account);
    if sessions.iter().any(|s| *account == asker || s.available()) {
        return answer(0, "");
    }
    match hub.store.account_xml(account, KEY) {
        Ok(Some(b)) if b.len() >= 8 => {
            let at = u64::from_be_bytes(b[..8].try_into().unwrap_or([0; 8]));
            answer(crate::clock::now_unix().saturating_sub(at), &String::from_utf8_lossy(&b[8..]))
        }
        Ok(_) => IqReply::Error(StanzaError::new(Condition::ItemNotFound)),
        Err(e) => {
            log::error!("last activity: {e}");
            IqReply::Error(StanzaError::new(Condition::InternalServerError))
        }
    }
}

/// Records that the account's last session ended now, with the status text of its
/// unavailable presence: `seconds (u64) ‖ status (UTF-8)`.
pub fn record_logout(hub: &Hub<'_>, account: &BareJid, status: Option<&str>) {
    let mut value = crate::clock::now_unix().to_be_bytes().to_vec();
    value.extend_from_slice(status.unwrap_or_default().as_bytes());
    if let Err(e) = hub.store.put_account_xml_advisory(account, KEY, &value) {
        log::error!("last activity: {e}");
    }
}
