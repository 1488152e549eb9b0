"""An external component (XEP-0114) with a wrong secret is refused.

    component_wrong_secret.py --port P --ca CA.pem --component-port C \\
                              --domain gw.localhost --secret WRONG

slixmpp's ComponentXMPP opens a stream for --domain and sends its handshake
(SHA-1 of stream id + --secret). The server answers with the stream error
<not-authorized/> and closes the connection: the handshake is never accepted
(no session_start), and slixmpp sees exactly that one stream error.
"""

import asyncio

from check import COMPONENT_OPTIONS, Fail, check, connect_component, main


async def run(args):
    gw, started = connect_component(args)
    reason = await started
    check(reason is not None, f"the server accepted the handshake of {args.domain} with a wrong secret")
    try:
        closed = await asyncio.wait_for(asyncio.shield(gw.closed), 5)
    except asyncio.TimeoutError:
        raise Fail(f"refused ({reason}), but the server did not close the connection within 5 s") from None
    check(gw.stream_errors == ["not-authorized"], f"expected one stream error not-authorized, got {gw.stream_errors}: {reason}")
    check(not gw.sessionstarted, "slixmpp says the component session started")
    print(f"{args.domain} with a wrong secret: <stream:error><not-authorized/>, then closed ({closed})")


main(__doc__, run, COMPONENT_OPTIONS)
