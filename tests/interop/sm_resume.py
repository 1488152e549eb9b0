"""slixmpp's XEP-0198 plugin resumes a dropped session, and nothing is lost.

    sm_resume.py --port P --ca CA.pem --jid juliet@localhost/balcony --password balcony \
                 --peer-jid romeo@localhost/orchard --peer-password montague

Juliet logs in with slixmpp's stream management (resumption on). Her TCP connection
is cut (no </stream>). Romeo sends her a message while she is away. She connects
again: the plugin resumes the session (session_resumed, no new session_start), and
the message arrives exactly once.
"""

import asyncio

from check import check, close, connect, drain, expect, main, online


async def run(args):
    juliet, started = connect(args, args.jid, args.password, plugins=["xep_0198"])
    loop = asyncio.get_running_loop()
    enabled, dropped, resumed = loop.create_future(), loop.create_future(), loop.create_future()
    juliet.add_event_handler("sm_enabled", lambda s: enabled.done() or enabled.set_result(s))
    juliet.add_event_handler("disconnected", lambda r: dropped.done() or dropped.set_result(r))
    juliet.add_event_handler("session_resumed", lambda s: resumed.done() or resumed.set_result(s))
    starts = []
    juliet.add_event_handler("session_start", lambda _: starts.append(1))
    inbox = asyncio.Queue()
    juliet.add_event_handler("message", inbox.put_nowait)
    reason = await started
    check(reason is None, f"juliet: {reason}")
    sm = await asyncio.wait_for(enabled, 5)
    check(sm["resume"], f"resumption not offered: {sm}")
    juliet.send_presence()
    await juliet.plugin["xep_0199"].send_ping(juliet.boundjid.domain, timeout=5)

    romeo = await online(args, args.peer_jid, args.peer_password)
    juliet.transport.abort()
    await asyncio.wait_for(dropped, 5)
    print("juliet's connection cut")
    body = "while you were away"
    romeo.send_message(mto=juliet.boundjid.full, mbody=body, mtype="chat")
    await romeo.plugin["xep_0199"].send_ping(romeo.boundjid.domain, timeout=5)
    check(not drain(inbox), "a message arrived while disconnected")

    juliet.connect(args.host, int(args.port))
    await asyncio.wait_for(resumed, 10)
    print(f"resumed {juliet.boundjid} (h={resumed.result()['h']})")
    msg = await expect(inbox, "the message sent while juliet was away")
    check(msg["body"] == body and msg["from"] == romeo.boundjid, f"juliet received {msg}")
    await juliet.plugin["xep_0199"].send_ping(juliet.boundjid.domain, timeout=5)
    extra = drain(inbox)
    check(not extra, f"received twice or more: {extra}")
    check(len(starts) == 1, f"a new session started instead of the old one resuming ({len(starts)} starts)")
    await close(juliet, romeo)


main(
    __doc__,
    run,
    [
        ("--peer-jid", "romeo@localhost/orchard", "the other account (full JID)"),
        ("--peer-password", "montague", "its password"),
    ],
)
