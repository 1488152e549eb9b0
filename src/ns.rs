//! Every XML namespace the server speaks, in one leaf module: the layers meet on
//! these names without importing each other (REVIEW A3).

// RFC 6120 streams and stanzas.
/// `http://etherx.jabber.org/streams`
pub const NS_STREAMS: &str = "http://etherx.jabber.org/streams";
/// The client-to-server content namespace (§4.8.2).
pub const NS_CLIENT: &str = "jabber:client";
/// `jabber:server`
pub const NS_SERVER: &str = "jabber:server";
/// `urn:ietf:params:xml:ns:xmpp-streams`
pub const NS_STREAMS_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
/// `urn:ietf:params:xml:ns:xmpp-stanzas`
pub const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
/// `urn:ietf:params:xml:ns:xmpp-tls`
pub const NS_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
/// `urn:ietf:params:xml:ns:xmpp-sasl`
pub const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
/// `urn:ietf:params:xml:ns:xmpp-bind`
pub const NS_BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
/// `urn:ietf:params:xml:ns:xmpp-session`
pub const NS_SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
/// XEP-0440: SASL channel-binding type capability.
pub const NS_SASL_CB: &str = "urn:xmpp:sasl-cb:0";

// Federation and components.
/// `jabber:server:dialback` (the `db:` prefix).
pub const NS_DIALBACK: &str = "jabber:server:dialback";
/// The stream feature announcing dialback with error support (XEP-0220 §2.4).
pub const NS_DIALBACK_FEATURE: &str = "urn:xmpp:features:dialback";
/// `jabber:component:accept`
pub const NS_COMPONENT: &str = "jabber:component:accept";

// IM (RFC 6121) and XEPs.
/// `urn:xmpp:blocking`
pub const NS_BLOCKING: &str = "urn:xmpp:blocking";
/// `urn:xmpp:blocking:errors`
pub const NS_BLOCKING_ERRORS: &str = "urn:xmpp:blocking:errors";
/// `http://jabber.org/protocol/caps`
pub const NS_CAPS: &str = "http://jabber.org/protocol/caps";
/// XEP-0352 client state indication.
pub const NS_CSI: &str = "urn:xmpp:csi:0";
/// `urn:xmpp:carbons:2`
pub const NS_CARBONS: &str = "urn:xmpp:carbons:2";
/// `urn:xmpp:forward:0`
pub const NS_FORWARD: &str = "urn:xmpp:forward:0";
/// `urn:xmpp:hints`
pub const NS_HINTS: &str = "urn:xmpp:hints";
/// XEP-0203 delayed delivery.
pub const NS_DELAY: &str = "urn:xmpp:delay";
/// `http://jabber.org/protocol/disco#info`
pub const NS_INFO: &str = "http://jabber.org/protocol/disco#info";
/// `http://jabber.org/protocol/disco#items`
pub const NS_ITEMS: &str = "http://jabber.org/protocol/disco#items";
/// `jabber:iq:last`
pub const NS_LAST: &str = "jabber:iq:last";
/// `urn:xmpp:ping`
pub const NS_PING: &str = "urn:xmpp:ping";
/// `jabber:iq:private`
pub const NS_PRIVATE: &str = "jabber:iq:private";
/// `jabber:iq:roster`
pub const NS_ROSTER: &str = "jabber:iq:roster";
/// Advertised as a stream feature per RFC 6121 §2.6.2.
pub const NS_ROSTER_VER: &str = "urn:xmpp:features:rosterver";
/// RFC 6121 §3.4: subscription pre-approval (stream feature).
pub const NS_PRE_APPROVAL: &str = "urn:xmpp:features:pre-approval";
/// `urn:xmpp:time`
pub const NS_TIME: &str = "urn:xmpp:time";
/// `vcard-temp`
pub const NS_VCARD: &str = "vcard-temp";
/// `jabber:iq:version`
pub const NS_VERSION: &str = "jabber:iq:version";

/// XEP-0045: a group-chat join (and what an error to one echoes).
pub const NS_MUC: &str = "http://jabber.org/protocol/muc";
