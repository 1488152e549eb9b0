//! XEP-0092: Software Version of the server.

use super::{Handler, Hub, IqReply, IqRequest, IqType};
use crate::ns::NS_VERSION;
use crate::stanza::{Condition, StanzaError};
use crate::xml::writer::XmlWriter;

pub const HANDLER: Handler = Handler {
    namespace: NS_VERSION,
    element: "query",
    features: &[NS_VERSION],
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
    let mut p = Vec::new();
    XmlWriter::new(&mut p)
        .start("query")
        .attr("xmlns", NS_VERSION)
        .open()
        .start("name")
        .open()
        .text("wrenhub")
        .end("name")
        .start("version")
        .open()
        .text(env!("CARGO_PKG_VERSION"))
        .end("version")
        .end("query");
    IqReply::Result(Some(p))
}
