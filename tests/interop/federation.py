"""Server-to-server: chat both ways and a presence subscription between two servers.

    federation.py --port P --ca CA.pem --jid juliet@a.test/balcony --password balcony \
                  --peer-port P2 [--peer-host H] [--peer-ca CA2.pem] \
                  --peer-jid romeo@b.test/orchard --peer-password montague \
                  [--s2s-wait 10] [--expect-s2s-error] [--timeout 40]

Juliet logs in to her server (--host/--port, verified against --ca), Romeo to his
(--peer-host/--peer-port, verified against --peer-ca, default --ca); both fetch their
roster and send initial presence. Then, all over s2s:
  1. Juliet sends a chat message to Romeo's bare JID; he receives it from her full JID.
  2. Romeo answers to Juliet's full JID; she receives it from his full JID.
  3. Romeo subscribes to Juliet's presence; she receives the request from his bare
     JID and approves it; he receives 'subscribed' and then her available presence,
     and the roster pushes give him subscription 'to' and her 'from'.
With --expect-s2s-error the servers are expected NOT to federate: Juliet's message
must come back as an error (its condition is printed) and Romeo must get nothing.
The first s2s stanza in each direction may take up to --s2s-wait seconds.
"""

import argparse
import asyncio
import time

from check import check, close, connect, drain, expect_from, main, settled, wait_for_subscription


async def online(args, jid, password):
    xmpp, started = connect(args, jid, password)
    reason = await started
    check(reason is None, f"{jid}: {reason}")
    xmpp.auto_authorize = None  # the check answers subscription requests itself
    xmpp.auto_subscribe = False
    inboxes = {name: asyncio.Queue() for name in ("message", "subscribe", "subscribed", "available")}
    xmpp.add_event_handler("message", inboxes["message"].put_nowait)
    xmpp.add_event_handler("message_error", inboxes["message"].put_nowait)  # not in "message"
    xmpp.add_event_handler("presence_subscribe", inboxes["subscribe"].put_nowait)
    xmpp.add_event_handler("presence_subscribed", inboxes["subscribed"].put_nowait)
    xmpp.add_event_handler("presence_available", inboxes["available"].put_nowait)
    xmpp.inboxes = inboxes
    await xmpp.get_roster(timeout=5)
    xmpp.send_presence()
    await xmpp.plugin["xep_0199"].send_ping(xmpp.boundjid.domain, timeout=5)  # presence processed
    return xmpp


async def run(args):
    wait = float(args.s2s_wait)
    peer_args = argparse.Namespace(**vars(args))
    peer_args.host = args.peer_host or args.host
    peer_args.port = args.peer_port
    peer_args.ca = args.peer_ca or args.ca
    check(args.peer_port, "--peer-port is required")
    juliet = await online(args, args.jid, args.password)
    romeo = await online(peer_args, args.peer_jid, args.peer_password)
    j_bare, r_bare = juliet.boundjid.bare, romeo.boundjid.bare

    if args.expect_s2s_error:
        juliet.send_message(mto=r_bare, mbody="Can you hear me?", mtype="chat")
        error = await expect_from(juliet.inboxes["message"], r_bare, f"an error bounced from {r_bare}", wait, error_ok=True)
        check(error["type"] == "error", f"juliet received {error}, not an error")
        condition = error["error"]["condition"]
        text = error["error"]["text"]
        extra = drain(romeo.inboxes["message"])
        check(not extra, f"romeo received {extra}")
        await close(juliet, romeo)
        print(f"no federation, as expected: {j_bare} -> {r_bare} bounced with <{condition}/>"
              + (f" ({text})" if text else ""))
        return

    started = time.monotonic()
    body = "Wherefore art thou, Romeo?"
    juliet.send_message(mto=r_bare, mbody=body, mtype="chat")
    msg = await expect_from(romeo.inboxes["message"], str(juliet.boundjid), "romeo to receive juliet's message", wait)
    check(msg["type"] == "chat" and msg["body"] == body, f"romeo received {msg}")
    first = time.monotonic() - started

    body = "Call me but love, and I'll be new baptized"
    romeo.send_message(mto=juliet.boundjid, mbody=body, mtype="chat")
    msg = await expect_from(juliet.inboxes["message"], str(romeo.boundjid), "juliet to receive romeo's message", wait)
    check(msg["type"] == "chat" and msg["body"] == body, f"juliet received {msg}")
    check(msg["to"] == juliet.boundjid, f"juliet received it addressed to {msg['to']}")
    second = time.monotonic() - started - first

    romeo.send_presence(pto=j_bare, ptype="subscribe")
    request = await expect_from(juliet.inboxes["subscribe"], r_bare, "juliet to receive romeo's subscribe", wait)
    check(str(request["from"]) == r_bare, f"the subscription request came from {request['from']}, not {r_bare}")
    juliet.send_presence(pto=r_bare, ptype="subscribed")
    await expect_from(romeo.inboxes["subscribed"], j_bare, "romeo to receive juliet's subscribed", wait)
    available = await expect_from(romeo.inboxes["available"], str(juliet.boundjid),
                                  "romeo to receive juliet's presence", wait)
    check(not available["type"] or available["type"] == "available", f"romeo received {available}")
    await wait_for_subscription(romeo, j_bare, "to")
    await wait_for_subscription(juliet, r_bare, "from")

    await settled(juliet, via=romeo.boundjid)  # over both links, both ways
    await settled(juliet, romeo)
    for name, xmpp in (("juliet", juliet), ("romeo", romeo)):
        extra = drain(xmpp.inboxes["message"])
        check(not extra, f"{name} received more messages: {extra}")
    await close(juliet, romeo)
    print(f"{juliet.boundjid} <-> {romeo.boundjid}: messages both ways "
          f"({first:.2f} s, {second:.2f} s), subscription {r_bare} -> {j_bare} approved, presence received")


main(
    __doc__,
    run,
    [
        ("--peer-host", None, "the peer account's server address (default: --host)"),
        ("--peer-port", None, "its client (STARTTLS) port"),
        ("--peer-ca", None, "CA certificate of its server (default: --ca)"),
        ("--peer-jid", "romeo@b.test/orchard", "the account on the other server (full JID)"),
        ("--peer-password", "montague", "its password"),
        ("--s2s-wait", "10", "seconds to wait for each stanza that crosses servers"),
        ("--expect-s2s-error", False, "expect the servers not to federate (the message bounces)"),
    ],
)
