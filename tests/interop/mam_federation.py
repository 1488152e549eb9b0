"""Message archives (XEP-0313) and stanza ids (XEP-0359) across servers.

    mam_federation.py --port P --ca CA.pem --jid romeo@a.test/orchard --password montague \
                      --peer-port P2 --peer-ca CA2.pem --peer-jid juliet@b.test/balcony \
                      --peer-password balcony [--messages 6] [--peer-mam] [--s2s-wait 15]

Romeo logs in to his server (--port, --ca), which archives (`archive = true`);
Juliet to hers (--peer-port, --peer-ca). Both send presence; they are strangers.
They exchange --messages chat messages to each other's bare JID over s2s, in
turns, Juliet first (the even ones), each sent once the previous one arrived.
Juliet's second message carries `<stanza-id by='romeo's bare JID' id='forged'/>`,
and one by a third party (`witness.example`) that neither server has a reason to
take out: its arrival shows that the stanza-ids crossed s2s (Prosody's log shows
only the top tag of a stanza).

- live: each message Romeo received carried exactly one stanza-id by his bare
  JID, all different, never the forged one (the witness's arrived); none by
  Romeo reached Juliet;
- disco: Romeo's bare JID lists urn:xmpp:mam:2;
- archive: Romeo's archive with Juliet (slixmpp's xep_0313, `with` filter, RSM
  pages of 4 with iterate) has every message of both directions in order, each
  with a delay stamp; a received one's result id is the stanza-id it was
  delivered with, and its archived copy carries that id and nothing forged;
- peer archive (--peer-mam, her server archives too): Juliet's live copies of
  Romeo's messages carried her server's stanza-id, and her archive with Romeo has
  every message, those ids being the result ids of his.
Prints one line per part. Every wait for a stanza that crosses servers is bounded
by --s2s-wait.
"""

import argparse
import asyncio
import time
import xml.etree.ElementTree as ET

from slixmpp import JID, Message

from check import Fail, IqError, IqTimeout, check, close, drain, expect_from, main, online, settled

NS_MAM = "urn:xmpp:mam:2"
NS_SID = "urn:xmpp:sid:0"
NS_FORWARD = "urn:xmpp:forward:0"
NS_DELAY = "urn:xmpp:delay"
FORGED = "forged"
WITNESS = "witness.example"
PAGE = 4
# Clock slack for the delay stamps (both servers run on this host).
SLACK = 5


def stanza_ids(xml, by=None):
    """The ids of the <stanza-id/> children of element `xml` (those by `by`)."""
    return [e.get("id") for e in xml.findall(f"{{{NS_SID}}}stanza-id") if by is None or e.get("by") == by]


async def login(args, jid, password, wait):
    """online(), available, with an inbox of every message with a body (errors too)."""
    xmpp = await online(args, jid, password, plugins=["xep_0030", "xep_0313", "xep_0359"])
    xmpp.inbox = asyncio.Queue()
    xmpp.add_event_handler("message", xmpp.inbox.put_nowait)
    xmpp.add_event_handler("message_error", xmpp.inbox.put_nowait)
    xmpp.send_presence()
    await xmpp.plugin["xep_0199"].send_ping(xmpp.boundjid.domain, timeout=wait)  # presence processed
    return xmpp


async def deliver(sender, receiver, body, wait, forged_for=None):
    """`sender` sends a chat message with `body` to `receiver`'s bare JID (with a
    stanza-id claiming to be by `forged_for`); returns it as `receiver` got it."""
    msg = sender.make_message(mto=receiver.boundjid.bare, mbody=body, mtype="chat")
    if forged_for:
        ET.SubElement(msg.xml, f"{{{NS_SID}}}stanza-id", by=forged_for, id=FORGED)
        ET.SubElement(msg.xml, f"{{{NS_SID}}}stanza-id", by=WITNESS, id="kept")
    msg.send()
    got = await expect_from(receiver.inbox, str(sender.boundjid), f"{receiver.boundjid.bare}: {body!r}", wait)
    check(got["body"] == body and got["type"] == "chat", f"{receiver.boundjid.bare} received {got}, not {body!r}")
    return got


