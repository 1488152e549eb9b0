"""PEP (XEP-0163) across servers, with the nodes of OMEMO (XEP-0384, in the
`eu.siacs.conversations.axolotl` namespace that deployed clients use).

    pep_federation.py --port P --ca CA.pem --jid romeo@a.test/orchard --password montague \
                      --peer-port P2 --peer-ca CA2.pem --peer-jid juliet@b.test/balcony \
                      --peer-password balcony [--s2s-wait 15] [--timeout 90]

Romeo logs in to his server (--port, --ca) and Juliet to hers (--peer-port, --peer-ca).
At first they are strangers: neither is in the other's roster. Both advertise
XEP-0115 caps that include `eu.siacs.conversations.axolotl.devicelist+notify`, and
both send presence. Everything below goes over s2s:
  1. Romeo publishes his device list (node ...axolotl.devicelist, item `current`) and
     the bundle of one device (node ...axolotl.bundles:<id>). Both use XEP-0223
     publish-options pubsub#access_model=open. Juliet, with no subscription, fetches
     both from his bare JID (XEP-0060 §6.5) and finds what he published.
  2. The same in reverse: Juliet publishes, Romeo fetches.
  3. They subscribe to each other's presence: both rosters show `both`, and each gets
     the other's presence with caps. (a) Juliet publishes a new device list and
     Romeo gets the headline event from her bare JID (XEP-0163 §4.3). (b) Romeo
     publishes a new device list and Juliet gets the event from his bare JID.
     Other events are skipped and listed if the one we wait for never comes: for
     example, the last published item that a server sends when it sees the
     contact's presence (§4.3.2).
Prints one line per part, `part N: OK: ...` or `part N: FAILED: ...`. Exits 1 if any
part failed, and then also prints the XML that both clients sent and received.
Every wait is bounded by --s2s-wait.
"""

import argparse
import asyncio
import base64
import os
import time
import xml.etree.ElementTree as ET

from check import IqError, IqTimeout, Fail, check, close, expect_from, main, online, wait_for_subscription

NS_OMEMO = "eu.siacs.conversations.axolotl"
DEVICELIST = f"{NS_OMEMO}.devicelist"
NS_EVENT = "http://jabber.org/protocol/pubsub#event"
PUBLISH_OPTIONS = "http://jabber.org/protocol/pubsub#publish-options"
PLUGINS = ["xep_0030", "xep_0004", "xep_0060", "xep_0115", "xep_0163"]


# -- OMEMO payloads (XEP-0384 §4.3 device list, §4.5 bundle) -------------------------

def omemo(tag):
    return f"{{{NS_OMEMO}}}{tag}"


def bundles_node(device):
    return f"{NS_OMEMO}.bundles:{device}"


def device_list(ids):
    root = ET.Element(omemo("list"))
    for device in ids:
        ET.SubElement(root, omemo("device"), id=str(device))
    return root


def device_ids(payload):
    """The sorted device ids of a <list/> payload, or None if it is not one."""
    if payload is None or payload.tag != omemo("list"):
        return None
    return sorted(int(d.get("id", "-1")) for d in payload.findall(omemo("device")))


def new_bundle():
    """A bundle with random bytes for keys: the servers store it, they never read it."""
    def key(n=33):
        return base64.b64encode(os.urandom(n)).decode()

    root = ET.Element(omemo("bundle"))
    ET.SubElement(root, omemo("signedPreKeyPublic"), signedPreKeyId="1").text = key()
    ET.SubElement(root, omemo("signedPreKeySignature")).text = key(64)
    ET.SubElement(root, omemo("identityKey")).text = key()
    prekeys = ET.SubElement(root, omemo("prekeys"))
    for n in range(1, 4):
        ET.SubElement(prekeys, omemo("preKeyPublic"), preKeyId=str(n)).text = key()
    return root


def bundle_fields(payload):
    """What a bundle says, comparable whatever prefixes a server wrote it with."""
    if payload is None or payload.tag != omemo("bundle"):
        return None
    spk = payload.find(omemo("signedPreKeyPublic"))
    return (
        spk is not None and (spk.get("signedPreKeyId"), spk.text),
        payload.findtext(omemo("signedPreKeySignature")),
        payload.findtext(omemo("identityKey")),
        sorted((k.get("preKeyId"), k.text) for k in payload.iter(omemo("preKeyPublic"))),
    )


