"""Log in with slixmpp's default settings, on the first connection.

    default_login.py --port P --ca CA.pem --jid juliet@localhost/balcony --password balcony

What poezio does: no mechanism chosen, so slixmpp walks its list. Slixmpp 1.8
(Debian 12's python3-slixmpp, poezio's library) binds channels with tls-unique only,
which a TLS 1.3 server cannot offer: its -PLUS attempts and the "y" downgrade
signal fail without testing the password, and must not use up the stream's
attempts. Proves: the session starts on one connection, after however many SASL
failures; prints the sequence of mechanisms tried, and the one that worked.
"""

import xml.etree.ElementTree as ET

import slixmpp

from check import check, close, connect, main

SASL = "urn:ietf:params:xml:ns:xmpp-sasl"


async def run(args):
    xmpp, started = connect(args, args.jid, args.password, every_failure_ends=False)
    tried, connections = [], []
    xmpp.add_event_handler("connected", lambda _: connections.append(1))

    def sent(data):
        # Every <auth mechanism='…'> slixmpp writes (a stanza object or raw XML).
        text = str(data)
        if text.startswith("<auth") and SASL in text:
            try:
                tried.append(ET.fromstring(text).get("mechanism"))
            except ET.ParseError:
                tried.append("?")

    xmpp.add_filter("out_sync", lambda data: (sent(data), data)[1])
    reason = await started
    check(reason is None, f"no session: {reason}; mechanisms tried: {tried}")
    check(len(connections) == 1, f"{len(connections)} connections; mechanisms tried: {tried}")
    await xmpp.plugin["xep_0199"].send_ping(xmpp.boundjid.domain, timeout=5)
    used = xmpp.plugin["feature_mechanisms"].mech.name
    print(f"slixmpp {slixmpp.__version__}: tried {' → '.join(tried)}; logged in with {used} on the first connection")
    await close(xmpp)


main(__doc__, run)
