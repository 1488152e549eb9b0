//! XEP-0363 HTTP File Upload (version 1.1, namespace `urn:xmpp:http:upload:0`) at
//! `upload_domain`: the slot requests of the hub's accounts (§4), answered with a
//! PUT and a GET URL on the HTTPS listener. A slot is stateless: its PUT URL
//! carries the slot's terms (size, type, owner, expiry) signed with HMAC-SHA256
//! under a secret kept in the store, so slots survive a restart and need no
//! table; the file's id (16 random bytes) makes both URLs unguessable. Quotas
//! (per account, in all) are counted here, in memory, from the files on disk.

use crate::hub::Hub;
use crate::jid::{Domain, Jid};
use crate::ns::{NS_INFO, NS_ITEMS};
use crate::stanza::{Condition, StanzaError};
use crate::store::uploads::{FileMeta, UploadDir, ID_LEN};
use crate::xml::writer::XmlWriter;
use crate::xml::Element;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use std::cell::RefCell;
use std::collections::HashMap;

pub const NS_UPLOAD: &str = "urn:xmpp:http:upload:0";
const NS_DATA: &str = "jabber:x:data";
const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

/// Disk space a file is counted as: its size in whole 4 KiB blocks (at least
/// one), so that a flood of empty files is bounded by the quota too.
pub fn charged(size: u64) -> u64 {
    size.max(1).div_ceil(4096).saturating_mul(4096)
}

/// The upload service's settings.
#[derive(Clone, Debug)]
pub struct UploadConfig {
    pub domain: Domain,
    pub max_file_size: u64,
    pub quota_per_account: u64,
    pub quota_total: u64,
    /// Files are removed this long after their upload (0: kept).
    pub keep_secs: u64,
    /// A slot's PUT URL is valid this long.
    pub slot_secs: u64,
}

/// What a verified PUT URL grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub id: String,
    pub owner: String,
    pub size: u64,
    pub content_type: String,
    pub filename: String,
}

/// Why a PUT is refused before its body is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The URL is not one this hub signed (403).
    BadSignature,
    /// The slot's time ran out (403).
    Expired,
    /// The account or the hub has no room for it now (413).
    Quota,
}

impl Refusal {
    pub fn text(self) -> &'static str {
        match self {
            Refusal::BadSignature => "this upload URL was not issued by the hub",
            Refusal::Expired => "this upload slot has expired: request a new one",
            Refusal::Quota => "the upload quota is reached",
        }
    }
}

#[derive(Clone, Copy, Default)]
struct Usage {
    bytes: u64,
    /// When the oldest file counted was uploaded (for the retry hint).
    oldest: u64,
}

/// The upload service.
pub struct Upload {
    pub config: UploadConfig,
    pub dir: UploadDir,
    key: ring::hmac::Key,
    /// `https://host:port`: where the HTTPS listener is reached.
    base_url: String,
    usage: RefCell<(HashMap<String, Usage>, u64)>,
}

