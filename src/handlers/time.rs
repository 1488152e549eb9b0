//! XEP-0202: Entity Time of the server (UTC).

use super::{Handler, Hub, IqReply, IqRequest, IqType};
use crate::ns::NS_TIME;
use crate::stanza::{Condition, StanzaError};
use crate::xml::writer::XmlWriter;

pub const HANDLER: Handler = Handler {
    namespace: NS_TIME,
    element: "time",
    features: &[NS_TIME],
    for_server: true,
    advertised_on_server: true,
    for_account: false,
    for_remote: true,
    handle,
};

fn handle(_: &Hub<'_>, req: &IqRequest<'_>, _: &mut Vec<u8>) -> IqReply {
    if req.iq_type != IqType::Get {
        return IqReply::Error(StanzaError::new(Condition::BadRequest));
    }
    let now = crate::clock::utc_timestamp(std::time::SystemTime::now());
    let mut p = Vec::new();
    XmlWriter::new(&mut p)
        .start("time")
        .attr("xmlns", NS_TIME)
        .open()
        .start("tzo")
        .open()
        .text("+00:00")
        .end("tzo")
        .start("utc")
        .open()
        .text(&now)
        .end("utc")
        .end("time");
    IqReply::Result(Some(p))
}
