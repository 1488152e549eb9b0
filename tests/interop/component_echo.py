"""An external component (XEP-0114) and a client exchange messages through the server.

    component_echo.py --port P --ca CA.pem --jid juliet@localhost/balcony --password balcony \\
                      --component-port C --domain gw.localhost --secret s3cret

slixmpp's ComponentXMPP connects for --domain to the component port and handshakes
with --secret; it echoes every message back from the JID it was sent to. Juliet logs
in (STARTTLS, verified) and sends a chat message to echo@DOMAIN: the component
receives it from her full JID, and she receives the same body back from
echo@DOMAIN, addressed to her full JID. Nothing else arrives on either side.
"""

import asyncio

from check import COMPONENT_OPTIONS, check, close, connect_component, drain, echo, echo_round_trip, main, online


async def run(args):
    gw, started = connect_component(args)
    reason = await started
    check(reason is None, f"component {args.domain}: {reason}")
    gw_inbox = echo(gw)

    juliet = await online(args, args.jid, args.password)
    juliet_inbox = asyncio.Queue()
    juliet.add_event_handler("message", juliet_inbox.put_nowait)

    to = f"echo@{args.domain}"
    await echo_round_trip(juliet, juliet_inbox, gw_inbox, to, "Is anybody out there?")
    print(f"{juliet.boundjid} -> {to} -> component {args.domain} -> echo from {to}")
    # Nothing else (a copy, an error) may arrive: a second round trip comes behind
    # anything the first caused, on both streams.
    await echo_round_trip(juliet, juliet_inbox, gw_inbox, to, "Still there?")
    for name, inbox in (("juliet", juliet_inbox), ("the component", gw_inbox)):
        extra = drain(inbox)
        check(not extra, f"{name} received more: {extra}")
    check(not gw.closed.done(), f"the component was disconnected: {gw.closed.result() if gw.closed.done() else ''}")
    await close(juliet, gw)


main(__doc__, run, COMPONENT_OPTIONS)
