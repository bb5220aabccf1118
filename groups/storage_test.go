package groups

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/epochs"
	"github.com/mls-appservice/mls-appservice/inbound"
	"github.com/mls-appservice/mls-appservice/seal"
)

// storedRow is one sealed part of a room's state as PostgreSQL holds it.
type storedRow struct {
	name    string
	purpose seal.Purpose
	binding seal.Binding
	sealed  []byte
}

func (h *harness) storedRows(room id.RoomID) []storedRow {
	h.t.Helper()
	var out []storedRow
	rows, err := h.db.Query(h.ctx, `SELECT epoch_id, static, init, secrets FROM dmls_epoch WHERE room_id = $1`, room)
	if err != nil {
		h.t.Fatal(err)
	}
	var eid, static, init, secrets []byte
	if _, err := pgx.ForEachRow(rows, []any{&eid, &static, &init, &secrets}, func() error {
		e := epochs.ID(eid)
		out = append(out, storedRow{"static " + e.String(), purposeEpochStatic, epochRow(room, e, "static"), static},
			storedRow{"init " + e.String(), purposeEpochInit, epochRow(room, e, "init"), init},
			storedRow{"secrets " + e.String(), purposeEpochSecrets, epochRow(room, e, "secrets"), secrets})
		return nil
	}); err != nil {
		h.t.Fatal(err)
	}
	rows, err = h.db.Query(h.ctx, `SELECT epoch_id, user_id, device_id, private FROM `+privatePartRows+` p WHERE room_id = $1`, room)
	if err != nil {
		h.t.Fatal(err)
	}
	var d epochs.Device
	var private []byte
	if _, err := pgx.ForEachRow(rows, []any{&eid, &d.UserID, &d.DeviceID, &private}, func() error {
		out = append(out, storedRow{"private " + d.String(), purposeEpochPrivate, privateRow(room, epochs.ID(eid), d), private})
		return nil
	}); err != nil {
		h.t.Fatal(err)
	}
	return out
}

// privatePartRows is dmls_epoch_private with a row per private part, as
// the tests read it.
const privatePartRows = `(SELECT room_id, epoch_id, u.user_id, u.device_id, u.private
	FROM dmls_epoch_private, unnest(user_ids, device_ids, privates) AS u(user_id, device_id, private))`

// count runs a count(*) query.
func (h *harness) count(sql string, args ...any) int {
	h.t.Helper()
	var n int
	if err := h.db.QueryRow(h.ctx, sql, args...).Scan(&n); err != nil {
		h.t.Fatal(err)
	}
	return n
}

func (h *harness) loadRoom(room id.RoomID) *room {
	h.t.Helper()
	r, err := h.s.loadRoom(h.ctx, h.db, room)
	if err != nil || r == nil {
		h.t.Fatalf("load %s: %v (%v)", room, r, err)
	}
	return r
}

func sortedDevices(ds []epochs.Device) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.String()
	}
	slices.Sort(out)
	return out
}

