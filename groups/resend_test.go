package groups

import (
	"encoding/json"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/mls-appservice/mls-appservice/epochs"
	"github.com/mls-appservice/mls-appservice/inbound"
	"github.com/mls-appservice/mls-appservice/mls/message"
)

// TestResendAfterWithdraw: a message of ours sent in an epoch that is
// then withdrawn (its commit refused by the room, epochs.Member.Withdraw)
// reached no one else. Its echo is delivered to our puppets as usual and
// the message is sent again in the base epoch, where the others read it;
// the copy's echo is not delivered to our puppets a second time.
func TestResendAfterWithdraw(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	alice := h.puppet("alice", "ALICE1")
	ours := epochs.Device{UserID: string(alice), DeviceID: "ALICE1"}
	bob := h.newRemoteRoom("bob")
	// cat, a remote member who never sends, keeps the base retained to
	// go back to. (The test withdraws bob's commit, standing in for one
	// of ours: with only bob and alice, bob's commit and alice's message
	// in its epoch would have every member move on from the base, and
	// retention drop it.)
	cat, catKP := bob.remoteMember("cat")
	bob.joinOurs(ours)
	out, commit, _, _ := bob.commit(view(bob.dev, ours, cat), map[epochs.Device]*message.KeyPackage{cat: catKP})
	h.send([]json.RawMessage{commit}, nil)
	base := out.Commit.Epoch

	// bob commits; we apply it, and alice sends in its epoch.
	out, commit, _, _ = bob.commit(view(bob.dev, ours, cat), nil)
	h.send([]json.RawMessage{commit}, nil)
	res, err := h.sendAs(alice, bob.room, "in the epoch to withdraw", "")
	if err != nil {
		t.Fatal(err)
	}
	original := h.outgoing(res.TxnID)
	e, err := ParseEncrypted(original)
	if err != nil || e.Epoch != out.Commit.Epoch {
		t.Fatalf("sent in %v (%v), want bob's new epoch %v", e.Epoch, err, out.Commit.Epoch)
	}

	// The epoch is withdrawn, as checkOwnCommit does when the room's
	// graph refuses the commit that made it.
	err = h.db.InTx(h.ctx, func(tx pgx.Tx) error {
		r, err := h.s.loadRoom(h.ctx, tx, bob.room)
		if err != nil {
			return err
		}
		if _, err := r.m.Withdraw(out.Commit.Epoch); err != nil {
			return err
		}
		return h.s.saveRoom(h.ctx, &inbound.Work{Q: tx}, r)
	})
	if err != nil {
		t.Fatal(err)
	}

	sentBefore := h.count(`SELECT count(*) FROM outbox WHERE kind = 'room_event' AND room_id = $1`, bob.room)
	echo, eid := h.event(bob.room, string(alice), EncryptedType, nil, original)
	h.send([]json.RawMessage{echo}, nil)
	if d, err := h.s.Delivery(h.ctx, alice, eid); err != nil || d == nil || d.Kind != KindMessage {
		t.Fatalf("the original's echo delivered as %+v (%v)", d, err)
	}
	if got := counter(h.metrics.MessagesResent.WithLabelValues("sent")); got != 1 {
		t.Fatalf("%v messages sent again, want 1", got)
	}
	var txn string
	if err := h.db.QueryRow(h.ctx, `SELECT txn_id FROM outbox WHERE kind = 'room_event' AND room_id = $1
		ORDER BY seq DESC LIMIT 1`, bob.room).Scan(&txn); err != nil {
		t.Fatal(err)
	}
	if n := h.count(`SELECT count(*) FROM outbox WHERE kind = 'room_event' AND room_id = $1`, bob.room); n != sentBefore+1 {
		t.Fatalf("%d room events queued by the echo, want 1", n-sentBefore)
	}
	copyContent := h.outgoing(txn)
	c, err := ParseEncrypted(copyContent)
	if err != nil || c.Epoch != base {
		t.Fatalf("copy sent in %v (%v), want the base %v", c.Epoch, err, base)
	}
	// bob reads the copy in the base, as every member does.
	plain, sender, err := bob.m.Decrypt(c.Epoch, c.Ciphertext)
	if err != nil || sender != ours {
		t.Fatalf("bob reads the copy: %v (sender %v)", err, sender)
	}
	if p, err := ParsePlaintext(plain); err != nil || !jsonHas(p.Content, "in the epoch to withdraw") {
		t.Fatalf("copy's plaintext %s (%v)", plain, err)
	}
	var resendOf string
	if err := h.db.QueryRow(h.ctx, `SELECT resend_of FROM dmls_sent WHERE resend_of IS NOT NULL`).Scan(&resendOf); err != nil ||
		resendOf != string(eid) {
		t.Fatalf("copy's record names %q (%v), want %s", resendOf, err, eid)
	}

	// The copy's echo: alice has the message once.
	copyEcho, copyID := h.event(bob.room, string(alice), EncryptedType, nil, copyContent)
	h.send([]json.RawMessage{copyEcho}, nil)
	if d, _ := h.s.Delivery(h.ctx, alice, copyID); d != nil {
		t.Fatalf("the copy's echo delivered to our puppet again: %+v", d)
	}
	if got := counter(h.metrics.MessagesResent.WithLabelValues("sent")); got != 1 {
		t.Fatalf("%v messages sent again after the copy's echo, want 1", got)
	}
}

// outgoing returns the content of the outbox row txn.
func (h *harness) outgoing(txn string) json.RawMessage {
	h.t.Helper()
	var content []byte
	if err := h.db.QueryRow(h.ctx, `SELECT content FROM outbox WHERE txn_id = $1`, txn).Scan(&content); err != nil {
		h.t.Fatal(err)
	}
	return content
}

// jsonHas reports whether the JSON object raw has a "body" equal to body.
func jsonHas(raw json.RawMessage, body string) bool {
	var c struct {
		Body string `json:"body"`
	}
	return json.Unmarshal(raw, &c) == nil && c.Body == body
}
