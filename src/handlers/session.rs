//! The legacy session establishment request (RFC 3921 §3; RFC 6121 Appendix E):
//! offered as optional, and answered with a result.

use super::{Handler, Hub, IqReply, IqRequest, IqType};
use crate::ns::NS_SESSION;
use crate::stanza::{Condition, StanzaError};

pub const HANDLER: Handler = Handler {
    namespace: NS_SESSION,
    element: "session",
    features: &[],
    for_server: true,
    advertised_on_server: true,
    // Clients send it without 'to', which RFC 6120 §10.3.3 reads as "on behalf of the account".
    for_account: true,
    for_remote: false,
    handle,
};

fn handle(_: &Hub<'_>, req: &IqRequest<'_>, _: &mut Vec<u8>) -> IqReply {
    match req.iq_type {
        IqType::Set => IqReply::Result(None),
        IqType::Get => IqReply::Error(StanzaError::new(Condition::BadRequest)),
    }
}
