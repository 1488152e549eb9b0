"""PEP (XEP-0163) with slixmpp's own plugins: avatars, bookmarks, OMEMO keys,
items and retractions, displayed markers.

    pep.py --port P --ca CA.pem --jid juliet@localhost/balcony --jid2 juliet@localhost/garden \
           --password balcony --peer-jid romeo@localhost/orchard --peer-password montague \
           --nurse-jid nurse@localhost/kitchen --nurse-password angelica

Juliet and Romeo subscribe to each other (RFC 6121 §3.1); the Nurse has no
subscription. A client that wants a node's notifications says `NODE+notify` in
its XEP-0115 caps (XEP-0163 §4.3), and waits until the server has asked for and
read them before anything is published.

- avatar: Juliet publishes XEP-0084 data and metadata; Romeo is notified of the
  metadata and fetches the data by its id.
- bookmarks: Juliet's first resource adds a XEP-0402 bookmark with the
  publish-options the XEP gives; her second is notified and retrieves it; Romeo
  and the Nurse are refused.
- omemo: a device list and a bundle as Conversations publishes them (XEP-0384
  0.3, eu.siacs.conversations.axolotl) and as urn:xmpp:omemo:2 does, on open
  nodes: the Nurse reads them.
- items: XEP-0060 §6.5.7 (max_items) and §7.2 (a retraction Romeo is notified of).
- mds: a XEP-0490 displayed marker reaches Juliet's other resource, not Romeo.
- bookmarks (XEP-0048), last: XEP-0402's compatibility with XEP-0048 bookmarks
  in XEP-0049 private storage: they show the PEP room, and a room stored there
  shows up in PEP.
"""

import asyncio
import hashlib
import xml.etree.ElementTree as ET

from slixmpp import Iq
from slixmpp.plugins.xep_0004.stanza import Form
from slixmpp.plugins.xep_0048.stanza import Bookmarks
from slixmpp.plugins.xep_0084.stanza import MetaData
from slixmpp.plugins.xep_0402.stanza import Conference
from slixmpp.plugins.xep_0490.stanza import Displayed

from check import Fail, IqError, check, close, main, online

NS_BOOKMARKS = "urn:xmpp:bookmarks:1"
NS_MDS = "urn:xmpp:mds:displayed:0"
NS_MICROBLOG = "urn:xmpp:microblog:0"
NS_AXOLOTL = "eu.siacs.conversations.axolotl"
NS_OMEMO2 = "urn:xmpp:omemo:2"
DEVICE = "1234"
ROOMS = ["garden@conference.localhost", "balcony@conference.localhost"]
# What a refused read may answer (XEP-0060 §6.5.9: closed-node is not-allowed).
REFUSALS = {"forbidden", "not-allowed", "item-not-found", "not-authorized"}

PLUGINS = ["xep_0060", "xep_0163", "xep_0115", "xep_0223"]


def options(**fields):
    """A XEP-0223 publish-options form; `max_items="max"` is `pubsub#max_items`."""
    form = Form()
    form["type"] = "submit"
    form.add_field(var="FORM_TYPE", ftype="hidden", value="http://jabber.org/protocol/pubsub#publish-options")
    for name, value in fields.items():
        form.add_field(var=f"pubsub#{name}", value=value)
    return form


def events(xmpp, name):
    """An asyncio.Queue of every `name` event of `xmpp`."""
    queue = asyncio.Queue()
    xmpp.add_event_handler(name, queue.put_nowait)
    return queue


async def first(queue, matches, what, seconds=5):
    """The first item of `queue` that `matches` (others are skipped), or Fail."""

    async def scan():
        while not matches(item := await queue.get()):
            pass
        return item

    try:
        return await asyncio.wait_for(scan(), seconds)
    except asyncio.TimeoutError:
        raise Fail(f"timed out waiting for {what}") from None


