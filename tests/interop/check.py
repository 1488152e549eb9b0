"""Shared plumbing for the slixmpp interop checks in this folder.

Each check is a script: `python3 tests/interop/NAME.py --port P --ca CA ...`. It exits 0
on success, or 1 after printing what went wrong and the XML that slixmpp sent and
received. A hard timeout (--timeout, default 20 s) means a check can never hang.

Every option can also come from the environment: --port from XMPP_PORT, --ca from
XMPP_CA, and so on (the option's name in upper case, `-` as `_`, prefixed XMPP_).
"""

import argparse
import asyncio
import inspect
import io
import logging
import os
import signal
import ssl
import sys
import time
from pathlib import Path

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout

__all__ = [
    "COMPONENT_OPTIONS",
    "Fail",
    "IqError",
    "IqTimeout",
    "check",
    "close",
    "connect",
    "connect_component",
    "drain",
    "echo",
    "echo_round_trip",
    "expect",
    "expect_from",
    "main",
    "online",
    "settled",
    "wait_for_subscription",
]

# Options of the component checks (XEP-0114); pass as main()'s extra_options.
COMPONENT_OPTIONS = [
    ("--component-port", None, "component port (XEP-0114, jabber:component:accept)"),
    ("--domain", "gw.localhost", "the component's domain"),
    ("--secret", "s3cret", "its shared secret"),
]


class Fail(Exception):
    """The check failed; the message says how."""


def check(condition, message):
    if not condition:
        raise Fail(message)


def parse_args(description, extra_options):
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    options = [
        ("--host", "127.0.0.1", "server address"),
        ("--port", None, "client (STARTTLS) port"),
        ("--tls-port", None, "Direct TLS port (XEP-0368)"),
        ("--ca", None, "CA certificate (PEM) that signed the server's certificate"),
        ("--jid", "juliet@localhost/balcony", "account to log in with (full JID)"),
        ("--password", "balcony", "its password"),
        ("--timeout", "20", "hard limit for the whole check, in seconds"),
    ] + list(extra_options)
    for name, default, help_text in options:
        env = "XMPP_" + name[2:].upper().replace("-", "_")
        if default is False:  # a flag; env value 1 sets it
            parser.add_argument(name, action="store_true", default=os.environ.get(env) == "1", help=f"{help_text} (env {env}=1)")
        else:
            parser.add_argument(name, default=os.environ.get(env, default), help=f"{help_text} (env {env})")
    parser.add_argument("--debug", action="store_true", help="print slixmpp's XML log as it happens")
    args = parser.parse_args()
    if args.ca is None:
        parser.error("--ca (or XMPP_CA) is required")
    return args


def connect(args, jid, password, mech=None, direct_tls=False, alpn=None, plugins=(), every_failure_ends=True):
    """A ClientXMPP that verifies the server against --ca, connecting with STARTTLS
    on --port (or Direct TLS on --tls-port), and never in plaintext. Returns
    (client, future): the future ends with None once the session has started, or
    with the reason it could not (SASL failure, disconnection...); with
    every_failure_ends=False a SASL failure is not the end while slixmpp has other
    mechanisms to try."""
    xmpp = slixmpp.ClientXMPP(jid, password, sasl_mech=mech)
    xmpp.register_plugin("xep_0199")  # XMPP Ping
    for plugin in plugins:
        xmpp.register_plugin(plugin)
    xmpp.ca_certs = Path(args.ca)  # loaded into the (verifying) default SSL context
    check(xmpp.ssl_context.verify_mode == ssl.CERT_REQUIRED, "TLS verification is off")
    check(xmpp.ssl_context.check_hostname, "TLS host name check is off")
    if alpn:
        xmpp.ssl_context.set_alpn_protocols(alpn)
    xmpp.enable_plaintext = False
    xmpp.enable_direct_tls = direct_tls
    xmpp.enable_starttls = not direct_tls

    online = asyncio.get_running_loop().create_future()

    def settle(result):
        if not online.done():
            online.set_result(result)

    xmpp.add_event_handler("session_start", lambda _: settle(None))
    if every_failure_ends:
        xmpp.add_event_handler("failed_auth", lambda s: settle(f"SASL failure: {s['condition']}"))
    xmpp.add_event_handler("failed_all_auth", lambda _: settle("no SASL mechanism left to try"))
    xmpp.add_event_handler("connection_failed", lambda e: settle(f"connection failed: {e}"))
    xmpp.add_event_handler("stream_error", lambda e: settle(f"stream error: {e['condition']}"))
    xmpp.add_event_handler("disconnected", lambda r: settle(f"disconnected before the session started ({r})"))
    port = args.tls_port if direct_tls else args.port
    check(port, "--tls-port is required for Direct TLS" if direct_tls else "--port is required")
    if "host" in inspect.signature(xmpp.connect).parameters:
        xmpp.connect(args.host, int(port))
    else:
        # slixmpp before 1.10 (Debian 12's 1.8.3, which poezio runs on).
        xmpp.connect((args.host, int(port)), use_ssl=direct_tls)
    return xmpp, online


