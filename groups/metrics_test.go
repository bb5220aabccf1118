package groups

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/epochs"
)

// TestCountersCountCommittedWork: a batch whose commit fails did
// nothing, and its items are applied again; the counters of what the
// service did count each message once, as it is delivered once. Both
// paths: a lone message, and a run of three.
func TestCountersCountCommittedWork(t *testing.T) {
	for _, n := range []int{1, 3} {
		t.Run(fmt.Sprintf("%d messages", n), func(t *testing.T) {
			h := newHarness(t, harnessOptions{MaxAttempts: 3})
			alice := h.puppet("alice", "ALICE1")
			bob := h.newRemoteRoom("bob")
			bob.joinOurs(epochs.Device{UserID: string(alice), DeviceID: "ALICE1"})
			decrypted := counter(h.metrics.MessagesDecrypt)
			delivered := counter(h.metrics.Delivered.WithLabelValues(string(KindMessage)))

			// A deferred trigger fails the commit of the first
			// transaction that delivers anything from now on. The count
			// is kept in a sequence, which a rollback does not undo.
			h.exec(`CREATE SEQUENCE refused_commits`)
			h.exec(`CREATE FUNCTION refuse_first_commit() RETURNS trigger LANGUAGE plpgsql AS $$
				BEGIN
					IF nextval('refused_commits') = 1 THEN
						RAISE EXCEPTION 'commit refused once by the test';
					END IF;
					RETURN NULL;
				END $$`)
			h.exec(`CREATE CONSTRAINT TRIGGER refuse_first_commit AFTER INSERT ON delivery_span
				DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_first_commit()`)

			var msgs []json.RawMessage
			var events []id.EventID
			for i := range n {
				msg, eid := bob.message("m.room.message", map[string]string{"body": fmt.Sprint("counted ", i)})
				msgs, events = append(msgs, msg), append(events, eid)
			}
			h.save(msgs, nil)
			failed := 0
			for deadline := time.Now().Add(time.Minute); ; {
				if _, err := h.splitter.Step(h.ctx); err != nil {
					t.Fatal(err)
				}
				if _, err := h.worker.Step(h.ctx); err != nil {
					failed++
				}
				if d, err := h.s.Delivery(h.ctx, alice, events[n-1]); err != nil {
					t.Fatal(err)
				} else if d != nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the messages were not delivered within a minute (%d batches failed)", failed)
				}
				time.Sleep(2 * time.Millisecond)
			}
			if failed != 1 {
				t.Fatalf("%d batches failed to commit, want the one the trigger refused", failed)
			}
			if parked := h.drainParking(); len(parked) > 0 {
				t.Fatalf("%d items parked: %s", len(parked), parked[0].LastError)
			}
			for _, eid := range events {
				if d, err := h.s.Delivery(h.ctx, alice, eid); err != nil || d == nil || d.Kind != KindMessage {
					t.Fatalf("%s delivered as %+v (%v)", eid, d, err)
				}
			}
			if got := counter(h.metrics.MessagesDecrypt) - decrypted; got != float64(n) {
				t.Errorf("messages decrypted counted %v times, want %d", got, n)
			}
			if got := counter(h.metrics.Delivered.WithLabelValues(string(KindMessage))) - delivered; got != float64(n) {
				t.Errorf("message deliveries counted %v times, want %d", got, n)
			}
		})
	}
}
