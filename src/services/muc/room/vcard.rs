//! The room's vCard (vcard-temp, XEP-0054, on the room's bare JID): its avatar,
//! which owners set and anyone may fetch; the photo's SHA-1 goes into
//! muc#roominfo (`muc#roominfo_avatarhash`) so clients know when to fetch again.

use super::*;

pub(super) const NS_VCARD: &str = "vcard-temp";
/// The largest room vCard kept (a small avatar; the record stores it in a
/// 16-bit length).
const MAX_ROOM_VCARD: usize = 48 * 1024;

/// A stored room vCard.
pub(super) struct RoomVcard {
    /// The `<vCard/>` element, re-emitted.
    pub bytes: Box<[u8]>,
    /// Lower-case hex SHA-1 of the decoded PHOTO/BINVAL.
    pub photo_hash: Option<String>,
}

impl Room {
    /// Get: the room's vCard (empty if none). Set: owners replace it.
    pub(super) fn vcard_query(
        &mut self,
        sender: &Jid,
        kind: Option<&str>,
        vcard: &Element<'_>,
        body: &mut Vec<u8>,
        out: &mut Outgoing,
    ) -> Result<(), StanzaError> {
        if kind == Some("get") {
            match &self.vcard {
                Some(v) => body.extend_from_slice(&v.bytes),
                None => {
                    XmlWriter::new(body).empty_ns("vCard", NS_VCARD);
                }
            }
            return Ok(());
        }
        if self.affiliation_of(&sender.to_bare()) != Affiliation::Owner {
            return Err(StanzaError::with_text(Condition::Forbidden, "only the room's owners set its vCard"));
        }
        let mut bytes = Vec::new();
        crate::xml::writer::write_element(&mut bytes, vcard, NS_CLIENT, None, &[]);
        if bytes.len() > MAX_ROOM_VCARD {
            return Err(StanzaError::with_text(Condition::NotAcceptable, "a room's vCard is at most 48 KiB"));
        }
        let photo_hash = vcard
            .child("PHOTO", NS_VCARD)
            .and_then(|p| p.child("BINVAL", NS_VCARD))
            .and_then(|b| {
                use base64::Engine;
                let text: String = b.text().chars().filter(|c| !c.is_ascii_whitespace()).collect();
                base64::engine::general_purpose::STANDARD.decode(text).ok()
            })
            .map(|photo| {
                let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &photo);
                digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
            });
        let empty = vcard.children().next().is_none();
        self.vcard = (!empty).then(|| RoomVcard { bytes: bytes.into(), photo_hash });
        self.dirty = true;
        // Occupants hear that the room's configuration (its avatar) changed.
        self.config_changed(&["104"], out);
        Ok(())
    }
}