def notified(node, item_id, kind="item"):
    """Matches a pubsub event message with an `item` (or `retract`) of that id on
    `node`."""

    def matches(msg):
        items = msg["pubsub_event"]["items"]
        return items["node"] == node and any(i.name == kind and i["id"] == item_id for i in items)

    return matches


def items_of(iq):
    """{id: payload element} of an items result."""
    return {item["id"]: item["payload"] for item in iq["pubsub"]["items"]}


async def refused(xmpp, owner, node, who):
    """`xmpp` cannot read `node` of `owner`: the condition of the error."""
    try:
        iq = await xmpp.plugin["xep_0060"].get_items(owner, node, timeout=5)
    except IqError as e:
        check(e.condition in REFUSALS, f"{who} reading {node}: {e.condition}")
        return e.condition
    raise Fail(f"{who} read {node}: {iq}")


async def login(args, jid, password, plugins):
    """online(), with subscription requests left to the check (slixmpp answers
    them itself by default)."""
    xmpp = await online(args, jid, password, plugins=plugins)
    xmpp.auto_authorize, xmpp.auto_subscribe = None, False
    return xmpp


async def available(xmpp, *interests):
    """Initial presence with XEP-0115 caps that carry NODE+notify for each of
    `interests`, once the server has them: it asks for an unknown string's
    features (XEP-0115), and a ping sent after the answer returns once it has
    read it. A client's features, hence its string, differ from the others'."""
    for node in interests:
        xmpp.plugin["xep_0163"].add_interest(node)
    caps = xmpp.plugin["xep_0115"]
    await caps.update_caps(broadcast=False)
    node = f"{caps.caps_node}#{await caps.get_verstring()}"
    info = await xmpp.plugin["xep_0030"].get_info(node=node, local=True)
    features = set((info["disco_info"] if isinstance(info, Iq) else info)["features"])
    check({f"{n}+notify" for n in interests} <= features, f"{xmpp.boundjid}'s caps: {features}")
    answered = asyncio.get_running_loop().create_future()

    def watch(stanza):
        """Notes the answer to the server (a contact's client may ask too)."""
        query, to = stanza.xml.find("{http://jabber.org/protocol/disco#info}query"), stanza.xml.get("to")
        if query is not None and query.get("node") == node and to == xmpp.boundjid.domain and not answered.done():
            answered.set_result(None)
        return stanza

    xmpp.add_filter("out", watch)
    xmpp.send_presence()
    try:
        await asyncio.wait_for(answered, 5)
    except asyncio.TimeoutError:
        raise Fail(f"the server did not ask {xmpp.boundjid} for its caps {node}") from None
    finally:
        xmpp.del_filter("out", watch)
    await xmpp.plugin["xep_0199"].send_ping(xmpp.boundjid.domain, timeout=5)


async def subscribe_both_ways(juliet, romeo):
    """Each asks for the other's presence and the other approves (RFC 6121 §3.1);
    done when both rosters say subscription='both'."""
    pushes = {}
    for xmpp in (juliet, romeo):
        xmpp.add_event_handler(
            "presence_subscribe", lambda p, x=xmpp: x.send_presence(pto=p["from"].bare, ptype="subscribed")
        )
        pushes[xmpp] = events(xmpp, "roster_update")
        await xmpp.get_roster(timeout=5)
    for asker, other in ((juliet, romeo), (romeo, juliet)):
        asker.send_presence(pto=other.boundjid.bare, ptype="subscribe")
    for xmpp, other in ((juliet, romeo), (romeo, juliet)):
        peer = other.boundjid.bare

        def both(iq, peer=peer):
            item = iq["roster"]["items"].get(peer)
            return item is not None and item["subscription"] == "both"

        await first(pushes[xmpp], both, f"{xmpp.boundjid.bare}'s roster push of {peer} with subscription both")


