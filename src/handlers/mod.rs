//! Server-side handlers, one module per protocol feature (Prosody's `mod_*` idea):
//! each declares the iq payload it answers and the service-discovery features it
//! announces, in the one [`HANDLERS`] table the router dispatches through. Adding a
//! XEP touches its own file and one line here. Handlers don't import each other.

pub mod blocking;
pub mod carbons;
pub mod disco;
pub mod last;
pub mod offline;
pub mod ping;
pub mod presence;
pub mod private;
pub mod roster;
pub mod roster_items;
pub mod session;
pub mod subscription;
pub mod time;
pub mod vcard;
pub mod version;

use crate::hub::Hub;
use crate::jid::BareJid;
use crate::sessions::Session;
use crate::stanza::StanzaError;
use crate::xml::writer::XmlWriter;
use crate::xml::Element;
use std::rc::Rc;

/// Limits of the IM features (config keys).
#[derive(Clone, Copy, Debug)]
pub struct ImLimits {
    pub max_roster_items: usize,
    /// Offline storage quotas (`max_offline_*`).
    pub offline: crate::store::offline::OfflineQuota,
    /// Bytes of offline messages sent to a session at once (half its queue).
    pub offline_batch_bytes: usize,
    /// XEP-0049 documents per account (`max_private_items`).
    pub max_private_items: usize,
    /// PEP's bounds (`pep_*`).
    pub pep: crate::services::pep::PepLimits,
}

/// `get` or `set` (results and errors are never dispatched to handlers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IqType {
    Get,
    Set,
}

/// An iq addressed to the server, or to an account's bare JID on its behalf.
pub struct IqRequest<'a> {
    pub iq_type: IqType,
    pub payload: Element<'a>,
    pub sender: &'a Rc<Session>,
    /// The bare JID the iq was addressed to, if not the server's domain.
    pub on_behalf_of: Option<&'a BareJid>,
}

/// A handler's answer: a result with an optional payload (XML), a result followed
/// by stanzas for the sender (e.g. roster pushes after a versioned roster get), or
/// an error.
pub enum IqReply {
    Result(Option<Vec<u8>>),
    ResultThen(Vec<Vec<u8>>),
    /// Stanzas for the (local) requester before the result with its payload
    /// (XEP-0313's results, then `<fin/>`).
    ResultAfter(Vec<u8>, Option<Vec<u8>>),
    Error(StanzaError),
}

/// One entry of the handler table.
pub struct Handler {
    /// The payload element `{namespace}name` it answers.
    pub namespace: &'static str,
    pub element: &'static str,
    /// Features announced in disco#info (XEP-0030).
    pub features: &'static [&'static str],
    /// Answers on the server's own JID (`to` = domain or absent).
    pub for_server: bool,
    /// Its features are listed in the server's disco#info. Not the same as
    /// `for_server`: blocking, vCard and private storage answer on the account's
    /// behalf but clients look for them on the server (XEP-0191 §2, REVIEW R2).
    pub advertised_on_server: bool,
    /// Answers on behalf of an account (`to` = the sender's own bare JID).
    pub for_account: bool,
    /// Answers entities of other servers too (over federation); only handlers that
    /// read public data and keep no per-sender state.
    pub for_remote: bool,
    /// Writes pushes to other sessions itself; `out` is the sender's own output.
    pub handle: fn(&Hub<'_>, &IqRequest<'_>, &mut Vec<u8>) -> IqReply,
}

/// Every handler; the router finds one by the payload's namespace and name.
pub const HANDLERS: &[Handler] = &[
    ping::HANDLER,
    session::HANDLER,
    roster::HANDLER,
    disco::INFO,
    disco::ITEMS,
    version::HANDLER,
    carbons::ENABLE,
    carbons::DISABLE,
    vcard::HANDLER,
    private::HANDLER,
    time::HANDLER,
    blocking::BLOCKLIST,
    blocking::BLOCK,
    blocking::UNBLOCK,
    last::HANDLER,
    crate::services::pep::HANDLER,
    crate::services::pep::OWNER,
    crate::services::mam::QUERY,
    crate::services::mam::METADATA,
    crate::services::mam::PREFS,
    crate::services::extdisco::SERVICES,
    crate::services::extdisco::CREDENTIALS,
];

/// The handler for a payload, if any.
pub fn find(payload: &Element<'_>) -> Option<&'static Handler> {
    HANDLERS.iter().find(|h| h.namespace == payload.ns() && h.element == payload.name())
}

/// Writes a result iq: `<iq type='result' id=… to=… from=…>payload</iq>`.
pub fn write_result(id: Option<&str>, from: Option<&str>, to: &str, payload: Option<&[u8]>, out: &mut Vec<u8>) {
    let mut w = XmlWriter::new(out);
    w.start("iq").attr_opt("from", from).attr("to", to).attr_opt("id", id).attr("type", "result");
    match payload {
        None => {
            w.close_empty();
        }
        Some(p) => {
            w.open();
            out.extend_from_slice(p);
            XmlWriter::new(out).end("iq");
        }
    }
}
