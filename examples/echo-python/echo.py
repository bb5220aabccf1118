#!/usr/bin/env python3
"""An example bot of the mls-appservice bot API, standard library only.

It makes one puppet, accepts the rooms it is invited to, prints every
message its puppet receives, and answers each one that is not itself an
echo with "echo: <body>".

    MLS_BOTAPI_URL=http://localhost:29341 MLS_BOT_TOKEN=mlsbot_... python3 echo.py --name echo-py
"""
import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

BASE = os.environ.get("MLS_BOTAPI_URL", "http://localhost:29341").rstrip("/")
TOKEN = os.environ["MLS_BOT_TOKEN"]


class APIError(Exception):
    def __init__(self, status, body):
        self.status = status
        self.code = body.get("code", "")
        self.field = body.get("field", "")
        super().__init__(f"{status} {self.code}: {body.get('message', '')} (field {self.field})")


def call(method, path, body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method)
    req.add_header("Authorization", "Bearer " + TOKEN)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            raw = resp.read()
            return json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        try:
            err = json.loads(e.read())
        except ValueError:
            err = {"code": "http_error"}
        raise APIError(e.code, err) from None


def q(s):
    return urllib.parse.quote(s, safe="")


def events(last_id, puppet):
    """Yields the puppet's events for ever, reconnecting with Last-Event-ID."""
    delay = 0.5
    while True:
        req = urllib.request.Request(BASE + "/v1/events?puppet=" + q(puppet))
        req.add_header("Authorization", "Bearer " + TOKEN)
        req.add_header("Accept", "text/event-stream")
        if last_id:
            req.add_header("Last-Event-ID", last_id)
        try:
            with urllib.request.urlopen(req) as resp:
                delay = 0.5
                data = []
                for raw in resp:
                    line = raw.decode().rstrip("\r\n")
                    if line.startswith(":"):
                        continue  # keepalive
                    if line == "":
                        if data:
                            ev = json.loads("\n".join(data))
                            data = []
                            last_id = ev["id"]
                            yield ev
                        continue
                    field, _, value = line.partition(":")
                    if field == "data":
                        data.append(value[1:] if value.startswith(" ") else value)
        except (urllib.error.URLError, ConnectionError, OSError) as e:
            print(f"stream broke ({e}); reconnecting after {last_id}", file=sys.stderr, flush=True)
        time.sleep(delay)
        delay = min(delay * 2, 10)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", default="echo-py")
    args = ap.parse_args()
    me = call("POST", "/v1/puppets", {"name": args.name, "display_name": "Echo (Python)"})["user_id"]
    print("puppet: " + me, flush=True)
    # "0": the whole log, so nothing delivered before the stream opened is
    # missed. A real bot stores the last id it handled and starts there.
    for ev in events("0", me):
        if ev["kind"] == "membership" and ev["type"] == "m.room.member":
            if ev["content"].get("membership") == "invite" and ev["sender"] != me:
                try:
                    call("POST", f"/v1/puppets/{q(me)}/rooms/{q(ev['room_id'])}/join", {})
                except APIError as e:
                    print(f"join {ev['room_id']}: {e}", file=sys.stderr, flush=True)
        elif ev["kind"] == "message" and ev["type"] == "m.room.message" and ev["sender"] != me:
            body = ev["content"].get("body", "")
            print(f"message from {ev['sender']} in {ev['room_id']}: {body}", flush=True)
            if body.startswith("echo: "):
                continue
            for attempt in range(30):
                try:
                    # The event id as Idempotency-Key: a retry never echoes twice.
                    call("POST", f"/v1/puppets/{q(me)}/rooms/{q(ev['room_id'])}/messages",
                         {"type": "m.room.message", "content": {"msgtype": "m.text", "body": "echo: " + body}},
                         {"Idempotency-Key": "echo-" + ev["event_id"]})
                    break
                except APIError as e:
                    if e.code != "not_in_group":
                        raise
                    time.sleep(1)  # our device's Welcome has not arrived yet


if __name__ == "__main__":
    main()
