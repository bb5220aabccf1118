package appservice

import (
	"fmt"
	"strings"
	"testing"
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