// TestRoomStateStored: after our devices join a remote user's room, the
// room's state in PostgreSQL is the graph, one shared state per epoch and
// one private part per (epoch, our device), all sealed; loading it gives
// back the group the remote device holds.
func TestRoomStateStored(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	alice := h.puppet("alice", "ALICE1", "ALICE2")
	carol := h.puppet("carol", "CAROL1")
	ours := []epochs.Device{{UserID: string(alice), DeviceID: "ALICE1"}, {UserID: string(alice), DeviceID: "ALICE2"},
		{UserID: string(carol), DeviceID: "CAROL1"}}
	bob := h.newRemoteRoom("bob")
	epoch := bob.joinOurs(ours...)
	if got := counter(h.metrics.WelcomesJoined); got != 3 {
		t.Fatalf("%v Welcomes joined, want 3", got)
	}

	// The layout: one shared state for the epoch, one private part per
	// device of ours.
	if n := h.count(`SELECT count(*) FROM dmls_epoch WHERE room_id = $1`, bob.room); n != 1 {
		t.Errorf("%d shared epoch rows, want 1", n)
	}
	var stored []string
	rows, _ := h.db.Query(h.ctx, `SELECT user_id || '|' || device_id FROM `+privatePartRows+` p WHERE room_id = $1 AND epoch_id = $2
		ORDER BY 1`, bob.room, []byte(epoch))
	stored, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if want := sortedDevices(ours); !slices.Equal(stored, want) {
		t.Errorf("private parts of %v, want %v", stored, want)
	}

	// Round trip: the loaded room holds the remote's epoch, with our
	// devices as holders and the same authenticator as the remote.
	r := h.loadRoom(bob.room)
	if r.state != "active" {
		t.Errorf("room state %q", r.state)
	}
	base, holders, err := r.base()
	if err != nil || base != epoch {
		t.Fatalf("base %v (%v), want %v", base, err, epoch)
	}
	if got, want := sortedDevices(holders), sortedDevices(ours); !slices.Equal(got, want) {
		t.Errorf("holders %v, want %v", got, want)
	}
	pub, err := r.m.Public(base)
	if err != nil {
		t.Fatal(err)
	}
	remotePub, err := bob.m.Public(epoch)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pub.EpochAuthenticator(), remotePub.EpochAuthenticator()) || pub.Epoch() != remotePub.Epoch() {
		t.Errorf("loaded epoch %d differs from the remote's %d", pub.Epoch(), remotePub.Epoch())
	}
	if got, want := sortedDevices(r.m.Devices(base)), sortedDevices(append(ours, bob.dev)); !slices.Equal(got, want) {
		t.Errorf("group devices %v, want %v", got, want)
	}
	for _, d := range ours {
		g, err := r.m.Group(base, d)
		if err != nil {
			t.Fatalf("group of %s: %v", d, err)
		}
		if !bytes.Equal(g.EpochAuthenticator(), remotePub.EpochAuthenticator()) {
			t.Errorf("%s: authenticator differs", d)
		}
	}
	if n, ok := r.node(epoch); !ok || n.Creator != bob.dev || n.Number != 1 {
		t.Errorf("graph node %+v", n)
	}

	// Sealed: each stored part opens under its own binding only; no
	// 16-byte run of what it seals appears in any sealed part; the
	// unsealed graph metadata holds none of the secret parts (init
	// secret, secret tree, private keys) beyond the public epoch id that
	// heads them; and our devices' signature keys are nowhere.
	parts := h.storedRows(bob.room)
	if len(parts) != 3+len(ours) {
		t.Fatalf("%d stored parts, want %d", len(parts), 3+len(ours))
	}
	var sealed bytes.Buffer
	var graph []byte
	if err := h.db.QueryRow(h.ctx, `SELECT graph FROM dmls_room WHERE room_id = $1`, bob.room).Scan(&graph); err != nil {
		t.Fatal(err)
	}
	for _, p := range parts {
		sealed.Write(p.sealed)
	}
	const run = 16
	for _, p := range parts {
		plain, err := h.sealer.Open(p.purpose, p.binding, p.sealed)
		if err != nil {
			t.Fatalf("%s does not open: %v", p.name, err)
		}
		if len(plain) < 64 {
			t.Fatalf("%s holds %d bytes", p.name, len(plain))
		}
		for _, other := range parts {
			if other.name != p.name && other.purpose == p.purpose {
				if _, err := h.sealer.Open(p.purpose, other.binding, p.sealed); err == nil {
					t.Errorf("%s opens under the binding of %s", p.name, other.name)
				}
			}
		}
		for i := 0; i+run <= len(plain); i += 4 {
			if bytes.Contains(sealed.Bytes(), plain[i:i+run]) {
				t.Errorf("%s: plaintext bytes %d..%d are in a sealed part in the clear", p.name, i, i+run)
				break
			}
		}
		if p.purpose == purposeEpochStatic {
			continue // the public tree and context: public by nature
		}
		for i := 4 + len(epoch); i+run <= len(plain); i += 4 {
			if bytes.Contains(graph, plain[i:i+run]) {
				t.Errorf("%s: plaintext bytes %d..%d are in the graph metadata", p.name, i, i+run)
				break
			}
		}
	}
	for _, d := range ours {
		sig, err := h.keys.SignatureKey(h.ctx, h.db, toKeys(d))
		if err != nil {
			t.Fatal(err)
		}
		secret := sig.Bytes()
		if bytes.Contains(graph, secret[:run]) || bytes.Contains(sealed.Bytes(), secret[:run]) {
			t.Errorf("the signature key of %s is stored in the clear", d)
		}
		// ... while its private part does hold it, sealed: the check
		// above looks for something that is there.
		for _, p := range parts {
			if p.name == "private "+d.String() {
				plain, _ := h.sealer.Open(p.purpose, p.binding, p.sealed)
				if !bytes.Contains(plain, secret[:run]) {
					t.Errorf("the private part of %s does not hold its signature key", d)
				}
			}
		}
	}
	// The graph's metadata is not sealed: it must not hold what the
	// sealed parts protect (checked above), and must load alone.
	if _, err := epochs.LoadMember(graph, h.s.groupConfig(), func(epochs.ID) (*epochs.StoredEpoch, error) {
		return nil, errLazy
	}); err != nil {
		t.Errorf("graph metadata does not load without the epoch states: %v", err)
	}
}