# -- XEP-0060 requests ----------------------------------------------------------------

async def ask(what, request):
    """Awaits an iq. On an error answer or a timeout, Fail and name `what`."""
    try:
        return await request
    except IqError as e:
        error = e.iq["error"]
        text = f": {error['text']}" if error["text"] else ""
        raise Fail(f"{what}: <{error['condition']}/> (type {error['type']}){text}") from None
    except IqTimeout:
        raise Fail(f"{what}: no answer") from None


def open_access(xmpp):
    """XEP-0223 publish-options: the node is open (what OMEMO clients ask for)."""
    form = xmpp.plugin["xep_0004"].make_form(ftype="submit")
    form.add_field(var="FORM_TYPE", ftype="hidden", value=PUBLISH_OPTIONS)
    form.add_field(var="pubsub#access_model", value="open")
    return form


async def publish(xmpp, node, payload, wait):
    """Publishes item `current` to the account's own `node`, with open access."""
    await ask(f"{xmpp.boundjid.bare} publishing to {node}", xmpp.plugin["xep_0060"].publish(
        None, node, id="current", payload=payload, options=open_access(xmpp), timeout=wait))


async def fetch(xmpp, owner, node, wait):
    """{item id: payload} of `owner`'s `node`, fetched by `xmpp`."""
    iq = await ask(f"{xmpp.boundjid.bare} fetching {node} from {owner}",
                   xmpp.plugin["xep_0060"].get_items(owner, node, timeout=wait))
    return {item["id"]: item["payload"] for item in iq["pubsub"]["items"]}


def event_device_ids(msg):
    """The device ids in a pubsub event for the device-list node, or None."""
    event = msg.xml.find(f"{{{NS_EVENT}}}event")
    items = event.find(f"{{{NS_EVENT}}}items") if event is not None else None
    if items is None or items.get("node") != DEVICELIST:
        return None
    item = items.find(f"{{{NS_EVENT}}}item")
    return device_ids(item.find(omemo("list"))) if item is not None else None


