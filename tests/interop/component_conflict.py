"""A second component (XEP-0114) for a connected domain is refused; the first stays.

    component_conflict.py --port P --ca CA.pem --jid juliet@localhost/balcony --password balcony \\
                          --component-port C --domain gw.localhost --secret s3cret

Two slixmpp ComponentXMPPs for --domain with the right secret, one after the other.
The first's handshake is accepted. The second's is answered with the stream error
<conflict/> and its connection closed (the server's default policy "refuse"). The
first is not disconnected and still relays: Juliet's message to echo@DOMAIN reaches
it, and its echo reaches her.
"""

import asyncio

from check import COMPONENT_OPTIONS, Fail, check, close, connect_component, drain, echo, echo_round_trip, main, online


async def run(args):
    first, started = connect_component(args)
    reason = await started
    check(reason is None, f"first component {args.domain}: {reason}")
    first_inbox = echo(first)

    second, started = connect_component(args)
    second_inbox = echo(second)
    reason = await started
    check(reason is not None, f"the server accepted a second component for {args.domain}")
    try:
        closed = await asyncio.wait_for(asyncio.shield(second.closed), 5)
    except asyncio.TimeoutError:
        raise Fail(f"second refused ({reason}), but the server did not close its connection within 5 s") from None
    check(second.stream_errors == ["conflict"], f"second: expected one stream error conflict, got {second.stream_errors}: {reason}")
    print(f"second component for {args.domain}: <stream:error><conflict/>, then closed ({closed})")

    check(not first.closed.done(), f"the first component was disconnected: {first.closed.result() if first.closed.done() else ''}")
    check(not first.stream_errors, f"the first component received stream errors: {first.stream_errors}")
    juliet = await online(args, args.jid, args.password)
    juliet_inbox = asyncio.Queue()
    juliet.add_event_handler("message", juliet_inbox.put_nowait)
    to = f"echo@{args.domain}"
    await echo_round_trip(juliet, juliet_inbox, first_inbox, to, "Are you still there?")
    # Nothing else may arrive, least of all at the refused one (closed by now): a
    # second round trip comes behind anything the first caused.
    await echo_round_trip(juliet, juliet_inbox, first_inbox, to, "Only you?")
    for name, inbox in (("juliet", juliet_inbox), ("the first component", first_inbox), ("the second component", second_inbox)):
        extra = drain(inbox)
        check(not extra, f"{name} received more: {extra}")
    check(not first.closed.done(), "the first component was disconnected")
    print(f"the first component stayed connected and echoed {juliet.boundjid}'s message to {to}")
    await close(juliet, first)


main(__doc__, run, COMPONENT_OPTIONS)