async def avatar(juliet, romeo):
    """XEP-0084: data, then metadata; Romeo is notified and fetches the data."""
    image = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    avatar_id = hashlib.sha1(image).hexdigest()
    seen = events(romeo, "avatar_metadata_publish")
    plugin = juliet.plugin["xep_0084"]
    await plugin.publish_avatar(image, timeout=5)
    await plugin.publish_avatar_metadata({"id": avatar_id, "type": "image/png", "bytes": len(image)}, timeout=5)
    msg = await first(seen, lambda m: m["from"] == juliet.boundjid.bare, "romeo: juliet's avatar metadata")
    info = msg["pubsub_event"]["items"]["item"]["avatar_metadata"]["info"]
    check(info["id"] == avatar_id and info["bytes"] == len(image), f"romeo's metadata: {msg}")
    iq = await romeo.plugin["xep_0084"].retrieve_avatar(juliet.boundjid.bare, avatar_id, timeout=5)
    data = iq["pubsub"]["items"]["item"]["avatar_data"]["value"]
    check(data == image, f"romeo fetched {len(data)} bytes, not the {len(image)} published")
    print(f"avatar: published and seen ({len(image)} bytes, id {avatar_id[:8]}…)")


def bookmark(name):
    """A XEP-0402 conference element (its room is the item's id)."""
    conference = Conference()
    conference["name"], conference["autojoin"], conference["nick"] = name, True, "Juliet"
    return conference


async def bookmarks(juliet, garden, romeo, nurse, room):
    """XEP-0402: a bookmark is added, notified to the other resource, retrieved
    there, and private to the account (whitelist)."""
    owner = juliet.boundjid.bare
    seen = events(garden, "native_bookmarks_publish")
    await juliet.plugin["xep_0163"].publish(
        bookmark("The Garden"),
        node=NS_BOOKMARKS,
        id=room,
        options=options(
            persist_items="true", max_items="max", send_last_published_item="never", access_model="whitelist"
        ),
        timeout=5,
    )
    msg = await first(seen, notified(NS_BOOKMARKS, room), f"{garden.boundjid}: the bookmark of {room}")
    check(msg["pubsub_event"]["items"]["item"]["conference"]["name"] == "The Garden", f"the notification: {msg}")
    stored = items_of(await garden.plugin["xep_0060"].get_items(owner, NS_BOOKMARKS, timeout=5))
    check(set(stored) == {room}, f"{garden.boundjid} retrieved the bookmarks {sorted(stored)}")
    romeo_refused = await refused(romeo, owner, NS_BOOKMARKS, "romeo")
    nurse_refused = await refused(nurse, owner, NS_BOOKMARKS, "the nurse")
    print(f"bookmarks: {room} added, notified to {garden.boundjid.resource}, retrieved there; "
          f"refused to romeo ({romeo_refused}) and the nurse ({nurse_refused})")
    return seen


async def legacy_bookmarks(juliet, garden, seen, room, new_room):
    """XEP-0402's compatibility (the conversion of XEP-0411,
    urn:xmpp:bookmarks-conversion:0): XEP-0048 bookmarks in XEP-0049 private
    storage are a view of the PEP ones, both ways."""
    iq = await juliet.plugin["xep_0048"].get_bookmarks(timeout=5)
    legacy = [str(c["jid"]) for c in iq["private"]["bookmarks"]["conferences"]]
    check(legacy == [room], f"XEP-0048 private storage shows {legacy}, not [{room}]")
    storage = Bookmarks()
    storage.add_conference(room, "Juliet", name="The Garden", autojoin=True)
    storage.add_conference(new_room, "Juliet", name="The Balcony")
    await juliet.plugin["xep_0048"].set_bookmarks(storage, timeout=5)
    await first(seen, notified(NS_BOOKMARKS, new_room), f"{garden.boundjid}: {new_room} stored with XEP-0048")
    owner = juliet.boundjid.bare
    stored = items_of(await garden.plugin["xep_0060"].get_items(owner, NS_BOOKMARKS, timeout=5))
    check(set(stored) == {room, new_room}, f"after the XEP-0048 store, PEP has {sorted(stored)}")
    print(f"bookmarks (XEP-0048): private storage shows {room}; {new_room} stored there reached PEP")