impl Upload {
    /// The service over the files a scan of `dir` found.
    pub fn new(
        config: UploadConfig,
        secret: &[u8],
        base_url: String,
        dir: UploadDir,
        files: &[(String, FileMeta)],
    ) -> Upload {
        let upload = Upload {
            config,
            dir,
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret),
            base_url,
            usage: RefCell::new((HashMap::new(), 0)),
        };
        for (_, meta) in files {
            upload.add(&meta.owner, meta.size, meta.created);
        }
        upload
    }

    pub fn domain(&self) -> &Domain {
        &self.config.domain
    }

    /// Bytes counted for `owner` and for the hub.
    pub fn usage(&self, owner: &str) -> (u64, u64) {
        let usage = self.usage.borrow();
        (usage.0.get(owner).map_or(0, |u| u.bytes), usage.1)
    }

    fn add(&self, owner: &str, size: u64, created: u64) {
        let mut usage = self.usage.borrow_mut();
        let account = usage.0.entry(owner.to_string()).or_default();
        account.oldest = if account.bytes == 0 { created } else { account.oldest.min(created) };
        account.bytes += charged(size);
        usage.1 += charged(size);
    }

    /// Takes a file's room from the quotas (at the start of its PUT, so that
    /// parallel PUTs cannot pass them together); `Err` when there is none.
    pub fn reserve(&self, owner: &str, size: u64) -> Result<(), Refusal> {
        if !self.fits(owner, size) {
            return Err(Refusal::Quota);
        }
        self.add(owner, size, crate::clock::now_unix());
        Ok(())
    }

    /// Gives back a file's room (its PUT failed, or the file was removed).
    pub fn release(&self, owner: &str, size: u64) {
        let mut usage = self.usage.borrow_mut();
        if let Some(account) = usage.0.get_mut(owner) {
            account.bytes = account.bytes.saturating_sub(charged(size));
            if account.bytes == 0 {
                usage.0.remove(owner);
            }
        }
        usage.1 = usage.1.saturating_sub(charged(size));
    }

    fn fits(&self, owner: &str, size: u64) -> bool {
        let (mine, all) = self.usage(owner);
        mine + charged(size) <= self.config.quota_per_account && all + charged(size) <= self.config.quota_total
    }

    /// The URL path of a file (its GET URL after the base).
    pub fn path(id: &str, filename: &str) -> String {
        format!("/upload/{id}/{}", crate::http::path::encode_segment(filename))
    }

    fn signature(&self, id: &str, filename: &str, terms: &str) -> ring::hmac::Tag {
        let signed = format!("{id}\0{filename}\0{terms}");
        ring::hmac::sign(&self.key, signed.as_bytes())
    }

    /// The PUT URL's query: the slot's terms and their signature.
    fn token(&self, grant: &Grant, expires: u64) -> String {
        let terms =
            format!("{expires}.{}.{}.{}", grant.size, B64.encode(&grant.owner), B64.encode(&grant.content_type));
        let sig = self.signature(&grant.id, &grant.filename, &terms);
        format!("{terms}.{}", B64.encode(sig.as_ref()))
    }

    /// Checks a PUT URL (its id, decoded file name and `t` query value) at `now`.
    pub fn verify(&self, id: &str, filename: &str, token: &str, now: u64) -> Result<Grant, Refusal> {
        let (terms, sig) = token.rsplit_once('.').ok_or(Refusal::BadSignature)?;
        let sig = B64.decode(sig).map_err(|_| Refusal::BadSignature)?;
        let signed = format!("{id}\0{filename}\0{terms}");
        ring::hmac::verify(&self.key, signed.as_bytes(), &sig).map_err(|_| Refusal::BadSignature)?;
        let mut parts = terms.split('.');
        let mut next = || parts.next().ok_or(Refusal::BadSignature);
        let expires: u64 = next()?.parse().map_err(|_| Refusal::BadSignature)?;
        let size: u64 = next()?.parse().map_err(|_| Refusal::BadSignature)?;
        let text = |s: &str| B64.decode(s).ok().and_then(|b| String::from_utf8(b).ok()).ok_or(Refusal::BadSignature);
        let owner = text(next()?)?;
        let content_type = text(next()?)?;
        if now > expires {
            return Err(Refusal::Expired);
        }
        Ok(Grant { id: id.to_string(), owner, size, content_type, filename: filename.to_string() })
    }

    /// A stanza for the service from `from` (as its stream checked it).
    pub fn handle(&self, hub: &Hub<'_>, from: &str, stanza: &Element<'_>) {
        let Ok(sender) = from.parse::<Jid>() else { return };
        let to = self.domain().as_str();
        let kind = stanza.attr("type");
        if stanza.name() != "iq" {
            if stanza.name() == "message" && kind.as_deref() != Some("error") {
                let mut bytes = Vec::new();
                let e =
                    StanzaError::with_text(Condition::ServiceUnavailable, "the upload service answers slot requests");
                if e.write_reply(stanza, from, Some(to), &mut bytes) {
                    hub.push_from_service(self.domain(), from, bytes);
                }
            }
            return;
        }
        if !matches!(kind.as_deref(), Some("get") | Some("set")) {
            return;
        }
        let Some(payload) = stanza.children().next() else { return };
        let mut body = Vec::new();
        let result = match (kind.as_deref(), payload.ns(), payload.name()) {
            (Some("get"), NS_INFO, "query") if payload.attr("node").is_none() => {
                self.write_info(&mut body);
                Ok(())
            }
            (Some("get"), NS_ITEMS, "query") => {
                XmlWriter::new(&mut body).empty_ns("query", NS_ITEMS);
                Ok(())
            }
            (Some("get"), NS_UPLOAD, "request") if sender.domain() != hub.domain.as_str() => Err(SlotError::Plain(
                StanzaError::with_text(Condition::Forbidden, "uploads are for the hub's own users"),
            )),
            (Some("get"), NS_UPLOAD, "request") => {
                self.slot(&sender.to_bare().to_string(), &payload, crate::clock::now_unix(), &mut body)
            }
            _ => Err(SlotError::Plain(StanzaError::new(Condition::ServiceUnavailable))),
        };
        let bytes = match result {
            Ok(()) => super::muc::iq_reply(stanza, to, from, Ok(()), &body),
            Err(SlotError::Plain(e)) => super::muc::iq_reply(stanza, to, from, Err(e), &[]),
            Err(e) => error_reply(stanza, to, from, &e),
        };
        hub.push_from_service(self.domain(), from, bytes);
    }

    /// §3: the identity, the feature, and the size limit as a form (XEP-0128).
    fn write_info(&self, body: &mut Vec<u8>) {
        let mut form = Vec::new();
        let mut w = XmlWriter::new(&mut form);
        w.start("x").attr("xmlns", NS_DATA).attr("type", "result").open();
        w.start("field").attr("var", "FORM_TYPE").attr("type", "hidden").open();
        w.start("value").open().text(NS_UPLOAD).end("value").end("field");
        w.start("field").attr("var", "max-file-size").open();
        w.start("value").open().text(&self.config.max_file_size.to_string()).end("value").end("field");
        w.end("x");
        super::write_info(body, ("store", "file", "HTTP File Upload"), &[NS_UPLOAD], &form);
    }

    /// §4: a slot for `owner`, or the error that says why not.
    fn slot(&self, owner: &str, request: &Element<'_>, now: u64, body: &mut Vec<u8>) -> Result<(), SlotError> {
        let bad = |text: &str| SlotError::Plain(StanzaError::with_text(Condition::BadRequest, text));
        let filename = request.attr("filename").map(|f| clean_filename(&f)).unwrap_or_default();
        if filename.is_empty() {
            return Err(bad("the request needs a filename"));
        }
        let size: u64 = request
            .attr("size")
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| bad("the request needs a size in bytes"))?;
        if size > self.config.max_file_size {
            return Err(SlotError::TooLarge(self.config.max_file_size));
        }
        if !self.fits(owner, size) {
            let (mine, _) = self.usage(owner);
            let oldest = self.usage.borrow().0.get(owner).map_or(now, |u| u.oldest);
            // Room comes back when the oldest file expires (if files expire).
            let retry = (self.config.keep_secs > 0 && mine > 0).then(|| oldest + self.config.keep_secs);
            return Err(SlotError::Quota(retry));
        }
        let mut id = [0u8; 16];
        crate::random::fill(&mut id);
        let id = B64.encode(id);
        debug_assert_eq!(id.len(), ID_LEN);
        let content_type = clean_content_type(request.attr("content-type").as_deref());
        let grant = Grant { id, owner: owner.to_string(), size, content_type, filename };
        let get = format!("{}{}", self.base_url, Upload::path(&grant.id, &grant.filename));
        let put = format!("{get}?t={}", self.token(&grant, now + self.config.slot_secs));
        let mut w = XmlWriter::new(body);
        w.start("slot").attr("xmlns", NS_UPLOAD).open();
        w.start("put").attr("url", &put).close_empty();
        w.start("get").attr("url", &get).close_empty();
        w.end("slot");
        Ok(())
    }
}