async def device_list_event(listener, owner, ids, seconds):
    """The headline event from `owner` (a bare JID) that carries device list `ids`,
    received by `listener`. Returns the other events it skipped."""
    deadline = time.monotonic() + seconds
    skipped = []
    while True:
        try:
            msg = await asyncio.wait_for(listener.events.get(), max(0.01, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            raise Fail(f"{listener.boundjid.bare} got no event from {owner} with the device list {ids} "
                       f"within {seconds:g} s; other events: {skipped or 'none'}") from None
        got = event_device_ids(msg)
        if str(msg["from"]) == owner and got == ids:
            check(msg["type"] == "headline", f"the event came with type {msg['type']!r}, not 'headline'")
            return skipped
        skipped.append(f"{msg['from']} {msg['type']} {msg['pubsub_event']['items']['node']} {got}")


# -- the parts ------------------------------------------------------------------------

async def login(args, jid, password, wait):
    """Logs in with an empty roster, caps with devicelist+notify, and presence sent."""
    xmpp = await online(args, jid, password, plugins=PLUGINS)
    xmpp.auto_authorize = None  # the check answers subscription requests itself
    xmpp.auto_subscribe = False
    xmpp.inboxes = {name: asyncio.Queue() for name in ("subscribe", "subscribed", "available")}
    for name, queue in xmpp.inboxes.items():
        xmpp.add_event_handler(f"presence_{name}", queue.put_nowait)
    xmpp.events = asyncio.Queue()
    xmpp.add_event_handler("pubsub_publish", xmpp.events.put_nowait)
    xmpp.plugin["xep_0163"].add_interest(DEVICELIST)
    await xmpp.plugin["xep_0115"].update_caps(broadcast=False)  # before the presence that carries them
    await xmpp.get_roster(timeout=wait)
    check(len(xmpp.client_roster) == 0, f"{jid} starts with a roster: {xmpp.client_roster.keys()}")
    xmpp.send_presence()
    await xmpp.plugin["xep_0199"].send_ping(xmpp.boundjid.domain, timeout=wait)  # presence processed
    return xmpp


async def keys_fetched(publisher, fetcher, device, wait):
    """Parts 1 and 2: a stranger fetches the publisher's open OMEMO nodes."""
    owner = publisher.boundjid.bare
    bundle = new_bundle()
    await publish(publisher, DEVICELIST, device_list([device]), wait)
    await publish(publisher, bundles_node(device), bundle, wait)
    items = await fetch(fetcher, owner, DEVICELIST, wait)
    check(list(items) == ["current"], f"{owner}'s device list has the items {list(items)}, not ['current']")
    check(device_ids(items["current"]) == [device],
          f"{owner}'s device list reads {device_ids(items['current'])}, not [{device}]")
    items = await fetch(fetcher, owner, bundles_node(device), wait)
    check(list(items) == ["current"], f"{owner}'s bundle node has the items {list(items)}, not ['current']")
    check(bundle_fields(items["current"]) == bundle_fields(bundle),
          f"{owner}'s bundle came back as {bundle_fields(items['current'])}, published {bundle_fields(bundle)}")
    return (f"{fetcher.boundjid.bare} fetched {owner}'s OMEMO device list [{device}] and bundle {device} "
            "(open nodes, no subscription)")


async def befriend(a, b, wait):
    """a and b subscribe to each other. Waits until both rosters show `both` and each
    has the other's available presence with caps."""
    for asker, approver in ((a, b), (b, a)):
        asker_bare, approver_bare = asker.boundjid.bare, approver.boundjid.bare
        asker.send_presence(pto=approver_bare, ptype="subscribe")
        await expect_from(approver.inboxes["subscribe"], asker_bare, f"{approver_bare}: {asker_bare}'s subscribe", wait)
        approver.send_presence(pto=asker_bare, ptype="subscribed")
        await expect_from(asker.inboxes["subscribed"], approver_bare, f"{asker_bare}: {approver_bare}'s subscribed", wait)
    for x, y in ((a, b), (b, a)):
        await wait_for_subscription(x, y.boundjid.bare, "both", wait)
        presence = await expect_from(x.inboxes["available"], str(y.boundjid),
                                     f"{x.boundjid.bare}: {y.boundjid}'s presence", wait)
        check(presence["caps"]["ver"], f"{y.boundjid}'s presence reached {x.boundjid.bare} without caps: {presence}")


async def event_heard(publisher, listener, ids, wait):
    """Part 3: a contact gets the headline event for the publisher's new device list."""
    owner = publisher.boundjid.bare
    await publish(publisher, DEVICELIST, device_list(ids), wait)
    skipped = await device_list_event(listener, owner, ids, wait)
    earlier = f"; before it: {'; '.join(skipped)}" if skipped else ""
    return f"{listener.boundjid.bare} got the event for {owner}'s new device list {ids}{earlier}"


async def part(name, work, failed):
    """Runs one part and prints its line; a failure is recorded, not raised."""
    try:
        line = await work
    except Fail as e:
        failed.append(name)
        print(f"part {name}: FAILED: {e}", flush=True)
    else:
        print(f"part {name}: OK: {line}", flush=True)


async def run(args):
    wait = float(args.s2s_wait)
    check(args.peer_port, "--peer-port is required")
    peer_args = argparse.Namespace(**vars(args))
    peer_args.host = args.peer_host or args.host
    peer_args.port = args.peer_port
    peer_args.ca = args.peer_ca or args.ca
    romeo = await login(args, args.jid, args.password, wait)
    juliet = await login(peer_args, args.peer_jid, args.peer_password, wait)
    failed = []
    await part("1", keys_fetched(romeo, juliet, 1001, wait), failed)
    await part("2", keys_fetched(juliet, romeo, 2001, wait), failed)
    try:
        await befriend(romeo, juliet, wait)
    except Fail as e:
        for name in ("3a", "3b"):
            failed.append(name)
            print(f"part {name}: FAILED: the mutual subscription did not complete: {e}", flush=True)
    else:
        await part("3a", event_heard(juliet, romeo, [2001, 2002], wait), failed)
        await part("3b", event_heard(romeo, juliet, [1001, 1002], wait), failed)
    await close(romeo, juliet)
    check(not failed, f"part(s) {', '.join(failed)} failed")


main(
    __doc__,
    run,
    [
        ("--peer-host", None, "the peer account's server address (default: --host)"),
        ("--peer-port", None, "its client (STARTTLS) port"),
        ("--peer-ca", None, "CA certificate of its server (default: --ca)"),
        ("--peer-jid", "juliet@b.test/balcony", "the account on the other server (full JID)"),
        ("--peer-password", "balcony", "its password"),
        ("--s2s-wait", "15", "seconds to wait for each answer or event that crosses servers"),
    ],
)