def element(xml):
    """An ElementTree element, as slixmpp publishes a payload."""
    return ET.fromstring(xml)


AXOLOTL_BUNDLE = f"""<bundle xmlns='{NS_AXOLOTL}'>
  <signedPreKeyPublic signedPreKeyId='1'>BQd2qJ0ZfPnGBlWyXw==</signedPreKeyPublic>
  <signedPreKeySignature>c2lnbmF0dXJl</signedPreKeySignature>
  <identityKey>BXNUfEMuaWRlbnRpdHk=</identityKey>
  <prekeys><preKeyPublic preKeyId='1'>BWZpcnN0</preKeyPublic><preKeyPublic preKeyId='2'>BXNlY29uZA==</preKeyPublic></prekeys>
</bundle>"""

OMEMO2_BUNDLE = f"""<bundle xmlns='{NS_OMEMO2}'>
  <spk id='1'>c3Br</spk><spks>c2lnbmF0dXJl</spks><ik>aWRlbnRpdHk=</ik>
  <prekeys><pk id='1'>Zmlyc3Q=</pk><pk id='2'>c2Vjb25k</pk></prekeys>
</bundle>"""

# (node, item id, payload) of each OMEMO flavour, device list first.
OMEMO_NODES = {
    "axolotl": [
        (f"{NS_AXOLOTL}.devicelist", "current", f"<list xmlns='{NS_AXOLOTL}'><device id='{DEVICE}'/></list>"),
        (f"{NS_AXOLOTL}.bundles:{DEVICE}", "current", AXOLOTL_BUNDLE),
    ],
    "omemo:2": [
        (f"{NS_OMEMO2}:devices", "current", f"<devices xmlns='{NS_OMEMO2}'><device id='{DEVICE}'/></devices>"),
        (f"{NS_OMEMO2}:bundles", DEVICE, OMEMO2_BUNDLE),
    ],
}


async def omemo(juliet, nurse):
    """Open nodes (XEP-0384): someone with no subscription reads the keys."""
    owner = juliet.boundjid.bare
    for flavour, nodes in OMEMO_NODES.items():
        for node, item_id, payload in nodes:
            # OMEMO 2 keeps every device's bundle on one node.
            extra = {"max_items": "max"} if node == f"{NS_OMEMO2}:bundles" else {}
            form = options(access_model="open", **extra)
            await juliet.plugin["xep_0060"].publish(None, node, id=item_id, payload=element(payload), options=form,
                                                    timeout=5)
        (devices_node, _, _), (bundle_node, bundle_id, bundle) = nodes
        listed = items_of(await nurse.plugin["xep_0060"].get_items(owner, devices_node, timeout=5))
        ids = [d.get("id") for d in listed["current"]] if "current" in listed else []
        check(ids == [DEVICE], f"the nurse read the {flavour} device list {listed}")
        fetched = items_of(await nurse.plugin["xep_0060"].get_item(owner, bundle_node, bundle_id, timeout=5))
        check(bundle_id in fetched, f"the nurse read the {flavour} bundle items {sorted(fetched)}")
        check(same_xml(fetched[bundle_id], element(bundle)), f"the {flavour} bundle: {ET.tostring(fetched[bundle_id])}")
    print(f"omemo: device {DEVICE} and its bundle read by a stranger, {' and '.join(OMEMO_NODES)}")


def same_xml(a, b):
    """Equal elements: names, attributes, trimmed text, children in order."""
    return (a.tag == b.tag and a.attrib == b.attrib and (a.text or "").strip() == (b.text or "").strip()
            and len(a) == len(b) and all(same_xml(x, y) for x, y in zip(a, b)))


def entry(title):
    """A XEP-0277 microblog post."""
    return element(f"<entry xmlns='http://www.w3.org/2005/Atom'><title>{title}</title></entry>")