async def exchange(romeo, juliet, count, peer_mam, wait):
    """The messages, in turns; returns [(body, Romeo's direction, his live id,
    Juliet's live id)]."""
    owner, peer = romeo.boundjid.bare, juliet.boundjid.bare
    sent = []
    for k in range(count):
        if k % 2 == 0:
            body = f"{k:02d} juliet to romeo" + (" with a forged stanza-id" if k == 2 else "")
            got = await deliver(juliet, romeo, body, wait, forged_for=owner if k == 2 else None)
            ids = stanza_ids(got.xml, owner)
            check(len(ids) == 1 and ids[0] and ids[0] != FORGED,
                  f"{body!r} reached {owner} with his stanza-ids {ids}: {got}")
            check(FORGED not in stanza_ids(got.xml), f"{body!r} reached {owner} with a forged stanza-id: {got}")
            if k == 2:
                check(stanza_ids(got.xml, WITNESS) == ["kept"],
                      f"{body!r} reached {owner} without the stanza-id by {WITNESS}, so whether the forged one "
                      f"crossed s2s is unknown: {got}")
            sent.append((body, "received", ids[0], None))
        else:
            body = f"{k:02d} romeo to juliet"
            got = await deliver(romeo, juliet, body, wait)
            check(not stanza_ids(got.xml, owner), f"{body!r} reached {peer} with {owner}'s stanza-id: {got}")
            theirs = stanza_ids(got.xml, peer)
            if peer_mam:
                check(len(theirs) == 1 and theirs[0], f"{body!r} reached {peer} with her stanza-ids {theirs}: {got}")
            sent.append((body, "sent", None, theirs[0] if theirs else None))
    live = [r for _, _, r, _ in sent if r]
    check(len(set(live)) == len(live), f"{owner} got a stanza-id twice: {live}")
    await settled(romeo, via=juliet.boundjid)  # over both links, both ways
    await settled(romeo, juliet)
    for xmpp in (romeo, juliet):
        extra = drain(xmpp.inbox)
        check(not extra, f"{xmpp.boundjid.bare} received more messages: {extra}")
    print(f"live: {len(live)} messages from {peer} reached {owner} with his stanza-id (all different, "
          f"the forged one taken out, the witness's kept); {count - len(live)} reached {peer} with none by him"
          + (", with hers" if peer_mam else ""))
    return sent


async def ask(what, request):
    """Awaits an iq; an error answer or a timeout is a Fail naming `what`."""
    try:
        return await request
    except IqError as e:
        raise Fail(f"{what}: <{e.iq['error']['condition']}/> {e.iq['error']['text']}") from None
    except IqTimeout:
        raise Fail(f"{what}: no answer") from None


def verify(results, expected, xmpp, other, started, what, stamped_copies=True):
    """The archive results of `xmpp` (with `other`) against [(body, direction, the
    id it was delivered with)], in order; returns the result ids. With
    stamped_copies, a received message's archived copy carries its stanza-id (as
    it was delivered; XEP-0313 does not ask for it: Prosody keeps it as it came)."""
    owner = xmpp.boundjid.bare
    inners = []
    for r in results:
        inner = r["mam_result"]["forwarded"]["stanza"]
        check(isinstance(inner, Message), f"{what}: a result without a forwarded message: {r}")
        inners.append(inner)
    got, bodies = [i["body"] for i in inners], [body for body, _, _ in expected]
    check(got == bodies, f"{what}: {len(got)} results {got},\nnot the {len(bodies)} {bodies}")
    now = time.time()
    ids = []
    for r, inner, (body, direction, live_id) in zip(results, inners, expected):
        rid = r["mam_result"]["id"]
        check(rid, f"{what}: {body!r} has no result id: {r}")
        check(r["to"] == xmpp.boundjid, f"{what}: {body!r} was addressed to {r['to']}, not {xmpp.boundjid}")
        check(not r["from"] or str(r["from"]) == owner, f"{what}: {body!r} came from {r['from']}, not {owner}")
        forwarded = r.xml.find(f"{{{NS_MAM}}}result/{{{NS_FORWARD}}}forwarded")
        delay = forwarded.find(f"{{{NS_DELAY}}}delay") if forwarded is not None else None
        check(delay is not None and delay.get("stamp"), f"{what}: {body!r} has no delay stamp: {r}")
        stamp = r["mam_result"]["forwarded"]["delay"]["stamp"]
        check(stamp is not None and started - SLACK <= stamp.timestamp() <= now + SLACK,
              f"{what}: {body!r} is stamped {delay.get('stamp')}, outside this check's run")
        check(FORGED not in stanza_ids(inner.xml, owner), f"{what}: the archived {body!r} keeps the forged id: {r}")
        if direction == "received":
            check(inner["from"].bare == other and inner["to"].bare == owner,
                  f"{what}: {body!r} archived from {inner['from']} to {inner['to']}, not {other} to {owner}")
            check(rid == live_id, f"{what}: {body!r} has the result id {rid}, but was delivered with the "
                                  f"stanza-id {live_id}")
            archived = stanza_ids(inner.xml, owner)
            check(archived == [live_id] or (not stamped_copies and not archived),
                  f"{what}: the archived {body!r} carries the stanza-ids {archived} by {owner}, not [{live_id}]")
        else:
            check(inner["to"].bare == other and (not inner["from"] or inner["from"].bare == owner),
                  f"{what}: {body!r} archived from {inner['from']!r} to {inner['to']}, not {owner} to {other}")
        ids.append(rid)
    check(len(set(ids)) == len(ids), f"{what}: a result id twice: {ids}")
    return ids


