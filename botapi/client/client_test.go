package client

import (
	"errors"
	"testing"
	"time"
)

func TestVerifyWebhook(t *testing.T) {
	// The vector of botapi's TestSignature.
	const header = "t=1700000000,v1="
	body := []byte(`{"a":1}`)
	now := time.Unix(1700000010, 0)
	good := header + vector
	if err := VerifyWebhook("whsec_test", good, body, time.Minute, now); err != nil {
		t.Fatalf("good delivery refused: %v", err)
	}
	if err := VerifyWebhook("whsec_test", good, []byte(`{"a":2}`), time.Minute, now); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("tampered body: %v", err)
	}
	if err := VerifyWebhook("whsec_other", good, body, time.Minute, now); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("wrong secret: %v", err)
	}
	if err := VerifyWebhook("whsec_test", good, body, time.Minute, now.Add(time.Hour)); !errors.Is(err, ErrTooOld) {
		t.Fatalf("old delivery: %v", err)
	}
	for _, bad := range []string{"", "t=1", "v1=00", "t=x,v1=" + vector, "t=1700000000,v1=zz", "garbage"} {
		if err := VerifyWebhook("whsec_test", bad, body, time.Minute, now); err == nil {
			t.Errorf("header %q accepted", bad)
		}
	}
}

func FuzzVerifyWebhook(f *testing.F) {
	f.Add("t=1700000000,v1="+vector, []byte(`{"a":1}`))
	f.Add("t=,v1=", []byte{})
	f.Fuzz(func(t *testing.T, header string, body []byte) {
		err := VerifyWebhook("whsec_test", header, body, time.Minute, time.Unix(1700000010, 0))
		if err == nil && string(body) != `{"a":1}` {
			// Only the one signed body verifies (bar HMAC collisions).
			t.Fatalf("accepted %q %q", header, body)
		}
	})
}

// vector is hmac.new(b"whsec_test", b'1700000000.{"a":1}', hashlib.sha256).hexdigest().
const vector = "38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789"
