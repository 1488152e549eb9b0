//! XEP-0398: the XEP-0084 avatar (PEP nodes `urn:xmpp:avatar:data` and
//! `urn:xmpp:avatar:metadata`) and the XEP-0153 vCard photo kept one. The image
//! is stored once, in PEP:
//! - §3.1: the vCard is read with the `PHOTO` of the image the avatar metadata
//!   names (none when it names none), whatever was stored;
//! - §3.2: a vCard with a new photo publishes its data, then its metadata, with
//!   notifications, and is stored without it; one without a photo publishes the
//!   empty metadata;
//! - §4: available presence (broadcast and directed) carries the avatar's hash in
//!   `<x xmlns='vcard-temp:x:update'><photo/></x>` unless the client sent an
//!   empty `<photo/>` (it has none to show).

use super::node::Item;
use super::{commit_item, load, new_item_id, Ask};
use crate::hub::Hub;
use crate::jid::BareJid;
use crate::ns::NS_VCARD;
use crate::sessions::Session;
use crate::xml::writer::{write_element, write_element_amended, XmlWriter};
use crate::xml::Element;
use base64::Engine;
use std::rc::Rc;

pub const DATA: &str = "urn:xmpp:avatar:data";
pub const METADATA: &str = "urn:xmpp:avatar:metadata";
pub const NS_UPDATE: &str = "vcard-temp:x:update";

/// The image an avatar's metadata names: its hash (the item ids) and type.
struct Info {
    id: String,
    mime: String,
    bytes: usize,
}

/// The metadata's `<info/>` that is not an external URL (§3.1); None when the
/// avatar is turned off (XEP-0084 §4.7: no `<info/>`).
fn info_of(payload: &[u8]) -> Option<Info> {
    let mut found = None;
    crate::xml::for_each_stanza(payload, |m| {
        let info = m.children().find(|i| i.is("info", METADATA) && i.attr("url").is_none());
        found = info.and_then(|i| {
            Some(Info {
                id: i.attr("id")?.into_owned(),
                mime: i.attr("type").unwrap_or_default().into_owned(),
                bytes: i.attr("bytes").and_then(|b| b.parse().ok()).unwrap_or(0),
            })
        });
    });
    found
}

fn sha1_hex(data: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, data);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn decode(b64: &str) -> Option<Vec<u8>> {
    let compact: String = b64.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(compact).ok()
}

/// The hash of the account's avatar, when it has one.
fn current_hash(hub: &Hub<'_>, owner: &BareJid) -> Option<String> {
    let node = load(hub, owner, METADATA).ok().flatten()?;
    info_of(&node.last()?.payload).map(|i| i.id)
}

/// The stored vCard with its `PHOTO` replaced by `photo` (type, base64), or
/// taken out.
fn vcard_with_photo(stored: Option<&[u8]>, photo: Option<(&str, &str)>) -> Vec<u8> {
    let mut extra = Vec::new();
    if let Some((mime, b64)) = photo {
        let mut w = XmlWriter::new(&mut extra);
        w.start("PHOTO").open();
        if !mime.is_empty() {
            w.start("TYPE").open().text(mime).end("TYPE");
        }
        w.start("BINVAL").open().text(b64).end("BINVAL").end("PHOTO");
    }
    let mut out = Vec::with_capacity(extra.len() + stored.map_or(0, <[u8]>::len) + 64);
    let mut framed = false;
    if let Some(stored) = stored {
        crate::xml::for_each_stanza(stored, |vcard| {
            if vcard.is("vCard", NS_VCARD) && !framed {
                framed = true;
                write_vcard_without_photo(&mut out, vcard, &extra);
            }
        });
    }
    if !framed {
        XmlWriter::new(&mut out).start("vCard").attr("xmlns", NS_VCARD).open();
        out.extend_from_slice(&extra);
        XmlWriter::new(&mut out).end("vCard");
    }
    out
}

