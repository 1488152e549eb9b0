"""Message archive (XEP-0313) and stanza ids (XEP-0359) with slixmpp's xep_0313 plugin.

    mam.py --port P --ca CA.pem --jid juliet@localhost/balcony --password balcony \
           --peer-jid romeo@localhost/orchard --peer-password montague \
           --nurse-jid nurse@localhost/kitchen --nurse-password angelica \
           [--messages 30] [--page 10]

The server runs with `archive = true`. Juliet and Romeo, both available, exchange
--messages chat messages to each other's bare JID, in both directions (Romeo sends
the even ones, Juliet the odd ones), each sent once the previous one has arrived.
Halfway through, Romeo sends one more with a XEP-0334 `<no-store/>` hint, and the
Nurse sends Juliet one. Then, after a ping, Juliet:

- live: every message she received carried exactly one `<stanza-id by='juliet's
  bare JID'/>` (XEP-0359), all different, and the no-store one none; Romeo's
  copies carried his own;
- disco: her bare JID's disco#info lists urn:xmpp:mam:2 (XEP-0313 §6);
- forward: pages through her archive with Romeo (`with` filter) with
  retrieve(iterator=True) and RSM max --page: full pages, `complete` on the last
  only, then an empty one;
- backward: iterate(reverse=True), how a client catches up from the newest page:
  the same messages, newest first;
- all: one query without a filter has everything, the Nurse's message too.

In each, every result is checked: its order and body, who sent it to whom, a
delay stamp within the check's run, a result id seen once; a received message's
result id is the stanza-id it was delivered with, and its archived copy carries
that id too. The no-store message is in no result. Prints one line per part.
"""

import asyncio
import time
import xml.etree.ElementTree as ET
from datetime import datetime, timezone

from slixmpp import JID, Message

from check import Fail, IqError, IqTimeout, check, close, drain, expect_from, main, online, settled

NS_MAM = "urn:xmpp:mam:2"
NS_SID = "urn:xmpp:sid:0"
NS_HINTS = "urn:xmpp:hints"
NS_FORWARD = "urn:xmpp:forward:0"
NS_DELAY = "urn:xmpp:delay"
NO_STORE_BODY = "not for the archive"
NURSE_BODY = "the nurse calls"
# Clock slack for the delay stamps (whole seconds on the wire, the same host).
SLACK = 5


def stanza_ids(xml, by):
    """The ids of the <stanza-id/> children of element `xml` that are by `by`."""
    return [e.get("id") for e in xml.findall(f"{{{NS_SID}}}stanza-id") if e.get("by") == by]


async def login(args, jid, password, plugins):
    """online(), available, with an inbox of every message with a body (errors too)."""
    xmpp = await online(args, jid, password, plugins=plugins)
    xmpp.inbox = asyncio.Queue()
    xmpp.add_event_handler("message", xmpp.inbox.put_nowait)
    xmpp.add_event_handler("message_error", xmpp.inbox.put_nowait)
    xmpp.send_presence()
    await xmpp.plugin["xep_0199"].send_ping(xmpp.boundjid.domain, timeout=5)  # presence processed
    return xmpp


async def deliver(sender, receiver, body, hint=None):
    """`sender` sends a chat message with `body` to `receiver`'s bare JID (with a
    XEP-0334 `hint` element); returns it as `receiver` got it."""
    msg = sender.make_message(mto=receiver.boundjid.bare, mbody=body, mtype="chat")
    if hint:
        ET.SubElement(msg.xml, f"{{{NS_HINTS}}}{hint}")
    msg.send()
    got = await expect_from(receiver.inbox, str(sender.boundjid), f"{receiver.boundjid.bare}: {body!r}", 5)
    check(got["body"] == body and got["type"] == "chat", f"{receiver.boundjid.bare} received {got}, not {body!r}")
    return got