async def items_and_retract(juliet, romeo):
    """XEP-0060 §6.5.7: the last two of three; §7.2.2.1: the retraction is notified."""
    owner, pubsub = juliet.boundjid.bare, juliet.plugin["xep_0060"]
    published, retracted = events(romeo, "pubsub_publish"), events(romeo, "pubsub_retract")
    ids = ["first", "second", "third"]
    for item_id in ids:
        await pubsub.publish(None, NS_MICROBLOG, id=item_id, payload=entry(f"{item_id} post"),
                             options=options(max_items="10", notify_retract="true"), timeout=5)
        await first(published, notified(NS_MICROBLOG, item_id), f"romeo: the post {item_id}")
    last_two = await romeo.plugin["xep_0060"].get_items(owner, NS_MICROBLOG, max_items=2, timeout=5)
    got = list(items_of(last_two))
    check(got == ids[1:], f"max_items=2 gave {got}, not {ids[1:]}")
    await pubsub.retract(None, NS_MICROBLOG, "first", timeout=5)
    await first(retracted, notified(NS_MICROBLOG, "first", "retract"), "romeo: the retraction of first")
    left = list(items_of(await romeo.plugin["xep_0060"].get_items(owner, NS_MICROBLOG, timeout=5)))
    check(left == ids[1:], f"after the retraction the node has {left}")
    print(f"items: max_items=2 gave the last two of three; the retraction reached romeo, {len(left)} left")


async def mds(juliet, garden, romeo):
    """XEP-0490: a displayed marker, private to the account (whitelist), reaches
    its other resources."""
    chat, owner = romeo.boundjid.bare, juliet.boundjid.bare
    seen = events(garden, "message_displayed_synchronization_publish")
    marker = Displayed()
    marker["stanza_id"]["by"], marker["stanza_id"]["id"] = owner, "2f1c-stanza-id"
    await juliet.plugin["xep_0223"].store(marker, node=NS_MDS, id=chat, timeout=5)
    msg = await first(seen, notified(NS_MDS, chat), f"{garden.boundjid}: the displayed marker for {chat}")
    stanza_id = msg["pubsub_event"]["items"]["item"]["displayed"]["stanza_id"]
    check((stanza_id["by"], stanza_id["id"]) == (owner, "2f1c-stanza-id"), f"the marker: {msg}")
    condition = await refused(romeo, owner, NS_MDS, "romeo")
    print(f"mds: marker for {chat} reached {garden.boundjid.resource}; romeo refused ({condition})")


async def run(args):
    juliet = await login(args, args.jid, args.password, PLUGINS + ["xep_0084", "xep_0048", "xep_0049"])
    garden = await login(args, args.jid2, args.password, PLUGINS + ["xep_0402", "xep_0490"])
    romeo = await login(args, args.peer_jid, args.peer_password, PLUGINS + ["xep_0084"])
    nurse = await login(args, args.nurse_jid, args.nurse_password, ["xep_0060"])
    garden.plugin["xep_0163"].register_pep("native_bookmarks", Conference)
    await available(juliet)
    await available(garden, NS_BOOKMARKS, NS_MDS)
    await available(romeo, MetaData.namespace, NS_MICROBLOG)
    await subscribe_both_ways(juliet, romeo)
    print(f"roster: {juliet.boundjid.bare} and {romeo.boundjid.bare} subscribed both ways")
    await avatar(juliet, romeo)
    seen = await bookmarks(juliet, garden, romeo, nurse, ROOMS[0])
    await omemo(juliet, nurse)
    await items_and_retract(juliet, romeo)
    await mds(juliet, garden, romeo)
    await legacy_bookmarks(juliet, garden, seen, *ROOMS)  # last: the newest server side
    await close(juliet, garden, romeo, nurse)


main(
    __doc__,
    run,
    [
        ("--jid2", "juliet@localhost/garden", "a second resource of the same account"),
        ("--peer-jid", "romeo@localhost/orchard", "a contact (full JID)"),
        ("--peer-password", "montague", "its password"),
        ("--nurse-jid", "nurse@localhost/kitchen", "an account with no subscription"),
        ("--nurse-password", "angelica", "its password"),
    ],
)
