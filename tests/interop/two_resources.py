"""Two resources of one account online at once, each reached at its full JID.

    two_resources.py --port P --ca CA.pem --jid juliet@localhost/balcony \
                     --jid2 juliet@localhost/garden --password balcony

Both bind the resource they asked for; each sends a chat message to the other's full
JID and each receives exactly that, from the other's full JID.
"""

import asyncio

from check import check, close, drain, expect, main, online, settled


async def run(args):
    first = await online(args, args.jid, args.password)
    second = await online(args, args.jid2, args.password)
    for xmpp, jid in ((first, args.jid), (second, args.jid2)):
        check(str(xmpp.boundjid) == jid, f"bound {xmpp.boundjid}, asked for {jid}")

    inbox = {first: asyncio.Queue(), second: asyncio.Queue()}
    for xmpp, queue in inbox.items():
        xmpp.add_event_handler("message", queue.put_nowait)

    for sender, receiver in ((first, second), (second, first)):
        body = f"from {sender.boundjid.resource} to {receiver.boundjid.resource}"
        sender.send_message(mto=receiver.boundjid, mbody=body, mtype="chat")
        msg = await expect(inbox[receiver], f"{receiver.boundjid} to receive {body!r}")
        check(msg["type"] == "chat" and msg["body"] == body, f"{receiver.boundjid} received {msg}")
        check(msg["from"] == sender.boundjid, f"from is {msg['from']}, expected {sender.boundjid}")
        check(msg["to"] == receiver.boundjid, f"to is {msg['to']}, expected {receiver.boundjid}")
        print(f"{receiver.boundjid} received {body!r} from {msg['from']}")
    await settled(first, second)  # nothing else (an error, a copy) may arrive
    for xmpp, queue in inbox.items():
        extra = drain(queue)
        check(not extra, f"{xmpp.boundjid} received more: {extra}")
    await close(first, second)


main(__doc__, run, [("--jid2", "juliet@localhost/garden", "second resource of the same account")])
