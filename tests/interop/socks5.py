"""SOCKS5 Bytestreams (XEP-0065) with slixmpp's xep_0065 plugin: Juliet sends Romeo a
file through the server's proxy, proxy.localhost.

    socks5.py --port P --ca CA.pem --jid juliet@localhost/balcony --password balcony \
              --peer-jid romeo@localhost/orchard --peer-password montague

- discovery: the plugin's discover_proxies finds, among the disco#items of
  Juliet's server, proxy.localhost (identity proxy/bytestreams, and the
  bytestreams feature), and asks it for its streamhost (jid, host, port): the
  only proxy it finds.
- negotiation: the plugin's handshake offers Romeo that streamhost, and only it
  (slixmpp offers no direct streamhost of its own); Romeo, who pre-authorized the
  stream ID, connects to the proxy with the SOCKS5 CONNECT to
  SHA1(SID + Juliet's full JID + Romeo's full JID) and answers with
  streamhost-used proxy.localhost; Juliet connects with the same address and
  activates the bytestream at the proxy.
- transfer: both SOCKS5 connections go to the proxy's host and port; Juliet
  writes 300 KiB of random bytes and closes (the transport: the plugin's
  deactivate calls a close() that its Socks5Protocol does not have); Romeo reads the same bytes, then
  his connection is closed by the proxy.

The plugin parses each SOCKS5 reply from one data_received call and fails (or
waits forever) on a malformed one, so this check records the bytes the proxy
sent before each connection was established, to show them if that goes wrong.
"""

import asyncio
import os
import socket
import uuid

import slixmpp
from slixmpp.plugins.xep_0065 import socks5 as socks5_module

from check import Fail, IqError, IqTimeout, check, close, main, online

NS = "http://jabber.org/protocol/bytestreams"
PROXY = "proxy.localhost"
SIZE = 300 * 1024
CHUNK = 16 * 1024

# What each SOCKS5 connection received before it counted as connected (the method
# and CONNECT replies), to show when the plugin chokes on them.
handshake_bytes = []
original_data_received = socks5_module.Socks5Protocol.data_received


def recording_data_received(self, data):
    if not self.connected.done():
        handshake_bytes.append(bytes(data))
    return original_data_received(self, data)


socks5_module.Socks5Protocol.data_received = recording_data_received


async def settled(future, what, seconds=5):
    try:
        return await asyncio.wait_for(asyncio.shield(future), seconds)
    except asyncio.TimeoutError:
        raise Fail(f"timed out waiting for {what}; SOCKS5 replies received so far: "
                   f"{[b.hex(' ') for b in handshake_bytes]}") from None


def peer(transport):
    return transport.get_extra_info("peername")[:2]