def connect_component(args):
    """A slixmpp ComponentXMPP for --domain that connects to --component-port and
    handshakes with --secret. Returns (component, future) like
    connect(): None once the server accepted the handshake, or the reason it did not.
    Its `stream_errors` (list of conditions received) and `closed` (future, done
    when the connection is gone) let a check say how it ended."""
    check(args.component_port, "--component-port is required")
    xmpp = slixmpp.ComponentXMPP(args.domain, args.secret, args.host, int(args.component_port))
    loop = asyncio.get_running_loop()
    online, xmpp.closed, xmpp.stream_errors = loop.create_future(), loop.create_future(), []

    def settle(future, result):
        if not future.done():
            future.set_result(result)

    def stream_error(error):
        xmpp.stream_errors.append(error["condition"])
        settle(online, f"stream error: {error['condition']}")

    def disconnected(reason):
        settle(online, f"disconnected before the handshake was accepted ({reason})")
        settle(xmpp.closed, reason)

    xmpp.add_event_handler("session_start", lambda _: settle(online, None))
    xmpp.add_event_handler("connection_failed", lambda e: settle(online, f"connection failed: {e}"))
    xmpp.add_event_handler("stream_error", stream_error)
    xmpp.add_event_handler("disconnected", disconnected)
    xmpp.connect()
    return xmpp, online


def echo(component):
    """Makes `component` answer every message with a body by the same body, from the
    JID it was sent to. Returns an asyncio.Queue of the messages it received."""
    inbox = asyncio.Queue()

    def answer(msg):
        inbox.put_nowait(msg)
        msg.reply(msg["body"]).send()

    component.add_event_handler("message", answer)
    return inbox


async def echo_round_trip(client, client_inbox, component_inbox, to, body):
    """`client` sends a chat message to `to`, a JID at an echo() component: the
    component receives it from the client's full JID, and the client receives the
    body back from `to`. The inboxes are the message queues of both."""
    client.send_message(mto=to, mbody=body, mtype="chat")
    got = await expect(component_inbox, f"the component to receive the message to {to}")
    check(got["body"] == body, f"the component received {got}")
    check(got["from"] == client.boundjid, f"the component received it from {got['from']}, not {client.boundjid}")
    check(got["to"] == slixmpp.JID(to), f"the component received it addressed to {got['to']}, not {to}")
    reply = await expect(client_inbox, f"the echo from {to}")
    check(reply["body"] == body, f"{client.boundjid} received {reply}, expected the body {body!r}")
    check(reply["from"] == slixmpp.JID(to), f"the echo came from {reply['from']}, not {to}")
    check(reply["to"] == client.boundjid, f"the echo was addressed to {reply['to']}, not {client.boundjid}")
    check(reply["type"] == "chat", f"the echo has type {reply['type']!r}, not 'chat'")