var errLazy = errorString("epoch state read")

type errorString string

func (e errorString) Error() string { return string(e) }

// TestRetentionPrunesDroppedEpochs: every commit the remote makes drops
// the epoch before (bob committed above it, and our devices, which only
// listen, hold his epoch: every member moved on), and every row kept
// about it (shared state, private parts) goes with it; the room still
// works. (MaxEpochs 2 would keep two.)
func TestRetentionPrunesDroppedEpochs(t *testing.T) {
	h := newHarness(t, harnessOptions{Policy: epochs.Policy{MaxEpochs: 2}})
	alice := h.puppet("alice", "ALICE1", "ALICE2")
	ours := []epochs.Device{{UserID: string(alice), DeviceID: "ALICE1"}, {UserID: string(alice), DeviceID: "ALICE2"}}
	bob := h.newRemoteRoom("bob")
	first := bob.joinOurs(ours...)
	room := view(append([]epochs.Device{bob.dev}, ours...)...)
	made := []epochs.ID{first}
	for i := range 5 {
		out, ev, _, _ := bob.commit(room, nil)
		h.send([]json.RawMessage{ev}, nil)
		made = append(made, out.Commit.Epoch)
		if got := counter(h.metrics.CommitsApplied); got != float64(i+1) {
			t.Fatalf("after commit %d: %v applied", i+1, got)
		}
		n := h.count(`SELECT count(*) FROM dmls_epoch WHERE room_id = $1`, bob.room)
		if n != 1 {
			t.Errorf("after commit %d: %d epochs stored, want the newest only", i+1, n)
		}
		devs := h.count(`SELECT count(*) FROM `+privatePartRows+` p WHERE room_id = $1`, bob.room)
		if devs != n*len(ours) {
			t.Errorf("after commit %d: %d private parts for %d epochs and %d devices", i+1, devs, n, len(ours))
		}
	}
	// The older epochs are gone, the newest is kept.
	for i, e := range made {
		n := h.count(`SELECT count(*) FROM dmls_epoch WHERE room_id = $1 AND epoch_id = $2`, bob.room, []byte(e))
		p := h.count(`SELECT count(*) FROM `+privatePartRows+` p WHERE room_id = $1 AND epoch_id = $2`, bob.room, []byte(e))
		keep := i == len(made)-1
		if (n == 1) != keep || (p > 0) != keep {
			t.Errorf("epoch %d: %d shared rows, %d private rows; kept %v", i+1, n, p, keep)
		}
	}
	// Still working: a message in the newest epoch is delivered.
	msg, eid := bob.message("m.room.message", map[string]string{"body": "after pruning"})
	h.send([]json.RawMessage{msg}, nil)
	d, err := h.s.Delivery(h.ctx, alice, eid)
	if err != nil || d == nil || d.Kind != KindMessage {
		t.Fatalf("message after pruning: %+v, %v", d, err)
	}
}

