"""The slixmpp side of the real-browser test (README.md beside this file).

    peer.py --port P --ca CA.pem --jid romeo@localhost/orchard --password montague \
            --browser-jid juliet@localhost --expect 'Hello from Converse' \
            --answer 'Hello from slixmpp' [--timeout 45]

Romeo logs in, sends initial presence, pings the server (so the presence has surely
been processed) and prints `peer.py: online as JID` (flushed: a test starts the
browser once it reads that line). Then he waits for a chat message with a body from
--browser-jid (slixmpp's "message" event skips Converse's chat states), checks that the
body is --expect, and answers it by --answer to the full JID it came from, asking for
a receipt (XEP-0184). He waits for Converse's receipt of the answer: the browser has
received it. With --expect-file he then waits for a message carrying a file link
(XEP-0066, an XEP-0363 upload) and downloads it (TLS verified against --ca): it must be
that file's bytes. Exits 0, or 1 with slixmpp's XML log.

Run from this folder's parent's scripts (check.py): `python tests/interop/browser/peer.py`
puts tests/interop on the import path itself.
"""

import asyncio
import os
import ssl
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/interop: check.py
os.environ.setdefault("XMPP_TIMEOUT", "45")  # the default --timeout: Chromium and Converse take a while

from check import check, close, expect, expect_from, main, online  # noqa: E402


async def run(args):
    deadline = time.monotonic() + float(args.timeout) - 1
    romeo = await online(args, args.jid, args.password, plugins=["xep_0184", "xep_0066"])  # receipts, file links
    inbox, receipts = asyncio.Queue(), asyncio.Queue()
    romeo.add_event_handler("message", inbox.put_nowait)  # those with a body only
    romeo.add_event_handler("receipt_received", receipts.put_nowait)
    romeo.send_presence()
    await romeo.plugin["xep_0199"].send_ping(romeo.boundjid.domain, timeout=5)
    print(f"peer.py: online as {romeo.boundjid}", flush=True)

    browser = args.browser_jid

    def left():
        return max(0.1, deadline - time.monotonic())

    msg = await expect_from(inbox, browser, f"a message with a body from {browser}", left())
    check(msg["type"] == "chat", f"the browser's message has type {msg['type']!r}, not 'chat': {msg}")
    check(msg["body"] == args.expect, f"the browser sent {msg['body']!r}, expected {args.expect!r}")
    check(msg["from"].resource, f"the browser's message came from a bare JID: {msg['from']}")
    print(f"peer.py: received {msg['body']!r} from {msg['from']}", flush=True)

    answer = romeo.make_message(mto=msg["from"], mbody=args.answer, mtype="chat")
    answer["id"] = romeo.new_id()
    answer["request_receipt"] = True
    answer.send()
    print(f"peer.py: answered {args.answer!r} to {msg['from']} (id {answer['id']})", flush=True)

    while True:
        got = await expect(receipts, f"the browser's receipt (XEP-0184) for message {answer['id']}", left())
        if got["from"].bare == browser and got["receipt"] == answer["id"]:
            break
    print(f"peer.py: {got['from']} acknowledged the answer (receipt)", flush=True)

    if args.expect_file:
        want = Path(args.expect_file).read_bytes()
        msg = await expect_from(inbox, browser, f"a message with a file link from {browser}", left())
        url = msg["oob"]["url"]
        check(url, f"the browser's next message has no link (XEP-0066): {msg}")
        check(msg["body"] == url, f"the body is not the link: {msg['body']!r} / {url!r}")
        ctx = ssl.create_default_context(cafile=args.ca)
        got = await asyncio.to_thread(lambda: urllib.request.urlopen(url, context=ctx, timeout=10).read())
        check(got == want, f"{url} gave {len(got)} bytes, not the {len(want)} uploaded")
        print(f"peer.py: downloaded {url}: {len(got)} bytes, as uploaded", flush=True)
    await close(romeo)


main(
    __doc__,
    run,
    [
        ("--browser-jid", "juliet@localhost", "the bare JID that Converse logs in as"),
        ("--expect", "Hello from Converse", "the body the browser sends"),
        ("--answer", "Hello from slixmpp", "the body to answer with"),
        ("--expect-file", None, "then a file link (XEP-0066) from the browser, whose download must equal this file"),
    ],
)
