"""Group chat with slixmpp's xep_0045 plugin: create, configure, join, chat, kick,
ban, destroy.

    muc.py --port P --ca CA.pem --jid juliet@localhost/balcony --password balcony \
           --peer-jid romeo@localhost/orchard --peer-password montague \
           --room garden@conference.localhost

Juliet joins a room that does not exist: it is created (status 201) and locked;
she fetches the configuration form, names the room and submits it. Romeo joins
(join_muc_wait: occupants, self-presence, history, subject) and sees Juliet in
the room; Juliet sets the subject; each sends a groupchat message and both
receive both, from the senders' occupant JIDs; Romeo joins again later from the
same account and gets the history; both leave.
"""

import asyncio

from slixmpp.exceptions import PresenceError

from check import Fail, check, close, expect, main, online


async def run(args):
    room, loop = args.room, asyncio.get_running_loop()
    juliet = await online(args, args.jid, args.password, plugins=["xep_0045", "xep_0004"])
    romeo = await online(args, args.peer_jid, args.peer_password, plugins=["xep_0045", "xep_0004"])
    muc_j, muc_r = juliet.plugin["xep_0045"], romeo.plugin["xep_0045"]
    inbox_j, inbox_r = asyncio.Queue(), asyncio.Queue()
    juliet.add_event_handler("groupchat_message", lambda m: m["body"] and inbox_j.put_nowait(m))
    romeo.add_event_handler("groupchat_message", lambda m: m["body"] and inbox_r.put_nowait(m))

    own, _, _, _ = await asyncio.wait_for(muc_j.join_muc_wait(room, "Juliet", maxstanzas=0), 5)
    codes = set(own["muc"]["status_codes"])
    check({110, 201} <= codes, f"juliet's self-presence status codes: {codes}")
    form = await muc_j.get_room_config(room, timeout=5)
    check("muc#roomconfig_roomname" in form.get_fields(), f"the form has no room name: {form}")
    form["type"] = "submit"
    fields = form.get_fields()
    for var in list(fields):
        if var != "muc#roomconfig_roomname" and var != "FORM_TYPE":
            del fields[var]
    form.set_values({"muc#roomconfig_roomname": "The Garden"})
    await muc_j.set_room_config(room, form, timeout=5)
    info = await juliet.plugin["xep_0030"].get_info(jid=room, timeout=5)
    names = [i[3] for i in info["disco_info"]["identities"]]
    check("The Garden" in names, f"the room's name after configuration: {names}")

    own, _, occupants, _ = await asyncio.wait_for(muc_r.join_muc_wait(room, "Romeo", maxstanzas=0), 5)
    seen = sorted(str(p["from"]) for p in occupants)
    check(seen == [f"{room}/Juliet", f"{room}/Romeo"], f"romeo sees {seen}")
    check(110 in set(own["muc"]["status_codes"]), "romeo's self-presence has no 110")
    muc_j.set_subject(room, "Tonight")
    juliet.send_message(mto=room, mbody="from juliet", mtype="groupchat")
    romeo.send_message(mto=room, mbody="from romeo", mtype="groupchat")
    for who, inbox in (("juliet", inbox_j), ("romeo", inbox_r)):
        got = {}
        for _ in range(2):
            m = await expect(inbox, f"{who}: a groupchat message")
            got[m["body"]] = str(m["from"])
        check(got == {"from juliet": f"{room}/Juliet", "from romeo": f"{room}/Romeo"}, f"{who} received {got}")

    later = await online(args, args.peer_jid.split("/")[0] + "/later", args.peer_password, plugins=["xep_0045"])
    _, subject, _, history = await asyncio.wait_for(later.plugin["xep_0045"].join_muc_wait(room, "Romeo", maxstanzas=10), 5)
    bodies = sorted(m["body"] for m in history)
    check(bodies == ["from juliet", "from romeo"], f"history on join: {bodies}")
    check(subject["subject"] == "Tonight", f"subject on join: {subject}")
    # Kick (§8.2): every resource of Romeo's hears 307 and the reason.
    gone = {who: asyncio.Queue() for who in ("romeo", "later")}
    for who, client in (("romeo", romeo), ("later", later)):
        client.add_event_handler(f"muc::{room}::got_offline",
                                 lambda p, q=gone[who]: str(p["from"]) == f"{room}/Romeo" and q.put_nowait(p))
    await muc_j.set_role(room, "Romeo", "none", reason="Too loud", timeout=5)
    for who, queue in gone.items():
        p = await expect(queue, f"{who}: the kick")
        codes = set(p["muc"]["status_codes"])
        check({307, 110} <= codes and p["muc"]["item"]["reason"] == "Too loud", f"{who} kicked with {p}")
    # Ban (§9.1): his next attempt to enter is forbidden.
    await muc_j.set_affiliation(room, "outcast", jid=args.peer_jid.split("/")[0], reason="Banned", timeout=5)
    try:
        await muc_r.join_muc_wait(room, "Romeo", maxstanzas=0, timeout=5)
        raise Fail("a banned user entered the room")
    except PresenceError as e:
        check(e.condition == "forbidden", f"the banned user's join: {e.condition}")
    # Destroy (§10.9): Juliet hears it with the reason; the room is gone.
    destroyed = asyncio.Queue()
    juliet.add_event_handler(f"muc::{room}::got_offline", destroyed.put_nowait)
    await muc_j.destroy(room, reason="Closing time", timeout=5)
    p = await expect(destroyed, "juliet: the room's destruction")
    check(p["muc"]["destroy"]["reason"] == "Closing time", f"destroyed with {p}")
    items = await juliet.plugin["xep_0030"].get_items(jid=room.split("@")[1], timeout=5)
    check(room not in [str(i[0]) for i in items["disco_items"]["items"]], f"the room is still listed: {items}")
    print(f"created, configured, joined and chatted in {room} ({len(bodies)} kept in history); kicked, banned, destroyed")
    await close(juliet, romeo, later)


main(
    __doc__,
    run,
    [
        ("--peer-jid", "romeo@localhost/orchard", "the other account (full JID)"),
        ("--peer-password", "montague", "its password"),
        ("--room", "garden@conference.localhost", "the room to create"),
    ],
)