async def exchange(juliet, romeo, nurse, count):
    """The messages; returns (the archive Juliet should have with Romeo, her whole
    archive), each a list of (body, 'received' or 'sent', the live stanza-id for a
    received one)."""
    owner, peer = juliet.boundjid.bare, romeo.boundjid.bare
    with_romeo, everything, live_ids = [], [], []
    for k in range(count):
        if k == count // 2:
            got = await deliver(romeo, juliet, NO_STORE_BODY, hint="no-store")
            check(not stanza_ids(got.xml, owner),
                  f"the no-store message reached {owner} with her stanza-id {stanza_ids(got.xml, owner)}: {got}")
            got = await deliver(nurse, juliet, NURSE_BODY)
            ids = stanza_ids(got.xml, owner)
            check(len(ids) == 1 and ids[0], f"the nurse's message reached {owner} with her stanza-ids {ids}: {got}")
            everything.append((NURSE_BODY, "received", ids[0]))
        if k % 2 == 0:
            body = f"{k:02d} romeo to juliet"
            got = await deliver(romeo, juliet, body)
            ids = stanza_ids(got.xml, owner)
            check(len(ids) == 1 and ids[0], f"{body!r} reached {owner} with her stanza-ids {ids}: {got}")
            entry = (body, "received", ids[0])
            live_ids.append(ids[0])
        else:
            body = f"{k:02d} juliet to romeo"
            got = await deliver(juliet, romeo, body)
            ids = stanza_ids(got.xml, peer)
            check(len(ids) == 1 and ids[0], f"{body!r} reached {peer} with his stanza-ids {ids}: {got}")
            entry = (body, "sent", None)
        with_romeo.append(entry)
        everything.append(entry)
    check(len(set(live_ids)) == len(live_ids), f"{owner} got some stanza-id twice: {live_ids}")
    await settled(juliet, romeo, nurse)
    for xmpp in (juliet, romeo, nurse):
        extra = drain(xmpp.inbox)
        check(not extra, f"{xmpp.boundjid.bare} received more messages: {extra}")
    print(f"live: {len(live_ids) + 1} messages received by {owner} carried her stanza-id, all different; "
          f"the no-store one none; {count - len(live_ids)} received by {peer} carried his")
    return with_romeo, everything


async def ask(what, request):
    """Awaits an iq; an error answer or a timeout is a Fail naming `what`."""
    try:
        return await request
    except IqError as e:
        raise Fail(f"{what}: <{e.iq['error']['condition']}/> {e.iq['error']['text']}") from None
    except IqTimeout:
        raise Fail(f"{what}: no answer") from None


def verify(results, expected, juliet, peers, started, what, newest_first=False):
    """Each archive result against the (body, direction, live id) it should be, in
    order (their stamps from the oldest, or with newest_first the newest); returns
    the result ids."""
    owner = juliet.boundjid.bare
    inners = []
    for r in results:
        inner = r["mam_result"]["forwarded"]["stanza"]
        check(isinstance(inner, Message), f"{what}: a result without a forwarded message: {r}")
        inners.append(inner)
    got = [inner["body"] for inner in inners]
    bodies = [body for body, _, _ in expected]
    check(NO_STORE_BODY not in got, f"{what}: the no-store message was archived: {got}")
    check(got == bodies, f"{what}: {len(got)} results {got},\nnot the {len(bodies)} {bodies}")
    now = datetime.now(timezone.utc).timestamp()
    ids, stamps = [], []
    for r, inner, (body, direction, live_id) in zip(results, inners, expected):
        result = r["mam_result"]
        rid = result["id"]
        check(rid, f"{what}: {body!r} has no result id: {r}")
        check(str(r["from"]) == owner, f"{what}: {body!r} came from {r['from']}, not her archive {owner}")
        check(r["to"] == juliet.boundjid, f"{what}: {body!r} was addressed to {r['to']}, not {juliet.boundjid}")
        forwarded = r.xml.find(f"{{{NS_MAM}}}result/{{{NS_FORWARD}}}forwarded")
        delay = forwarded.find(f"{{{NS_DELAY}}}delay") if forwarded is not None else None
        check(delay is not None and delay.get("stamp"), f"{what}: {body!r} has no delay stamp: {r}")
        stamp = result["forwarded"]["delay"]["stamp"]
        check(stamp is not None and stamp.tzinfo is not None, f"{what}: {body!r}'s stamp {delay.get('stamp')!r}")
        check(started - SLACK <= stamp.timestamp() <= now + SLACK,
              f"{what}: {body!r} is stamped {delay.get('stamp')}, outside this check's run")
        stamps.append(stamp)
        check(inner["type"] == "chat", f"{what}: {body!r} was archived with type {inner['type']!r}: {r}")
        peer = peers[body]
        if direction == "received":
            check(inner["from"].bare == peer and inner["to"].bare == owner,
                  f"{what}: {body!r} archived from {inner['from']} to {inner['to']}, not {peer} to {owner}")
            check(rid == live_id, f"{what}: {body!r} has the result id {rid}, but was delivered with the "
                                  f"stanza-id {live_id}")
            archived = stanza_ids(inner.xml, owner)
            check(archived == [live_id], f"{what}: the archived {body!r} carries the stanza-ids {archived}, "
                                         f"not [{live_id}]")
        else:
            check(inner["to"].bare == peer and (not inner["from"] or inner["from"].bare == owner),
                  f"{what}: {body!r} archived from {inner['from']!r} to {inner['to']}, not {owner} to {peer}")
        ids.append(rid)
    check(len(set(ids)) == len(ids), f"{what}: a result id twice: {ids}")
    check(stamps == sorted(stamps, reverse=newest_first),
          f"{what}: the stamps are out of order: {[str(s) for s in stamps]}")
    return ids


