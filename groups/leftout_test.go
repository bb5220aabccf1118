package groups

import (
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/inbound"
	"github.com/mls-appservice/mls-appservice/keys"
)

// TestLeftOutDeviceReturns checks the records of devices left out of a
// room for want of a usable KeyPackage: one the homeserver had none for is
// claimed again after leftOutRetry, then after twice that (an upload of
// KeyPackages changes no device list); one refused for another reason
// stays out; a device-list change of the user clears both (it cleared
// only the user's own record before, so a device once refused stayed out
// of the room for good).
func TestLeftOutDeviceReturns(t *testing.T) {
	h := newHarness(t, harnessOptions{Quiet: true})
	room := id.RoomID("!leftout:" + remoteDomain)
	const (
		bob1, bob2, carol1 = "@bob:" + remoteDomain + "|BOB1", "@bob:" + remoteDomain + "|BOB2", "@carol:" + remoteDomain + "|C1"
	)
	inTx := func(f func(tx pgx.Tx) error) {
		t.Helper()
		if err := h.db.InTx(h.ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	leaveOut := func(dev string, r keys.Reason) {
		h.inWork(func(w *inbound.Work) error { return h.s.leftOut(h.ctx, w, room, dev, leftOutReason(r)) })
	}
	excluded := func() ([]string, time.Time) {
		t.Helper()
		out, retry, err := h.s.leftOutDevices(h.ctx, h.db, room)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(out)
		return out, retry
	}

	start := h.s.now()
	leaveOut(bob1, keys.ReasonNoKeyPackage)
	leaveOut(bob2, "bad_signature")
	leaveOut(carol1, keys.ReasonNoKeyPackage)
	got, retry := excluded()
	if want := []string{bob1, bob2, carol1}; !slices.Equal(got, want) {
		t.Fatalf("left out %v, want %v", got, want)
	}
	if d := retry.Sub(start); d < leftOutRetry || d > leftOutRetry+5*time.Second {
		t.Errorf("retry due %v after the refusals, want %v", d, leftOutRetry)
	}

	h.advance(leftOutRetry + time.Second)
	got, retry = excluded()
	if want := []string{bob2}; !slices.Equal(got, want) || !retry.IsZero() {
		t.Fatalf("after %v left out %v (retry %v), want %v and no retry", leftOutRetry, got, retry, want)
	}
	// Refused again: out for twice as long, and not counted again.
	again := h.s.now()
	leaveOut(bob1, keys.ReasonNoKeyPackage)
	if got, retry = excluded(); !slices.Equal(got, []string{bob1, bob2}) {
		t.Fatalf("after a second refusal left out %v, want %v", got, []string{bob1, bob2})
	}
	if d := retry.Sub(again); d < 2*leftOutRetry || d > 2*leftOutRetry+5*time.Second {
		t.Errorf("after a second refusal retry due in %v, want %v", d, 2*leftOutRetry)
	}
	if n := counter(h.metrics.LeftOut); n != 3 {
		t.Errorf("left out counted %v times, want 3 (once per device)", n)
	}

	inTx(func(tx pgx.Tx) error {
		out := database.NewProducer(tx)
		if err := h.s.devicesChanged(h.ctx, tx, out, "@bob:"+remoteDomain); err != nil {
			return err
		}
		return out.Flush(h.ctx)
	})
	var left []string
	rows, err := h.db.Query(h.ctx, `SELECT user_id FROM dmls_left_out WHERE room_id = $1 ORDER BY 1`, room)
	if err == nil {
		left, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{carol1}; !slices.Equal(left, want) {
		t.Errorf("after bob's device-list change the records are %v, want %v", left, want)
	}
}
