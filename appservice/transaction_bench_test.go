package appservice

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// BenchmarkParseTransaction parses a transaction as the load command's
// intake mode sends them: 100 encrypted room events of about 1 KiB each.
func BenchmarkParseTransaction(b *testing.B) {
	var events []string
	for i := range 100 {
		events = append(events, fmt.Sprintf(`{"type": "m.room.encrypted", "room_id": "!room%d:hs", "event_id": "$event%d",
			"sender": "@sender:hs", "origin_server_ts": 1700000000000, "content": {"algorithm": "org.matrix.dmls.v1",
			"ciphertext": %q, "dmls_epoch": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "sender_device": "DEVICE"}}`,
			i%10, i, strings.Repeat("QUJD", 240)))
	}
	body := []byte(`{"events": [` + strings.Join(events, ",") + `]}`)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := ParseTransaction(body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseKeyCounts parses a transaction that carries the key
// counts of 10,000 devices (100 puppets of 100 devices), as Synapse sends
// with each transaction once events of those puppets are in it (MSC3202:
// the counts of every device of each user the transaction concerns). In
// the 10,000-device room parsing these was 16 % of the service's CPU.
func BenchmarkParseKeyCounts(b *testing.B) {
	body := keyCountsBody(100, 100)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		txn, err := ParseTransaction(body)
		if err != nil || len(txn.KeyCounts) != 10000 || len(txn.Problems) > 0 {
			b.Fatalf("%d key counts, problems %v, err %v", len(txn.KeyCounts), txn.Problems, err)
		}
	}
}

// keyCountsBody is a transaction with no events and the key counts of
// users puppets with devices devices each.
func keyCountsBody(users, devices int) []byte {
	var counts, fallbacks []string
	for u := range users {
		var c, f []string
		for d := range devices {
			c = append(c, fmt.Sprintf(`"DEVICE%dX%d": {"signed_curve25519": 0, "mls_key_package": %d}`, u, d, 40+d%10))
			f = append(f, fmt.Sprintf(`"DEVICE%dX%d": ["mls_key_package"]`, u, d))
		}
		counts = append(counts, fmt.Sprintf(`"@puppet%d:hs": {%s}`, u, strings.Join(c, ",")))
		fallbacks = append(fallbacks, fmt.Sprintf(`"@puppet%d:hs": {%s}`, u, strings.Join(f, ",")))
	}
	return []byte(`{"events": [], "org.matrix.msc3202.device_one_time_keys_count": {` + strings.Join(counts, ",") +
		`}, "org.matrix.msc3202.device_unused_fallback_key_types": {` + strings.Join(fallbacks, ",") + `}}`)
}

// BenchmarkCountFilter passes the key counts of 10,000 devices that it
// passed on before, unchanged, as each transaction in a room of 10,000 of
// our devices brings them: all are left out.
func BenchmarkCountFilter(b *testing.B) {
	body := keyCountsBody(100, 100)
	txn, err := ParseTransaction(body)
	if err != nil {
		b.Fatal(err)
	}
	f := newCountFilter(time.Now, time.Hour)
	f.pass(txn.KeyCounts)
	f.commit(1)
	for b.Loop() {
		if out, _ := f.pass(txn.KeyCounts); len(out) != 0 {
			b.Fatalf("%d of %d unchanged counts passed on", len(out), len(txn.KeyCounts))
		}
	}
}