async def forward(juliet, romeo, expected, page, peers, started):
    """retrieve(iterator=True): the pages from the oldest, with Romeo only."""
    owner, peer = juliet.boundjid.bare, romeo.boundjid.bare
    mam = juliet.plugin["xep_0313"]
    pages = []
    limit = len(expected) // page + 2
    iterator = mam.retrieve(jid=JID(owner), with_jid=JID(peer), iterator=True, rsm={"max": page})
    async for answer in iterator:
        pages.append((list(answer["mam"]["results"]), answer["mam_fin"]["complete"]))
        check(len(pages) <= limit, f"forward: more than {limit} pages of {page} for {len(expected)} messages")
    sizes = [len(results) for results, _ in pages]
    full, rest = divmod(len(expected), page)
    wanted = [page] * full + ([rest] if rest else [])
    check(sizes == wanted, f"forward: pages of {sizes}, not {wanted}")
    complete = [c for _, c in pages]
    check(complete[-1] in ("true", "1") and not any(c in ("true", "1") for c in complete[:-1]),
          f"forward: complete={complete} on the pages")
    ids = verify([r for results, _ in pages for r in results], expected, juliet, peers, started, "forward")
    print(f"forward: {len(ids)} messages with {peer} in pages of {', '.join(map(str, sizes))}, "
          f"in order, complete on the last")
    return ids


async def backward(juliet, romeo, expected, page, peers, started, forward_ids):
    """iterate(reverse=True): from the newest page back, newest first."""
    owner, peer = juliet.boundjid.bare, romeo.boundjid.bare
    mam = juliet.plugin["xep_0313"]
    results = []
    async for msg in mam.iterate(jid=JID(owner), with_jid=JID(peer), reverse=True, rsm={"max": page}):
        results.append(msg)
        check(len(results) <= len(expected) + page, f"backward: more than {len(expected) + page} results")
    ids = verify(results, list(reversed(expected)), juliet, peers, started, "backward", newest_first=True)
    check(ids == list(reversed(forward_ids)), "backward: other result ids than forward's")
    print(f"backward: {len(ids)} messages with {peer} from the newest page back, newest first, the same ids")


async def everything(juliet, expected, peers, started):
    """One query without a filter: all of it."""
    owner = juliet.boundjid.bare
    iq = await ask(f"{owner}'s archive", juliet.plugin["xep_0313"].retrieve(
        jid=JID(owner), rsm={"max": len(expected) + 10}, timeout=10))
    results = list(iq["mam"]["results"])
    verify(results, expected, juliet, peers, started, "all")
    complete = iq["mam_fin"]["complete"]
    check(complete in ("true", "1"), f"all: the page of everything is not complete ({complete!r})")
    print(f"all: {len(results)} messages archived for {owner}, the nurse's too, the no-store one not")


async def run(args):
    started = time.time()
    count, page = int(args.messages), int(args.page)
    check(count >= 2 * page and page > 0, "--messages must be at least twice --page")
    juliet = await login(args, args.jid, args.password, ["xep_0030", "xep_0313", "xep_0359"])
    romeo = await login(args, args.peer_jid, args.peer_password, ["xep_0359"])
    nurse = await login(args, args.nurse_jid, args.nurse_password, [])
    owner = juliet.boundjid.bare
    with_romeo, all_expected = await exchange(juliet, romeo, nurse, count)
    peers = {body: romeo.boundjid.bare for body, _, _ in with_romeo}
    peers[NURSE_BODY] = nurse.boundjid.bare
    await juliet.plugin["xep_0199"].send_ping(juliet.boundjid.domain, timeout=5)

    info = await ask(f"disco#info of {owner}", juliet.plugin["xep_0030"].get_info(jid=owner, local=False, timeout=5))
    features = info["disco_info"]["features"]
    check(NS_MAM in features, f"{owner}'s disco#info has no {NS_MAM}: {features}")
    print(f"disco: {owner} has {NS_MAM}")

    ids = await forward(juliet, romeo, with_romeo, page, peers, started)
    await backward(juliet, romeo, with_romeo, page, peers, started, ids)
    await everything(juliet, all_expected, peers, started)
    await close(juliet, romeo, nurse)


main(
    __doc__,
    run,
    [
        ("--peer-jid", "romeo@localhost/orchard", "the other account (full JID)"),
        ("--peer-password", "montague", "its password"),
        ("--nurse-jid", "nurse@localhost/kitchen", "a third account, who sends one message"),
        ("--nurse-password", "angelica", "its password"),
        ("--messages", "30", "how many messages Juliet and Romeo exchange"),
        ("--page", "10", "RSM max of each page"),
    ],
)
