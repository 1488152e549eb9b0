"""A chat message between two accounts, to the full JID and to the bare JID.

    message.py --port P --ca CA.pem --jid juliet@localhost/balcony --password balcony \
               --peer-jid romeo@localhost/orchard --peer-password montague

Romeo logs in and sends initial presence (then pings the server, so the presence has
surely been processed). Juliet sends one message to his full JID and one to his bare
JID; he receives each once, from Juliet's full JID. Juliet gets no error back.
"""

import asyncio

from check import check, close, drain, expect, main, online, settled


async def run(args):
    romeo = await online(args, args.peer_jid, args.peer_password)
    romeo_inbox = asyncio.Queue()
    romeo.add_event_handler("message", romeo_inbox.put_nowait)
    romeo.send_presence()
    await romeo.plugin["xep_0199"].send_ping(romeo.boundjid.domain, timeout=5)

    juliet = await online(args, args.jid, args.password)
    juliet_inbox = asyncio.Queue()
    juliet.add_event_handler("message", juliet_inbox.put_nowait)

    for to in (romeo.boundjid.full, romeo.boundjid.bare):
        body = f"Wherefore art thou ({to})"
        juliet.send_message(mto=to, mbody=body, mtype="chat")
        msg = await expect(romeo_inbox, f"romeo to receive the message sent to {to}")
        check(msg["type"] == "chat" and msg["body"] == body, f"romeo received {msg}")
        check(msg["from"] == juliet.boundjid, f"from is {msg['from']}, expected {juliet.boundjid}")
        print(f"sent to {to}: {romeo.boundjid} received it from {msg['from']}")
    await settled(romeo, juliet)  # nothing else (a copy, an error) may arrive
    for name, inbox in (("romeo", romeo_inbox), ("juliet", juliet_inbox)):
        extra = drain(inbox)
        check(not extra, f"{name} received more: {extra}")
    await close(juliet, romeo)


main(
    __doc__,
    run,
    [
        ("--peer-jid", "romeo@localhost/orchard", "the other account (full JID)"),
        ("--peer-password", "montague", "its password"),
    ],
)
