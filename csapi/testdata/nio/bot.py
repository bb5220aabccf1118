#!/usr/bin/env python3
"""A matrix-nio bot written as any would be: nio's AsyncClient with its
encryption off, its ordinary sync loop (sync_forever) and autojoin on
invite, echoing what others say. It knows nothing of MLS: its homeserver
URL is the service's client-server façade.

The test drives it through stdin (send, bench, leave, quit, report) and reads
what it saw from stdout, one JSON object a line. It keeps its sync token
and counts in BOT_STATE, so that a restarted bot resumes where it left.

Environment: MATRIX_HOMESERVER, MATRIX_USER_ID, MATRIX_DEVICE_ID,
MATRIX_ACCESS_TOKEN, BOT_STATE.
"""
import asyncio
import json
import logging
import os
import sys
import time
from importlib.metadata import version

from nio import (AsyncClient, AsyncClientConfig, InviteMemberEvent, JoinResponse, RoomLeaveResponse,
                 RoomMessageText, RoomSendResponse, SyncResponse, UnknownEncryptedEvent, MegolmEvent)

USER = os.environ["MATRIX_USER_ID"]
STATE_PATH = os.environ["BOT_STATE"]
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)


def say(**fields):
    print(json.dumps(fields), flush=True)


def load_state():
    try:
        with open(STATE_PATH) as f:
            return json.load(f)
    except FileNotFoundError:
        return {"next_batch": None, "sent": 0, "received": [], "rooms": [], "offline_catchup": False}


def save_state(state):
    with open(STATE_PATH + ".tmp", "w") as f:
        json.dump(state, f)
    os.replace(STATE_PATH + ".tmp", STATE_PATH)


async def main():
    state = load_state()
    client = AsyncClient(os.environ["MATRIX_HOMESERVER"], USER, device_id=os.environ["MATRIX_DEVICE_ID"],
                         config=AsyncClientConfig(encryption_enabled=False, store_sync_tokens=False))
    client.restore_login(USER, os.environ["MATRIX_DEVICE_ID"], os.environ["MATRIX_ACCESS_TOKEN"])
    syncs = 0

    # Which sync of this process an event came in (for "the offline
    # message arrives on the next /sync").
    sync = client.sync

    async def counted_sync(*args, **kwargs):
        nonlocal syncs
        syncs += 1
        return await sync(*args, **kwargs)
    client.sync = counted_sync

    async def on_invite(room, event):
        if event.state_key != USER or event.membership != "invite":
            return
        resp = await client.join(room.room_id)
        if isinstance(resp, JoinResponse):
            if room.room_id not in state["rooms"]:
                state["rooms"].append(room.room_id)
            save_state(state)
            say(event="joined", room=room.room_id)
        else:
            say(event="error", what="join", error=str(resp))

    async def on_message(room, event):
        if event.sender == USER:
            say(event="own", room=room.room_id, event_id=event.event_id, sync=syncs)
            return
        mls = event.source.get("unsigned", {}).get("org.mls-appservice.mls", {})
        line = dict(event="message", room=room.room_id, sender=event.sender, event_id=event.event_id,
                    body=event.body, sync=syncs, decrypted=bool(mls.get("decrypted")))
        parts = event.body.split()
        if len(parts) == 3 and parts[0] == "ping":
            line["latency_ms"] = time.time() * 1000 - float(parts[2])
        first = event.event_id not in state["received"]
        if first:
            state["received"].append(event.event_id)
        if event.body.startswith("offline:") and syncs == 1:
            state["offline_catchup"] = True
        save_state(state)
        say(**line)
        # Echoed once: a bot restarted before it saved its sync token gets
        # the last batch again.
        if first and parts and parts[0] != "ping" and not event.body.startswith("echo:"):
            await send(room.room_id, "echo: " + event.body)

    async def on_undecrypted(room, event):
        say(event="undecrypted", room=room.room_id, event_id=event.event_id, sync=syncs)

    async def send(room_id, body):
        start = time.time()
        resp = await client.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": body})
        took_ms = (time.time() - start) * 1000
        if isinstance(resp, RoomSendResponse):
            state["sent"] += 1
            save_state(state)
            say(event="sent", room=room_id, event_id=resp.event_id, body=body, took_ms=took_ms)
        else:
            say(event="error", what="send", error=str(resp))

    async def on_sync(resp):
        state["next_batch"] = resp.next_batch
        save_state(state)

    client.add_event_callback(on_invite, InviteMemberEvent)
    client.add_event_callback(on_message, RoomMessageText)
    client.add_event_callback(on_undecrypted, (UnknownEncryptedEvent, MegolmEvent))
    client.add_response_callback(on_sync, SyncResponse)

    async def commands():
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return
            words = line.split()
            if not words:
                continue
            if words[0] == "send":
                await send(words[1], " ".join(words[2:]))
            elif words[0] == "bench":
                # Messages one after the other, each carrying the time it
                # was sent, for the receiver to measure how long it took.
                for i in range(int(words[2])):
                    await send(words[1], "ping %d %d" % (i, time.time() * 1000))
                say(event="bench_done")
            elif words[0] == "leave":
                resp = await client.room_leave(words[1])
                say(event="left" if isinstance(resp, RoomLeaveResponse) else "error", room=words[1], error=str(resp))
            elif words[0] == "report":
                say(event="report", line="csapi: sdk=matrix-nio version=%s rooms=%d sent=%d received=%d/%s "
                    "offline_catchup=%s plaintext_on_homeserver=%s" % (
                        version("matrix-nio"), len(state["rooms"]), state["sent"], len(state["received"]), words[1],
                        "yes" if state["offline_catchup"] else "no", words[2]))
            elif words[0] == "quit":
                return

    if state["next_batch"]:
        client.next_batch = state["next_batch"]
    loop_task = asyncio.create_task(client.sync_forever(timeout=30000))

    def sync_ended(task):
        if not task.cancelled() and task.exception() is not None:
            say(event="error", what="sync_forever", error=repr(task.exception()))
    loop_task.add_done_callback(sync_ended)
    say(event="ready", user=USER, sdk="matrix-nio", version=version("matrix-nio"))
    await commands()
    loop_task.cancel()
    await client.close()
    say(event="stopped")


asyncio.run(main())