async def online(args, jid, password, **kwargs):
    """connect(), then wait for the session; Fail if it does not start."""
    xmpp, started = connect(args, jid, password, **kwargs)
    reason = await started
    check(reason is None, f"{jid}: {reason}")
    return xmpp


async def close(*clients):
    """Closes the streams (</stream:stream>, waiting up to 2 s for the server's)."""
    await asyncio.gather(*(xmpp.disconnect() for xmpp in clients))


async def settled(*clients, via=None):
    """Proves that nothing more is coming without waiting a while: each client
    pings `via` (default: its own server) and waits for the answer. A server writes
    a stream's stanzas in order, so what it had for that client before the answer (a
    copy, an error) has arrived by then; a ping to a full JID on another server goes
    both ways over the federation links, behind what they carried before it. The
    clients need slixmpp's xep_0199 (connect() registers it)."""
    for xmpp in clients:
        await xmpp.plugin["xep_0199"].send_ping(via or xmpp.boundjid.domain, timeout=5)


def drain(queue):
    """Everything in an asyncio.Queue now (to show what arrived unexpectedly)."""
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


async def expect(queue, what, seconds=5):
    """The next item of an asyncio.Queue, or Fail naming what was awaited."""
    try:
        return await asyncio.wait_for(queue.get(), seconds)
    except asyncio.TimeoutError:
        raise Fail(f"timed out waiting for {what}") from None


async def expect_from(queue, sender, what, seconds, error_ok=False):
    """The next item of `queue` from `sender` (a full or bare JID string), skipping
    others (e.g. our own presence reflected by our server). Fail at once on a stanza
    of type error, unless error_ok."""
    deadline = time.monotonic() + seconds
    while True:
        item = await expect(queue, what, max(0.01, deadline - time.monotonic()))
        if item["type"] == "error" and not error_ok:
            raise Fail(f"waiting for {what}, got an error: {item}")
        if str(item["from"]) == sender or item["from"].bare == sender:
            return item


async def wait_for_subscription(xmpp, contact, wanted, seconds=5):
    """Waits until xmpp's roster (kept by roster pushes) has `contact` with
    subscription `wanted`; Fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        item = xmpp.client_roster[contact]
        if item["subscription"] == wanted:
            return
        if time.monotonic() >= deadline:
            raise Fail(f"{xmpp.boundjid.bare}'s roster has {contact} with subscription "
                       f"{item['subscription']!r}, not {wanted!r}")
        await asyncio.sleep(0.1)


def main(description, run, extra_options=()):
    """Parses the options, runs `await run(args)` under the hard timeout, exits."""
    args = parse_args(description, extra_options)
    timeout = float(args.timeout)
    # Last resort if the event loop itself is stuck: SIGALRM ends the process.
    signal.alarm(int(timeout) + 10)
    xml_log = io.StringIO()
    handler = logging.StreamHandler(sys.stderr if args.debug else xml_log)
    handler.setFormatter(logging.Formatter("%(relativeCreated)6d %(name)s %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.DEBUG, handlers=[handler])
    name = Path(sys.argv[0]).name
    try:
        asyncio.run(asyncio.wait_for(run(args), timeout))
    except Fail as e:
        problem = str(e)
    except asyncio.TimeoutError:
        problem = f"timed out after {timeout:g} s"
    except Exception as e:  # a bug in the check or in slixmpp: show it all
        logging.exception("unexpected exception")
        problem = f"unexpected {type(e).__name__}: {e}"
    else:
        print(f"{name}: OK (slixmpp {slixmpp.__version__})")
        sys.exit(0)
    print(f"{name}: FAILED: {problem}", file=sys.stderr)
    if not args.debug:
        print("--- slixmpp debug log (SEND/RECV lines are the XML) ---", file=sys.stderr)
        print(xml_log.getvalue(), file=sys.stderr)
    sys.exit(1)