// TestRoomStateThatDoesNotOpen: a room whose stored epochs no longer open
// (a byte of a row damaged, or the rows sealed under a key the service
// was not given) stops that room's items alone, a message's as a
// commit's: each is parked with a reason naming the room and why, and is
// neither refused nor delivered as undecryptable. Our puppet's other room
// goes on, and once the state opens again the parked item, retried,
// applies: nothing was lost.
func TestRoomStateThatDoesNotOpen(t *testing.T) {
	damages := []struct {
		name   string
		damage func(h *harness, room id.RoomID)
		reason string
	}{
		{"damaged", func(h *harness, room id.RoomID) {
			h.exec(`UPDATE dmls_epoch SET secrets = set_byte(secrets, length(secrets) - 1,
				get_byte(secrets, length(secrets) - 1) # 1) WHERE room_id = $1`, room)
		}, "authentication failed"},
		{"unknown key", func(h *harness, room id.RoomID) {
			other := newSealer(h.t)
			for _, r := range h.storedRows(room) {
				if r.purpose != purposeEpochSecrets {
					continue
				}
				plain, err := h.sealer.Open(r.purpose, r.binding, r.sealed)
				if err != nil {
					h.t.Fatal(err)
				}
				resealed, err := other.Seal(r.purpose, r.binding, plain)
				if err != nil {
					h.t.Fatal(err)
				}
				h.exec(`UPDATE dmls_epoch SET secrets = $2 WHERE room_id = $1 AND secrets = $3`, room, resealed, r.sealed)
			}
		}, "sealed under a key not configured"},
	}
	// A probe is an event of bob's that needs the room's state, and a
	// check that it took effect.
	probes := []struct {
		name string
		make func(bob *remote, ours epochs.Device) (json.RawMessage, func(h *harness) bool)
	}{
		{"message", func(bob *remote, ours epochs.Device) (json.RawMessage, func(h *harness) bool) {
			msg, eid := bob.message("m.room.message", map[string]string{"body": "kept"})
			return msg, func(h *harness) bool {
				d, err := h.s.Delivery(h.ctx, id.UserID(ours.UserID), eid)
				return err == nil && d != nil && d.Kind == KindMessage
			}
		}},
		{"commit", func(bob *remote, ours epochs.Device) (json.RawMessage, func(h *harness) bool) {
			out, ev, _, _ := bob.commit(view(bob.dev, ours), nil)
			return ev, func(h *harness) bool {
				heads := h.loadRoom(bob.room).m.Graph().Heads()
				return len(heads) == 1 && heads[0] == out.Commit.Epoch
			}
		}},
	}
	for _, dc := range damages {
		for _, pc := range probes {
			t.Run(dc.name+"/"+pc.name, func(t *testing.T) {
				h, bob, alice, dev := badInputRoom(t)
				carol := h.newRemoteRoom("carol")
				carol.joinOurs(dev)
				before := map[string][]byte{}
				var eid, secrets []byte
				rows, err := h.db.Query(h.ctx, `SELECT epoch_id, secrets FROM dmls_epoch WHERE room_id = $1`, bob.room)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := pgx.ForEachRow(rows, []any{&eid, &secrets}, func() error {
					before[string(eid)] = bytes.Clone(secrets)
					return nil
				}); err != nil || len(before) == 0 {
					t.Fatalf("room's epochs: %d read (%v)", len(before), err)
				}
				dc.damage(h, bob.room)
				// A restarted service: nothing of the room is held in
				// memory.
				h = h.restart(harnessOptions{})

				failed := counter(h.spine.ItemsFailed.WithLabelValues(inbound.KindRoomEvent))
				rejected := counter(h.metrics.CommitsRejected.WithLabelValues("invalid"))
				undecryptable := h.count(`SELECT count(*) FROM delivery WHERE kind = 'undecryptable'`)
				ev, applied := pc.make(bob, dev)
				h.save([]json.RawMessage{ev}, nil)
				parked := h.drainParking()
				if len(parked) != 1 || parked[0].Queue != inbound.RoomQueue(bob.room) {
					t.Fatalf("parked %+v, want bob's %s alone", parked, pc.name)
				}
				for _, want := range []string{string(bob.room), "does not open", dc.reason} {
					if !strings.Contains(parked[0].LastError, want) {
						t.Errorf("parked item's reason %q does not say %q", parked[0].LastError, want)
					}
				}
				if got := counter(h.spine.ItemsFailed.WithLabelValues(inbound.KindRoomEvent)) - failed; got != 1 {
					t.Errorf("failures counted: %v, want 1", got)
				}
				if applied(h) {
					t.Errorf("bob's %s took effect on a state that does not open", pc.name)
				}
				if counter(h.metrics.CommitsRejected.WithLabelValues("invalid")) != rejected ||
					h.count(`SELECT count(*) FROM delivery WHERE kind = 'undecryptable'`) != undecryptable {
					t.Errorf("bob's %s was refused for our storage's fault", pc.name)
				}

				// Carol's room goes on (the parked item stays parked).
				msg, said := carol.message("m.room.message", map[string]string{"body": "still here"})
				h.save([]json.RawMessage{msg}, nil)
				if again := h.drainParking(); len(again) != 1 || again[0].Seq != parked[0].Seq {
					t.Fatalf("parked after carol's message: %+v", again)
				}
				if d, err := h.s.Delivery(h.ctx, alice, said); err != nil || d == nil || d.Kind != KindMessage {
					t.Errorf("carol's room does not go on: her message was delivered as %+v (%v)", d, err)
				}

				// The state opens again (the key given back, the row
				// restored) and the operator retries the parked item
				// (`queue retry`).
				for e, b := range before {
					h.exec(`UPDATE dmls_epoch SET secrets = $3 WHERE room_id = $1 AND epoch_id = $2`, bob.room, []byte(e), b)
				}
				if _, err := database.RetryParked(h.ctx, h.db, parked[0].Seq); err != nil {
					t.Fatal(err)
				}
				h.drain()
				if !applied(h) {
					t.Errorf("bob's %s did not take effect when retried", pc.name)
				}
			})
		}
	}
}

func (h *harness) exec(sql string, args ...any) {
	h.t.Helper()
	if _, err := h.db.Exec(h.ctx, sql, args...); err != nil {
		h.t.Fatal(err)
	}
}
