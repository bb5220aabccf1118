// A matrix-bot-sdk bot written as any would be: MatrixClient without a
// crypto store (its encryption off), its ordinary sync loop (start) with
// a SimpleFsStorageProvider for the sync token, and AutojoinRoomsMixin.
// It knows nothing of MLS: its homeserver URL is the service's
// client-server façade.
//
// The test drives it through stdin (create, send, bench, leave, quit,
// report) and reads what it saw from stdout, one JSON object a line. It
// keeps its counts in BOT_STATE, so that a restarted bot resumes.
//
// Environment: MATRIX_HOMESERVER, MATRIX_ACCESS_TOKEN, BOT_STATE.
const fs = require("fs");
const readline = require("readline");
const { MatrixClient, SimpleFsStorageProvider, AutojoinRoomsMixin, LogService, LogLevel } = require("matrix-bot-sdk");
const sdkVersion = require("matrix-bot-sdk/package.json").version;

LogService.setLevel(LogLevel.WARN);
const statePath = process.env.BOT_STATE;
const say = (fields) => process.stdout.write(JSON.stringify(fields) + "\n");

let state = { sent: 0, received: [], rooms: [], offline_catchup: false };
if (fs.existsSync(statePath)) {
    state = JSON.parse(fs.readFileSync(statePath, "utf8"));
}
const save = () => {
    fs.writeFileSync(statePath + ".tmp", JSON.stringify(state));
    fs.renameSync(statePath + ".tmp", statePath);
};

const client = new MatrixClient(process.env.MATRIX_HOMESERVER, process.env.MATRIX_ACCESS_TOKEN,
    new SimpleFsStorageProvider(statePath + ".sdk.json"));
AutojoinRoomsMixin.setupOnClient(client);

// Which sync of this process an event came in (for "the offline message
// arrives on the next /sync").
let syncs = 0;
const doSync = client.doSync.bind(client);
client.doSync = async (token) => {
    const res = await doSync(token);
    syncs++;
    return res;
};

async function main() {
    const me = await client.getUserId();
    client.on("room.join", (roomId) => {
        if (!state.rooms.includes(roomId)) {
            state.rooms.push(roomId);
            save();
        }
        say({ event: "joined", room: roomId });
    });
    client.on("room.event", (roomId, ev) => {
        if (ev.type === "m.room.member") {
            say({ event: "member", room: roomId, user: ev.state_key, membership: ev.content?.membership });
        } else if (ev.type === "m.room.encrypted") {
            say({ event: "undecrypted", room: roomId, event_id: ev.event_id, sync: syncs });
        }
    });
    client.on("room.message", (roomId, ev) => {
        if (ev.sender === me) {
            say({ event: "own", room: roomId, event_id: ev.event_id, sync: syncs });
            return;
        }
        if (!ev.content || typeof ev.content.body !== "string") {
            return;
        }
        const body = ev.content.body;
        const mls = (ev.unsigned || {})["org.mls-appservice.mls"] || {};
        if (!state.received.includes(ev.event_id)) {
            state.received.push(ev.event_id);
        }
        if (body.startsWith("offline:") && syncs === 1) {
            state.offline_catchup = true;
        }
        save();
        const line = { event: "message", room: roomId, sender: ev.sender, event_id: ev.event_id, body, sync: syncs, decrypted: !!mls.decrypted };
        const parts = body.split(" ");
        if (parts.length === 3 && parts[0] === "ping") {
            line.latency_ms = Date.now() - Number(parts[2]);
        }
        say(line);
    });

    const send = async (roomId, body) => {
        try {
            const start = Date.now();
            const eventId = await client.sendText(roomId, body);
            const tookMs = Date.now() - start;
            state.sent++;
            save();
            say({ event: "sent", room: roomId, event_id: eventId, body, took_ms: tookMs });
        } catch (e) {
            say({ event: "error", what: "send", error: String(e && (e.body ? JSON.stringify(e.body) : e)) });
        }
    };

    await client.start();
    say({ event: "ready", user: me, sdk: "matrix-bot-sdk", version: sdkVersion });

    const rl = readline.createInterface({ input: process.stdin });
    for await (const line of rl) {
        const words = line.trim().split(/\s+/);
        try {
            switch (words[0]) {
                case "create": {
                    const roomId = await client.createRoom({ preset: "private_chat", name: "csapi", invite: [words[1]] });
                    say({ event: "created", room: roomId });
                    break;
                }
                case "send":
                    await send(words[1], words.slice(2).join(" "));
                    break;
                case "bench":
                    // Messages one after the other, each carrying the time it
                    // was sent, for the receiver to measure how long it took.
                    for (let i = 0; i < Number(words[2]); i++) {
                        await send(words[1], `ping ${i} ${Date.now()}`);
                    }
                    say({ event: "bench_done" });
                    break;
                case "leave":
                    await client.leaveRoom(words[1]);
                    say({ event: "left", room: words[1] });
                    break;
                case "report":
                    say({ event: "report", line: `csapi: sdk=matrix-bot-sdk version=${sdkVersion} rooms=${state.rooms.length} ` +
                        `sent=${state.sent} received=${state.received.length}/${words[1]} ` +
                        `offline_catchup=${state.offline_catchup ? "yes" : "no"} plaintext_on_homeserver=${words[2]}` });
                    break;
                case "quit":
                    client.stop();
                    say({ event: "stopped" });
                    process.exit(0);
            }
        } catch (e) {
            say({ event: "error", what: words[0], error: String(e && (e.body ? JSON.stringify(e.body) : e)) });
        }
    }
    client.stop();
    process.exit(0);
}

main().catch((e) => {
    say({ event: "error", what: "start", error: String(e && (e.body ? JSON.stringify(e.body) : e)) });
    process.exit(1);
});