async def archive_of(xmpp, other, to_bare_jid=True):
    """All of `xmpp`'s archive with `other`, with iterate() in pages of PAGE; the
    query goes to the account's bare JID, or with no `to` (Prosody's results have
    no `from`, and slixmpp then takes only those from the JID it asked)."""
    owner, results = xmpp.boundjid.bare, []
    jid = JID(owner) if to_bare_jid else None
    try:
        async for msg in xmpp.plugin["xep_0313"].iterate(jid=jid, with_jid=JID(other), rsm={"max": PAGE}):
            results.append(msg)
            check(len(results) <= 100, f"{owner}'s archive with {other} goes on and on")
    except (IqError, IqTimeout) as e:
        raise Fail(f"{owner}'s archive with {other}: {e}") from None
    return results


async def run(args):
    started, wait = time.time(), float(args.s2s_wait)
    count = int(args.messages)
    check(count >= 4, "--messages must be at least 4 (the forged stanza-id is on the third)")
    check(args.peer_port, "--peer-port is required")
    peer_args = argparse.Namespace(**vars(args))
    peer_args.host = args.peer_host or args.host
    peer_args.port = args.peer_port
    peer_args.ca = args.peer_ca or args.ca
    romeo = await login(args, args.jid, args.password, wait)
    juliet = await login(peer_args, args.peer_jid, args.peer_password, wait)
    owner, peer = romeo.boundjid.bare, juliet.boundjid.bare
    sent = await exchange(romeo, juliet, count, args.peer_mam, wait)
    await romeo.plugin["xep_0199"].send_ping(romeo.boundjid.domain, timeout=wait)

    info = await ask(f"disco#info of {owner}", romeo.plugin["xep_0030"].get_info(jid=owner, local=False, timeout=wait))
    features = info["disco_info"]["features"]
    check(NS_MAM in features, f"{owner}'s disco#info has no {NS_MAM}: {features}")
    print(f"disco: {owner} has {NS_MAM}")

    expected = [(body, direction, live) for body, direction, live, _ in sent]
    results = await archive_of(romeo, peer)
    verify(results, expected, romeo, peer, started, "archive")
    print(f"archive: {owner} has all {len(results)} messages with {peer} in order (pages of {PAGE}), "
          f"the received ones with the ids they were delivered with, none forged")

    if args.peer_mam:
        await juliet.plugin["xep_0199"].send_ping(juliet.boundjid.domain, timeout=wait)
        theirs = [(body, "sent" if d == "received" else "received", their_id) for body, d, _, their_id in sent]
        results = await archive_of(juliet, owner, to_bare_jid=False)
        verify(results, theirs, juliet, owner, started, "peer archive", stamped_copies=False)
        print(f"peer archive: {peer} has all {len(results)} messages with {owner} in order, "
              f"the received ones with her server's stanza-ids")
    await close(romeo, juliet)


main(
    __doc__,
    run,
    [
        ("--peer-host", None, "the peer account's server address (default: --host)"),
        ("--peer-port", None, "its client (STARTTLS) port"),
        ("--peer-ca", None, "CA certificate of its server (default: --ca)"),
        ("--peer-jid", "juliet@b.test/balcony", "the account on the other server (full JID)"),
        ("--peer-password", "balcony", "its password"),
        ("--messages", "6", "how many messages they exchange, in turns"),
        ("--peer-mam", False, "the peer's server archives too (XEP-0313): check its archive"),
        ("--s2s-wait", "15", "seconds to wait for each stanza that crosses servers"),
    ],
)