/// §5's errors, two with a payload of their own.
enum SlotError {
    Plain(StanzaError),
    /// `not-acceptable` with `<file-too-large><max-file-size>`.
    TooLarge(u64),
    /// `resource-constraint`, with `<retry stamp>` when room comes back then.
    Quota(Option<u64>),
}

fn error_reply(iq: &Element<'_>, from: &str, to: &str, e: &SlotError) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut w = XmlWriter::new(&mut bytes);
    w.start("iq")
        .attr("from", from)
        .attr("to", to)
        .attr_opt("id", iq.attr("id").as_deref())
        .attr("type", "error")
        .open();
    let (kind, condition, text) = match e {
        SlotError::TooLarge(max) => ("modify", "not-acceptable", format!("the file is too large: at most {max} bytes")),
        _ => ("wait", "resource-constraint", "the upload quota is reached".to_string()),
    };
    w.start("error").attr("type", kind).open();
    w.empty_ns(condition, NS_STANZAS);
    w.start("text").attr("xmlns", NS_STANZAS).attr("xml:lang", "en").open().text(&text).end("text");
    match e {
        SlotError::TooLarge(max) => {
            w.start("file-too-large").attr("xmlns", NS_UPLOAD).open();
            w.start("max-file-size").open().text(&max.to_string()).end("max-file-size").end("file-too-large");
        }
        SlotError::Quota(Some(at)) => {
            let stamp = crate::clock::utc_timestamp(std::time::UNIX_EPOCH + std::time::Duration::from_secs(*at));
            w.start("retry").attr("xmlns", NS_UPLOAD).attr("stamp", &stamp).close_empty();
        }
        _ => {}
    }
    w.end("error").end("iq");
    bytes
}

