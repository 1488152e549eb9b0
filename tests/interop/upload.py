"""HTTP File Upload (XEP-0363) with slixmpp's xep_0363 plugin: a file goes up and
comes down again, HTTPS verified against --ca like the XMPP stream.

    upload.py --port P --ca CA.pem --jid juliet@localhost/balcony --password balcony \
              --peer-jid romeo@localhost/orchard --peer-password montague

- discovery: the plugin's find_upload_service finds, among the disco#items of
  Juliet's server, the service with identity store/file and feature
  urn:xmpp:http:upload:0, whose urn:xmpp:http:upload:0 form gives max-file-size
  (--max-file-size, the server's default 100 MiB).
- upload: the plugin's upload_file (discovery, slot request, HTTPS PUT) sends
  200 KiB of random bytes as image/png and returns the GET URL.
- download: Juliet sends the URL to Romeo (body and XEP-0066 OOB, as clients
  share files); Romeo GETs it over HTTPS: status 200, Content-Type image/png, the
  same bytes.
- too big: upload_file refuses a 200 MiB file itself (FileTooBig, from the form's
  max-file-size), and a slot request for it sent anyway gets the XEP's error:
  modify/not-acceptable with <file-too-large><max-file-size/>.

slixmpp's upload_file opens an aiohttp ClientSession with no way to pass an SSL
context, so this check gives that name in the plugin's module a session whose
connector verifies against --ca (the system trust does not have the local CA).
"""

import asyncio
import io
import os
import ssl

import aiohttp
from slixmpp.plugins.xep_0363 import http_upload

from check import IqError, check, close, expect, main, online

UPLOAD_NS = "urn:xmpp:http:upload:0"
SIZE = 200 * 1024
TOO_BIG = 200 * 1024 * 1024


def verifying_sessions(ca):
    """Makes the plugin's aiohttp sessions verify the HTTPS server against `ca`;
    returns the SSL context for our own downloads."""
    context = ssl.create_default_context(cafile=ca)

    def session(*args, **kwargs):
        kwargs.setdefault("connector", aiohttp.TCPConnector(ssl=context))
        return aiohttp.ClientSession(*args, **kwargs)

    http_upload.ClientSession = session
    return context


async def run(args):
    context = verifying_sessions(args.ca)
    max_size = int(args.max_file_size)
    juliet = await online(args, args.jid, args.password, plugins=["xep_0030", "xep_0363"])
    upload = juliet.plugin["xep_0363"]

    # Discovery, as the plugin does it (disco#items of the server, disco#info of each).
    domain = juliet.boundjid.domain
    items = await juliet.plugin["xep_0030"].get_items(domain, timeout=5)
    listed = [item[0] for item in items["disco_items"]["items"]]
    found = await upload.find_upload_service(timeout=5)
    check(found is not None, f"find_upload_service found no upload service among {listed}")
    service = found["from"]
    check(str(service) in [str(j) for j in listed], f"{service} is not among {domain}'s disco#items {listed}")
    info = found["disco_info"]
    check(("store", "file") in [(c, t) for c, t, *_ in info["identities"]], f"identities: {info['identities']}")
    check(UPLOAD_NS in info["features"], f"features: {info['features']}")
    forms = [f["values"] for f in info.iterables if f["values"].get("FORM_TYPE") == [UPLOAD_NS]]
    check(len(forms) == 1, f"{len(forms)} forms with FORM_TYPE {UPLOAD_NS}: {info}")
    announced = forms[0].get("max-file-size")
    check(announced == str(max_size), f"max-file-size is {announced!r}, expected {max_size}")
    print(f"disco: {service} (among {domain}'s items {', '.join(map(str, listed))}) is store/file "
          f"with {UPLOAD_NS}, max-file-size {announced}")

    # Upload through the plugin (it does its own discovery, then the slot, then the PUT).
    data = os.urandom(SIZE)
    url = await upload.upload_file("balcony.png", size=SIZE, content_type="image/png",
                                   input_file=io.BytesIO(data), timeout=5)
    check(upload.upload_service == service, f"the plugin chose {upload.upload_service}, not {service}")
    check(upload.max_file_size == max_size, f"the plugin read max_file_size {upload.max_file_size}")
    check(isinstance(url, str) and url.startswith("https://"), f"the GET URL is {url!r}")
    check(url.endswith("/balcony.png"), f"the GET URL {url} does not end with the file name")
    print(f"upload: {SIZE} bytes of image/png PUT through the plugin; GET URL {url}")

    # Juliet shares it; Romeo downloads it.
    romeo = await online(args, args.peer_jid, args.peer_password, plugins=["xep_0066"])
    romeo_inbox = asyncio.Queue()
    romeo.add_event_handler("message", romeo_inbox.put_nowait)
    romeo.send_presence()
    await romeo.plugin["xep_0199"].send_ping(romeo.boundjid.domain, timeout=5)
    share = juliet.make_message(mto=romeo.boundjid.bare, mbody=url, mtype="chat")
    share["oob"]["url"] = url
    share.send()
    msg = await expect(romeo_inbox, "romeo to receive the URL")
    check(msg["body"] == url and msg["oob"]["url"] == url, f"romeo received {msg}")
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        async with session.get(msg["oob"]["url"], timeout=aiohttp.ClientTimeout(total=5)) as response:
            body = await response.read()
            headers = dict(response.headers)
            check(response.status == 200, f"GET {url}: {response.status} {response.reason} {headers} {body[:200]!r}")
            check(response.headers.get("Content-Type") == "image/png", f"GET {url}: headers {headers}")
            check(len(body) == SIZE, f"GET {url}: {len(body)} bytes, expected {SIZE}")
            check(body == data, f"GET {url}: {SIZE} bytes, but not the ones uploaded")
    print(f"download: romeo got the URL from {msg['from']} and GET it: 200, Content-Type "
          f"{headers['Content-Type']}, the same {SIZE} bytes")

    # Too big: the plugin refuses by itself; the service refuses a slot asked anyway.
    try:
        await upload.upload_file("big.bin", size=TOO_BIG, input_file=io.BytesIO(b""), timeout=5)
    except http_upload.FileTooBig as e:
        check(e.args == (TOO_BIG, max_size), f"FileTooBig{e.args}")
        print(f"too big: upload_file raised FileTooBig: {e}")
    else:
        check(False, f"upload_file accepted {TOO_BIG} bytes with max-file-size {max_size}")
    try:
        slot = await upload.request_slot(service, "big.bin", TOO_BIG, "application/octet-stream", timeout=5)
    except IqError as e:
        error = e.iq["error"]
        check((error["type"], error["condition"]) == ("modify", "not-acceptable"), f"slot refused with {e.iq}")
        limit = error.xml.find(f"{{{UPLOAD_NS}}}file-too-large/{{{UPLOAD_NS}}}max-file-size")
        check(limit is not None and limit.text == str(max_size), f"no file-too-large/max-file-size {max_size}: {e.iq}")
        print(f"too big: a slot for {TOO_BIG} bytes is refused: modify/not-acceptable, "
              f"file-too-large with max-file-size {limit.text}")
    else:
        check(False, f"a slot for {TOO_BIG} bytes was granted: {slot}")
    await close(juliet, romeo)


main(
    __doc__,
    run,
    [
        ("--peer-jid", "romeo@localhost/orchard", "the account the URL is shared with (full JID)"),
        ("--peer-password", "montague", "its password"),
        ("--max-file-size", "104857600", "the service's max-file-size (upload_max_file_size)"),
    ],
)
