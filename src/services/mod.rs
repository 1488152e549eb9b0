//! Built-in services on subdomains of the server's domain (the product's spec
//! §2.2), reached through the address table like any other domain: group chat
//! (XEP-0045) and the user directory (XEP-0055); and PEP (XEP-0163) and the
//! message archive (XEP-0313), the services every account's bare JID offers.

pub mod directory;
pub mod extdisco;
pub mod mam;
pub mod muc;
pub mod pep;
pub mod proxy65;
pub mod upload;

use crate::xml::writer::XmlWriter;

/// A built-in service's disco#info (XEP-0030 §3.1): its identity
/// (category, type, name), disco#info and disco#items, its own features, and
/// `extension` (a XEP-0128 form, or nothing) before the end.
pub(crate) fn write_info(body: &mut Vec<u8>, identity: (&str, &str, &str), features: &[&str], extension: &[u8]) {
    let (category, kind, name) = identity;
    let mut w = XmlWriter::new(body);
    w.start("query").attr("xmlns", crate::ns::NS_INFO).open();
    w.start("identity").attr("category", category).attr("type", kind).attr("name", name);
    w.close_empty();
    for f in [crate::ns::NS_INFO, crate::ns::NS_ITEMS].iter().chain(features) {
        w.start("feature").attr("var", f).close_empty();
    }
    body.extend_from_slice(extension);
    XmlWriter::new(body).end("query");
}