async def run(args):
    loop = asyncio.get_running_loop()
    plugins = ["xep_0030", "xep_0065"]
    romeo = await online(args, args.peer_jid, args.peer_password, plugins=plugins)
    romeo.send_presence()
    await romeo.plugin["xep_0199"].send_ping(romeo.boundjid.domain, timeout=5)
    juliet = await online(args, args.jid, args.password, plugins=plugins)
    s5b = juliet.plugin["xep_0065"]

    # Discovery, as the plugin does it: disco#items of the server, disco#info of each,
    # then the streamhost of each proxy/bytestreams.
    domain = juliet.boundjid.domain
    items = await juliet.plugin["xep_0030"].get_items(domain, timeout=5)
    listed = [str(item[0]) for item in items["disco_items"]["items"]]
    check(PROXY in listed, f"{PROXY} is not among {domain}'s disco#items {listed}")
    info = (await juliet.plugin["xep_0030"].get_info(PROXY, timeout=5))["disco_info"]
    identities = [(c, t) for c, t, *_ in info["identities"]]
    check(("proxy", "bytestreams") in identities, f"{PROXY}'s identities: {info['identities']}")
    check(NS in info["features"], f"{PROXY}'s features: {info['features']}")
    proxies = await s5b.discover_proxies(timeout=5)
    check(list(map(str, proxies)) == [PROXY], f"discover_proxies found {proxies}, expected only {PROXY}")
    host, port = proxies[slixmpp.JID(PROXY)]
    port = int(port)
    check(host and 0 < port < 65536, f"{PROXY}'s streamhost is host {host!r} port {port!r}")
    print(f"disco: {PROXY} (among {domain}'s items {', '.join(listed)}) is proxy/bytestreams "
          f"with {NS}; the plugin discovered its streamhost {host}:{port}, and no other proxy")

    # Romeo accepts this stream ID from Juliet (as a file-transfer offer would have
    # agreed on) and collects what arrives on his bytestream.
    sid = uuid.uuid4().hex
    await romeo.plugin["xep_0065"].api["preauthorize_sid"](romeo.boundjid, sid, juliet.boundjid)
    offers = []

    def record_offer(stanza):
        if isinstance(stanza, slixmpp.Iq) and stanza["type"] == "set" and stanza.xml.find(f"{{{NS}}}query/{{{NS}}}streamhost") is not None:
            offers.append(stanza)
        return stanza

    romeo.add_filter("in", record_offer)
    received = bytearray()
    all_received, romeo_closed, romeo_stream = loop.create_future(), loop.create_future(), loop.create_future()

    def on_data(data):
        received.extend(data)
        if len(received) >= SIZE and not all_received.done():
            all_received.set_result(None)

    def settle(future, value):
        if not future.done():
            future.set_result(value)

    romeo.add_event_handler("socks5_data", on_data)
    romeo.add_event_handler("socks5_closed", lambda exc: settle(romeo_closed, exc))
    romeo.add_event_handler(f"stream:{sid}:{juliet.boundjid}", lambda conn: settle(romeo_stream, conn))

    # Juliet's handshake; the streamhost-used answer is kept to be checked.
    answers = []
    original_request_stream = s5b.request_stream

    async def request_stream(*a, **kw):
        answer = await original_request_stream(*a, **kw)
        answers.append(answer)
        return answer

    s5b.request_stream = request_stream
    try:
        sock = await settled(s5b.handshake(romeo.boundjid, sid=sid, timeout=5), "Juliet's handshake", seconds=8)
    except (IqError, IqTimeout) as e:  # the offer's answer or the activation
        raise Fail(f"handshake: {type(e).__name__}: {getattr(e, 'iq', '')}; SOCKS5 replies received: "
                   f"{[b.hex(' ') for b in handshake_bytes]}") from None
    check(len(offers) == 1, f"romeo received {len(offers)} streamhost offers: {offers}")
    offer = offers[0]
    offered = [(str(h["jid"]), h["host"], int(h["port"])) for h in offer["socks"]["streamhosts"]]
    check(offer["socks"]["sid"] == sid, f"the offer has sid {offer['socks']['sid']!r}, not {sid}")
    check(offer["from"] == juliet.boundjid, f"the offer came from {offer['from']}, not {juliet.boundjid}")
    check(offered == [(PROXY, host, port)], f"romeo was offered {offered}, expected only {PROXY} at {host}:{port}")
    check(len(answers) == 1, f"juliet got {len(answers)} answers to her offer")
    used = answers[0]["socks"]["streamhost_used"]["jid"]
    check(str(used) == PROXY, f"romeo answered streamhost-used {used}, not {PROXY}: {answers[0]}")
    check(sock is not None, "the handshake ended without a bytestream (see the log: proxy connection or activation)")
    conn = await settled(romeo_stream, "Romeo's bytestream")
    check(conn is romeo.plugin["xep_0065"].get_socket(sid), "romeo's bytestream is not his session for the sid")
    for name, protocol in (("juliet", sock), ("romeo", conn)):
        check(peer(protocol.transport) == (socket.gethostbyname(host), port),
              f"{name}'s bytestream is connected to {peer(protocol.transport)}, not the proxy at {host}:{port}")
    # Each connection got the method reply (no authentication) and the CONNECT reply
    # (succeeded, with the address asked for: the hash as a domain name, port 0).
    dest = s5b._get_dest_sha1(sid, juliet.boundjid, romeo.boundjid)
    method_reply, connect_reply = b"\x05\x00", b"\x05\x00\x00\x03\x28" + dest.encode() + b"\x00\x00"
    replies = [b.hex(" ") for b in handshake_bytes]
    check(handshake_bytes == [method_reply, connect_reply] * 2,
          f"SOCKS5 replies {replies}, expected twice {method_reply.hex(' ')} then {connect_reply.hex(' ')}")
    print(f"negotiation: romeo was offered only {PROXY} at {host}:{port} (sid {sid}), answered "
          f"streamhost-used {used}; romeo then juliet connected to {host}:{port}, each got "
          f"the SOCKS5 replies {method_reply.hex(' ')} and 05 00 00 03 28 {dest} 00 00 "
          f"(SHA1(SID + {juliet.boundjid} + {romeo.boundjid})); juliet activated it")

    # The transfer: Juliet writes, then closes; Romeo reads it all, then is closed.
    data = os.urandom(SIZE)
    for start in range(0, SIZE, CHUNK):
        await sock.write(data[start:start + CHUNK])
    # Not s5b.deactivate(sid): it calls sock.close(), which Socks5Protocol lacks
    # (slixmpp 1.17). Closing the transport sends what is buffered first.
    sock.transport.close()
    del s5b._sessions[sid]
    await settled(all_received, f"romeo to receive {SIZE} bytes (he has {len(received)})", seconds=10)
    await settled(romeo_closed, "the proxy to close romeo's bytestream after juliet closed hers")
    check(len(received) == SIZE, f"romeo received {len(received)} bytes, expected {SIZE}")
    check(received == data, f"romeo received {SIZE} bytes, but not the ones juliet sent")
    print(f"transfer: juliet wrote {SIZE} random bytes and closed; romeo read the same {SIZE} bytes "
          f"through {PROXY}, then the proxy closed his side")
    await close(juliet, romeo)


main(
    __doc__,
    run,
    [
        ("--peer-jid", "romeo@localhost/orchard", "the account the file goes to (full JID)"),
        ("--peer-password", "montague", "its password"),
    ],
)
