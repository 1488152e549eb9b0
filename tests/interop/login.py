"""Log in with one SASL mechanism over verified TLS, bind, and ping the server.

    login.py --port P --ca CA.pem --jid juliet@localhost/balcony --password balcony \
             --mech SCRAM-SHA-256 [--direct-tls --tls-port P2 [--alpn]]

Proves: STARTTLS (or Direct TLS) with the server's certificate verified, SASL with
exactly --mech (slixmpp is limited to it), resource binding to the requested
resource, and a XEP-0199 ping to the server answered with type='result'.
"""

from check import IqError, IqTimeout, Fail, check, close, main, online


async def run(args):
    direct_tls = args.direct_tls
    alpn = ["xmpp-client"] if args.alpn else None
    xmpp = await online(args, args.jid, args.password, mech=args.mech, direct_tls=direct_tls, alpn=alpn)

    used = xmpp.plugin["feature_mechanisms"].mech.name
    check(used == args.mech, f"logged in with {used}, not {args.mech}")
    tls = xmpp.transport.get_extra_info("ssl_object")
    check(tls is not None, "the session is not over TLS")
    check(str(xmpp.boundjid) == args.jid, f"bound {xmpp.boundjid}, asked for {args.jid}")
    if alpn:
        got = tls.selected_alpn_protocol()
        check(got == "xmpp-client", f"ALPN: the server selected {got!r}, not 'xmpp-client'")

    try:
        reply = await xmpp.plugin["xep_0199"].send_ping(xmpp.boundjid.domain, timeout=5)
    except IqError as e:
        raise Fail(f"ping answered with an error: {e.iq}") from None
    except IqTimeout:
        raise Fail("ping not answered within 5 s") from None
    check(reply["type"] == "result", f"ping reply: {reply}")
    check(str(reply["from"]) in ("", xmpp.boundjid.domain), f"ping reply from {reply['from']}")
    print(f"{used} over {tls.version()} ({'Direct TLS' if direct_tls else 'STARTTLS'}), bound {xmpp.boundjid}, ping ok")
    await close(xmpp)


main(
    __doc__,
    run,
    [
        ("--mech", "SCRAM-SHA-256", "the only SASL mechanism slixmpp may use"),
        ("--direct-tls", False, "connect with Direct TLS to --tls-port instead of STARTTLS"),
        ("--alpn", False, "offer ALPN 'xmpp-client' and require the server to select it"),
    ],
)
