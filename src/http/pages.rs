//! What the listener serves by itself: `/`, a small page that names the hub and
//! offers its local CA for download (with the fingerprint to compare), and
//! XEP-0156 discovery of the WebSocket endpoint (`/.well-known/host-meta` and
//! `/.well-known/host-meta.json`, RFC 6415).

/// The page at `/`. `ca_fingerprint`: the local CA's SHA-256 (none when the hub
/// uses a configured certificate).
pub fn index_html(domain: &str, ca_fingerprint: Option<&str>, websocket_url: &str) -> String {
    let domain = escape(domain);
    let ca = match ca_fingerprint {
        Some(fp) => format!(
            "<h2>Trust this hub</h2>\n<p>Its certificates come from its own CA. Install the CA on your device \
             (<a href=\"/ca.pem\">ca.pem</a> for Linux, Firefox and Android, <a href=\"/ca.crt\">ca.crt</a> for \
             Windows and macOS, <a href=\"/ca.mobileconfig\">ca.mobileconfig</a> for iOS), and check that its \
             SHA-256 fingerprint is</p>\n<pre>{}</pre>\n",
            escape(fp)
        ),
        None => String::new(),
    };
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{domain}</title></head>\n<body>\n<h1>{domain}</h1>\n\
         <p>A wrenhub chat hub. Sign in with any XMPP client (Conversations, Dino, Gajim, Monal) as \
         <code>name@{domain}</code>; web clients connect to <code>{}</code>.</p>\n{ca}</body></html>\n",
        escape(websocket_url)
    )
}

/// `/.well-known/host-meta` (RFC 6415 XRD), XEP-0156 §3.
pub fn host_meta_xml(websocket_url: &str) -> String {
    format!(
        "<?xml version='1.0' encoding='utf-8'?>\n<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>\n  \
         <Link rel=\"urn:xmpp:alt-connections:websocket\" href=\"{}\"/>\n</XRD>\n",
        escape(websocket_url)
    )
}

/// `/.well-known/host-meta.json`, XEP-0156 §3.
pub fn host_meta_json(websocket_url: &str) -> String {
    let href: String = websocket_url.chars().filter(|c| !matches!(c, '"' | '\\') && !c.is_control()).collect();
    format!("{{\"links\":[{{\"rel\":\"urn:xmpp:alt-connections:websocket\",\"href\":\"{href}\"}}]}}\n")
}

fn escape(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    crate::xml::text::escape_attr(&mut out, s);
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pages_name_the_hub_and_its_endpoint() {
        let page = index_html("hub.lan", Some("AB:CD"), "wss://hub.lan:5443/xmpp-websocket");
        assert!(page.contains("<h1>hub.lan</h1>") && page.contains("AB:CD") && page.contains("/ca.pem"));
        assert!(!index_html("hub.lan", None, "wss://x/").contains("ca.pem"));
        assert!(host_meta_xml("wss://h:1/xmpp-websocket").contains("href=\"wss://h:1/xmpp-websocket\""));
        assert!(host_meta_json("wss://h:1/x").contains("\"href\":\"wss://h:1/x\""));
    }
}
