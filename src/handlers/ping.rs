//! XEP-0199: XMPP Ping — the server answers pings to itself.

use super::{Handler, Hub, IqReply, IqRequest, IqType};
use crate::ns::NS_PING;
use crate::stanza::{Condition, StanzaError};

pub const HANDLER: Handler = Handler {
    namespace: NS_PING,
    element: "ping",
    features: &[NS_PING],
    for_server: true,
    advertised_on_server: true,
    for_account: true,
    for_remote: true,
    handle,
};

fn handle(_: &Hub<'_>, req: &IqRequest<'_>, _: &mut Vec<u8>) -> IqReply {
    match req.iq_type {
        IqType::Get => IqReply::Result(None),
        IqType::Set => IqReply::Error(StanzaError::new(Condition::BadRequest)),
    }
}