/// The vCard's children but `PHOTO`, then `extra`.
fn write_vcard_without_photo(out: &mut Vec<u8>, vcard: &Element<'_>, extra: &[u8]) {
    XmlWriter::new(out).start("vCard").attr("xmlns", NS_VCARD).open();
    for child in vcard.children().filter(|c| !c.is("PHOTO", NS_VCARD)) {
        write_element(out, &child, NS_VCARD, None, &[]);
    }
    out.extend_from_slice(extra);
    XmlWriter::new(out).end("vCard");
}

/// §3.1: the vCard as read: with the avatar's image as its `PHOTO` when the
/// account has avatar metadata (None: read it as stored).
pub fn vcard_as_read(hub: &Hub<'_>, owner: &BareJid, stored: Option<&[u8]>) -> Option<Vec<u8>> {
    let metadata = load(hub, owner, METADATA).ok().flatten()?;
    let photo = metadata.last().and_then(|m| info_of(&m.payload)).and_then(|info| {
        let data = load(hub, owner, DATA).ok().flatten()?;
        let image = data.items.iter().find(|i| *i.id == *info.id)?;
        let mut b64 = None;
        crate::xml::for_each_stanza(&image.payload, |d| {
            if d.is("data", DATA) {
                b64 = Some(d.text().into_owned());
            }
        });
        // The image must be the one the id names.
        let b64 = b64.filter(|b| decode(b).is_some_and(|bytes| sha1_hex(&bytes).eq_ignore_ascii_case(&info.id)))?;
        Some((info.mime, b64))
    });
    Some(vcard_with_photo(stored, photo.as_ref().map(|(m, b)| (m.as_str(), b.as_str()))))
}

/// A vCard to store without its `PHOTO` (PEP holds the image).
pub fn without_photo(vcard: &Element<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    write_vcard_without_photo(&mut out, vcard, &[]);
    out
}

/// §3.2: the owner stored a vCard: a new photo is published as the avatar (data,
/// then metadata, with their notifications); no photo turns the avatar off.
/// True when PEP holds the vCard's photo (the vCard is stored without it).
pub fn vcard_set(hub: &Hub<'_>, sender: &Rc<Session>, vcard: &Element<'_>, pushes: &mut Vec<u8>) -> bool {
    let owner = sender.jid.to_bare();
    let ask = Ask { owner: owner.clone(), requester: owner.clone(), sender };
    let current = current_hash(hub, &owner);
    let photo = vcard.child("PHOTO", NS_VCARD);
    let binval = photo.as_ref().and_then(|p| p.child("BINVAL", NS_VCARD)).map(|b| b.text().into_owned());
    let metadata = match binval.as_deref().and_then(|b| Some((b, decode(b)?))) {
        Some((b64, image)) => {
            let id = sha1_hex(&image);
            if current.as_deref() == Some(id.as_str()) {
                return true;
            }
            let mime = photo.as_ref().and_then(|p| p.child("TYPE", NS_VCARD)).map(|t| t.text().trim().to_string());
            let mut data = Vec::with_capacity(b64.len() + 64);
            XmlWriter::new(&mut data).start("data").attr("xmlns", DATA).open().text(b64.trim()).end("data");
            if let Err(e) = publish(hub, &ask, DATA, &id, data, pushes) {
                log::debug!("avatar of {owner} from its vCard not published: {e:?}");
                return false;
            }
            let info = Info { id, mime: mime.unwrap_or_else(|| "image/png".into()), bytes: image.len() };
            let mut m = Vec::with_capacity(200);
            let mut w = XmlWriter::new(&mut m);
            w.start("metadata").attr("xmlns", METADATA).open();
            w.start("info").attr("id", &info.id).attr("type", &info.mime).attr("bytes", &info.bytes.to_string());
            w.close_empty().end("metadata");
            (info.id, m)
        }
        None if current.is_some() && photo.is_none() => {
            let mut m = Vec::new();
            XmlWriter::new(&mut m).start("metadata").attr("xmlns", METADATA).close_empty();
            (new_item_id(), m)
        }
        None => return false,
    };
    let with_image = binval.is_some();
    match publish(hub, &ask, METADATA, &metadata.0, metadata.1, pushes) {
        Ok(()) => with_image,
        Err(e) => {
            log::debug!("avatar metadata of {owner} from its vCard not published: {e:?}");
            false
        }
    }
}

