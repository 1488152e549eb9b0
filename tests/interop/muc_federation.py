"""Group chat across servers: a room on one server, an occupant from the other.

    muc_federation.py --port P --ca CA.pem --jid owner@a.test/r --password pw \
                      --peer-port P2 --peer-ca CA2.pem --peer-jid guest@b.test/r \
                      --peer-password pw2 --room lounge@conference.a.test [--s2s-wait 15]

The owner (on the room's server) creates the room with slixmpp's xep_0045 plugin
and submits its configuration form; the guest, on the other server, joins over
s2s and sees both occupants with the self-presence code 110; each sends a
groupchat message and both receive both from the senders' occupant JIDs; the
owner sends the guest a private message through the room; the guest leaves and
the owner sees the guest's unavailable presence. Prints one line on success.
"""

import argparse
import asyncio
import time

from check import Fail, check, close, expect, main, online


async def next_from(queue, sender, what, seconds):
    """The next item of `queue` from `sender` (a full JID string), skipping others."""
    deadline = time.monotonic() + seconds
    while True:
        item = await expect(queue, what, max(0.01, deadline - time.monotonic()))
        if str(item["from"]) == sender:
            return item


async def run(args):
    room = args.room
    args.s2s_wait = float(args.s2s_wait)
    check(args.peer_port, "--peer-port is required")
    peer_args = argparse.Namespace(**vars(args))
    peer_args.host = args.peer_host or args.host
    peer_args.port = args.peer_port
    peer_args.ca = args.peer_ca or args.ca
    plugins = ["xep_0045", "xep_0004"]
    owner = await online(args, args.jid, args.password, plugins=plugins)
    guest = await online(peer_args, args.peer_jid, args.peer_password, plugins=plugins)
    muc_o, muc_g = owner.plugin["xep_0045"], guest.plugin["xep_0045"]
    inbox_o, inbox_g, private_g, left_o = (asyncio.Queue() for _ in range(4))
    owner.add_event_handler("groupchat_message", lambda m: m["body"] and inbox_o.put_nowait(m))
    guest.add_event_handler("groupchat_message", lambda m: m["body"] and inbox_g.put_nowait(m))
    guest.add_event_handler("message", lambda m: m["type"] in ("chat", "normal") and private_g.put_nowait(m))
    owner.add_event_handler(f"muc::{room}::got_offline", left_o.put_nowait)

    own, _, _, _ = await asyncio.wait_for(muc_o.join_muc_wait(room, "Owner", maxstanzas=0), 10)
    check(201 in set(own["muc"]["status_codes"]), f"the owner's self-presence: {own['muc']['status_codes']}")
    form = await muc_o.get_room_config(room, timeout=10)
    form["type"] = "submit"
    fields = form.get_fields()
    for var in list(fields):
        if var not in ("FORM_TYPE", "muc#roomconfig_roomname"):
            del fields[var]
    form.set_values({"muc#roomconfig_roomname": "Across servers"})
    await muc_o.set_room_config(room, form, timeout=10)

    # The first stanza over s2s may wait for the link to be authenticated.
    own, _, occupants, _ = await asyncio.wait_for(muc_g.join_muc_wait(room, "Guest", maxstanzas=0), args.s2s_wait)
    seen = sorted(str(p["from"]) for p in occupants)
    check(seen == [f"{room}/Guest", f"{room}/Owner"], f"the guest sees {seen}")
    check(110 in set(own["muc"]["status_codes"]), "the guest's self-presence has no 110")

    owner.send_message(mto=room, mbody="from the owner", mtype="groupchat")
    guest.send_message(mto=room, mbody="from the guest", mtype="groupchat")
    for who, inbox in (("owner", inbox_o), ("guest", inbox_g)):
        got = {}
        for _ in range(2):
            m = await expect(inbox, f"{who}: a groupchat message", args.s2s_wait)
            got[m["body"]] = str(m["from"])
        check(got == {"from the owner": f"{room}/Owner", "from the guest": f"{room}/Guest"}, f"{who} received {got}")

    owner.send_message(mto=f"{room}/Guest", mbody="just for you", mtype="chat")
    pm = await next_from(private_g, f"{room}/Owner", "the guest: a private message", args.s2s_wait)
    check(pm["body"] == "just for you", f"the private message: {pm}")

    muc_g.leave_muc(room, "Guest")
    gone = await next_from(left_o, f"{room}/Guest", "the owner: the guest's unavailable", args.s2s_wait)
    check(gone["type"] == "unavailable", f"the guest left with {gone}")
    await owner.plugin["xep_0199"].send_ping(owner.boundjid.domain, timeout=5)
    print(f"{args.peer_jid.split('/')[0]} joined {room} across servers, chatted both ways, got a private message, left")
    await close(owner, guest)


main(
    __doc__,
    run,
    [
        ("--peer-host", None, "the guest's server address (default: --host)"),
        ("--peer-port", None, "its client (STARTTLS) port"),
        ("--peer-ca", None, "CA certificate of its server (default: --ca)"),
        ("--peer-jid", "guest@b.test/r", "the guest's account on the other server (full JID)"),
        ("--peer-password", "pw", "its password"),
        ("--room", "lounge@conference.a.test", "the room to create on the owner's server"),
        ("--s2s-wait", "15", "seconds the first stanza over s2s may take"),
    ],
)