/// The last path component of a client's file name, without control
/// characters, at most 200 bytes; `.` and `..` (which URLs would swallow) become
/// `file`.
fn clean_filename(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let mut out = String::new();
    for c in last.trim().chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > 200 {
            break;
        }
        out.push(c);
    }
    if out == "." || out == ".." {
        return "file".into();
    }
    out
}

/// `type/subtype` in lower case, or `application/octet-stream`: only a plain
/// media type is kept to be served back (no parameters, nothing to inject).
fn clean_content_type(t: Option<&str>) -> String {
    let t = t.unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b));
    match t.split_once('/') {
        Some((a, b)) if t.len() <= 100 && token(a) && token(b) => t,
        _ => "application/octet-stream".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(quota: u64) -> Upload {
        let config = UploadConfig {
            domain: "upload.hub".parse().unwrap(),
            max_file_size: 1000,
            quota_per_account: quota,
            quota_total: quota * 2,
            keep_secs: 86400,
            slot_secs: 300,
        };
        Upload::new(config, b"secret", "https://hub:5443".into(), UploadDir::in_data_dir("/nonexistent".as_ref()), &[])
    }

    fn grant() -> Grant {
        Grant {
            id: "a".repeat(ID_LEN),
            owner: "juliet@hub".into(),
            size: 10,
            content_type: "image/png".into(),
            filename: "p.png".into(),
        }
    }

    #[test]
    fn a_signed_slot_verifies_until_it_expires_and_nothing_in_it_can_change() {
        let up = service(1 << 20);
        let g = grant();
        let t = up.token(&g, 1000);
        assert_eq!(up.verify(&g.id, &g.filename, &t, 999), Ok(g.clone()));
        assert_eq!(up.verify(&g.id, &g.filename, &t, 1001), Err(Refusal::Expired));
        assert_eq!(up.verify(&"b".repeat(ID_LEN), &g.filename, &t, 999), Err(Refusal::BadSignature));
        assert_eq!(up.verify(&g.id, "q.png", &t, 999), Err(Refusal::BadSignature));
        let bigger = t.replacen(".10.", ".99.", 1);
        assert_eq!(up.verify(&g.id, &g.filename, &bigger, 999), Err(Refusal::BadSignature));
        let other = service(1);
        let other = Upload { key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"other"), ..other };
        assert_eq!(other.verify(&g.id, &g.filename, &t, 999), Err(Refusal::BadSignature));
        assert_eq!(up.verify(&g.id, &g.filename, "garbage", 999), Err(Refusal::BadSignature));
    }

    #[test]
    fn quotas_count_whole_blocks_and_are_given_back() {
        let up = service(8192);
        assert_eq!(charged(0), 4096);
        assert_eq!(charged(4097), 8192);
        up.reserve("juliet@hub", 10).unwrap();
        up.reserve("juliet@hub", 4096).unwrap();
        assert_eq!(up.reserve("juliet@hub", 1), Err(Refusal::Quota));
        up.reserve("romeo@hub", 8000).unwrap();
        assert_eq!(up.reserve("nurse@hub", 1), Err(Refusal::Quota), "the hub's total");
        up.release("juliet@hub", 10);
        assert_eq!(up.usage("juliet@hub"), (4096, 12288));
        up.reserve("juliet@hub", 1).unwrap();
    }

    #[test]
    fn names_and_types_are_cleaned() {
        assert_eq!(clean_filename("C:\\Users\\x\\photo.jpg"), "photo.jpg");
        assert_eq!(clean_filename("../../etc/passwd"), "passwd");
        assert_eq!(clean_filename(".."), "file");
        assert_eq!(clean_filename("a\nb\u{0}c"), "abc");
        assert_eq!(clean_filename(&"é".repeat(300)).len(), 200);
        assert_eq!(clean_content_type(Some("Image/PNG; charset=x")), "image/png");
        assert_eq!(clean_content_type(Some("text/html\r\nX: y")), "application/octet-stream");
        assert_eq!(clean_content_type(None), "application/octet-stream");
    }
}