fn publish(
    hub: &Hub<'_>,
    ask: &Ask<'_>,
    name: &str,
    id: &str,
    payload: Vec<u8>,
    pushes: &mut Vec<u8>,
) -> Result<(), crate::stanza::StanzaError> {
    let (node, new) = match load(hub, &ask.owner, name)? {
        Some(node) => (node, false),
        None => (super::node::Node::default(), true),
    };
    commit_item(hub, ask, name, node, new, &Item { id: id.into(), payload: payload.into() }, pushes)
}

/// §4: available presence with the avatar's hash, when it must change: None to
/// send it as it is (no avatar, the hash already there, or an empty `<photo/>`).
pub fn with_photo_hash(hub: &Hub<'_>, owner: &BareJid, presence: &Element<'_>) -> Option<Vec<u8>> {
    let update = presence.child("x", NS_UPDATE);
    let sent = update.as_ref().and_then(|x| x.child("photo", NS_UPDATE)).map(|p| p.text().trim().to_string());
    if sent.as_deref() == Some("") {
        return None;
    }
    let hash = current_hash(hub, owner)?;
    if sent.as_deref() == Some(hash.as_str()) {
        return None;
    }
    let mut x = Vec::with_capacity(100);
    let mut w = XmlWriter::new(&mut x);
    w.start("x").attr("xmlns", NS_UPDATE).open().start("photo").open().text(&hash).end("photo").end("x");
    let mut out = Vec::with_capacity(256);
    write_element_amended(&mut out, presence, crate::ns::NS_CLIENT, NS_UPDATE, &x);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vcard_keeps_its_fields_and_gets_one_photo() {
        let stored = b"<vCard xmlns='vcard-temp'><FN>Juliet</FN><PHOTO><TYPE>image/gif</TYPE><BINVAL>R0lG</BINVAL></PHOTO><NICKNAME>J</NICKNAME></vCard>";
        let out = String::from_utf8(vcard_with_photo(Some(stored), Some(("image/png", "iVBO")))).unwrap();
        assert_eq!(
            out,
            "<vCard xmlns='vcard-temp'><FN>Juliet</FN><NICKNAME>J</NICKNAME><PHOTO><TYPE>image/png</TYPE><BINVAL>iVBO</BINVAL></PHOTO></vCard>"
        );
        let out = String::from_utf8(vcard_with_photo(Some(stored), None)).unwrap();
        assert_eq!(out, "<vCard xmlns='vcard-temp'><FN>Juliet</FN><NICKNAME>J</NICKNAME></vCard>");
        let out = String::from_utf8(vcard_with_photo(None, Some(("", "iVBO")))).unwrap();
        assert_eq!(out, "<vCard xmlns='vcard-temp'><PHOTO><BINVAL>iVBO</BINVAL></PHOTO></vCard>");
    }

    #[test]
    fn the_metadata_names_its_embedded_image_not_a_url() {
        let m = b"<metadata xmlns='urn:xmpp:avatar:metadata'><info id='x' url='https://e/x.png' type='image/png' bytes='1'/>\
                  <info id='ab12' type='image/png' bytes='99'/></metadata>";
        let info = info_of(m).unwrap();
        assert_eq!((info.id.as_str(), info.mime.as_str(), info.bytes), ("ab12", "image/png", 99));
        assert!(info_of(b"<metadata xmlns='urn:xmpp:avatar:metadata'/>").is_none());
    }
}
