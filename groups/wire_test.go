package groups

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/mls-appservice/mls-appservice/epochs"
	"github.com/mls-appservice/mls-appservice/keys"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// The wire parsers' tests: valid contents are made by the same structs
// the package's emitters marshal (Send's and sendCommit's wireEncrypted,
// sendCommit's wireWelcome), so that a change of one side shows here.

var (
	wireSuite   = suite.X25519AES128GCMSHA256Ed25519
	wireAlg     = keys.Algorithm(wireSuite)
	wireWelAlg  = welcomePrefix + wireAlg[len(algorithmPrefix):]
	wireAlice   = epochs.Device{UserID: "@alice:example.org", DeviceID: "ALICEDEV"}
	wireBob     = epochs.Device{UserID: "@bob:other.example", DeviceID: "BOBDEV"}
	wireEpoch0  = epochs.ID(bytes.Repeat([]byte{0x11}, 32))
	wireEpoch1  = epochs.ID(bytes.Repeat([]byte{0x22}, 32))
	wireEpoch2  = epochs.ID(bytes.Repeat([]byte{0x33}, 32))
	wireCommitN = uint64(7)
)

// wireMessage is the content Send emits for an application message.
func wireMessage() wireEncrypted {
	creator, epoch := wireAlice, wireEpoch0
	return wireEncrypted{Algorithm: wireAlg, Ciphertext: b64([]byte("ciphertext of a message")),
		EpochCreator: (*deviceJSON)(&creator), CommitEvent: "$create:example.org", Epoch: (*b64ID)(&epoch)}
}

// wireCommit is the content sendCommit emits, resolving one fork.
func wireCommit() wireEncrypted {
	w := wireMessage()
	sender, next, n := wireBob, wireEpoch1, wireCommitN
	w.Ciphertext = b64([]byte("ciphertext of a commit"))
	w.Sender, w.Next, w.NextNumber = (*deviceJSON)(&sender), (*b64ID)(&next), &n
	w.Resolves = []epochs.ResolvesPair{{Number: 6, Creator: wireAlice}}
	w.DMLSResolves = []b64ID{b64ID(wireEpoch2)}
	return w
}

// wireWelcomeContent is the content sendCommit emits for a Welcome.
func wireWelcomeContent() wireWelcome {
	sender, base, epoch, n := wireBob, wireEpoch0, wireEpoch1, wireCommitN
	return wireWelcome{Algorithm: wireWelAlg, Ciphertext: b64([]byte("an MLS Welcome")), RoomID: "!room:example.org",
		Sender: (*deviceJSON)(&sender), CommitEvent: "$commit:other.example", Base: (*b64ID)(&base), Epoch: (*b64ID)(&epoch),
		Number: &n, Resolves: []epochs.ResolvesPair{{Number: 6, Creator: wireAlice}, {Number: 6, Creator: wireBob}},
		DMLSResolves: []b64ID{b64ID(wireEpoch2)}}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// emitEncrypted encodes a parsed event again the way the package's
// emitters do.
func emitEncrypted(e *Encrypted) wireEncrypted {
	creator, epoch := e.EpochCreator, e.Epoch
	w := wireEncrypted{Algorithm: e.Algorithm, Ciphertext: b64(e.Ciphertext), EpochCreator: (*deviceJSON)(&creator),
		CommitEvent: e.CommitEvent, Epoch: (*b64ID)(&epoch)}
	if c := e.Commit; c != nil {
		sender, next, n := c.Sender, c.Next, c.NextNumber
		w.Sender, w.Next, w.NextNumber = (*deviceJSON)(&sender), (*b64ID)(&next), &n
		w.Resolves = c.Resolves
		for _, id := range c.DMLSResolv {
			w.DMLSResolves = append(w.DMLSResolves, b64ID(id))
		}
	}
	return w
}

func emitWelcome(wel *Welcome) wireWelcome {
	c := wel.Commit
	sender, base, epoch, n := c.Creator, c.Base, c.Epoch, c.Number
	w := wireWelcome{Algorithm: wel.Algorithm, Ciphertext: b64(wel.Message), RoomID: wel.RoomID, Sender: (*deviceJSON)(&sender),
		CommitEvent: c.EventID, Base: (*b64ID)(&base), Epoch: (*b64ID)(&epoch), Number: &n}
	for _, id := range c.Resolves {
		w.DMLSResolves = append(w.DMLSResolves, b64ID(id))
	}
	return w
}

func TestParseEncryptedValid(t *testing.T) {
	msg := wireMessage()
	e, err := ParseEncrypted(mustJSON(t, msg))
	if err != nil {
		t.Fatalf("message: %v", err)
	}
	if e.Commit != nil || e.Algorithm != wireAlg || e.EpochCreator != wireAlice || e.Epoch != wireEpoch0 ||
		e.CommitEvent != "$create:example.org" || string(e.Ciphertext) != "ciphertext of a message" {
		t.Fatalf("message parsed as %+v", e)
	}
	c, err := ParseEncrypted(mustJSON(t, wireCommit()))
	if err != nil {
		t.Fatalf("commit: %v", err)
	}
	want := &CommitFields{Sender: wireBob, Resolves: []epochs.ResolvesPair{{Number: 6, Creator: wireAlice}},
		DMLSResolv: []epochs.ID{wireEpoch2}, Next: wireEpoch1, NextNumber: wireCommitN}
	if !reflect.DeepEqual(c.Commit, want) {
		t.Fatalf("commit fields %+v, want %+v", c.Commit, want)
	}
	// Padded base64 (other implementations may pad) and a quoted epoch
	// number in resolves (the MSC's example) are accepted.
	raw := mustJSON(t, wireCommit())
	raw = bytes.Replace(raw, []byte(`"resolves":[[6,`), []byte(`"resolves":[["6",`), 1)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	m["ciphertext"] = m["ciphertext"].(string) + "=="
	c2, err := ParseEncrypted(mustJSON(t, m))
	if err != nil {
		t.Fatalf("padded commit: %v", err)
	}
	if !reflect.DeepEqual(c2, c) {
		t.Fatalf("padded commit parsed as %+v, want %+v", c2, c)
	}
}

func TestParseWelcomeValid(t *testing.T) {
	wel, err := ParseWelcome(mustJSON(t, wireWelcomeContent()))
	if err != nil {
		t.Fatal(err)
	}
	want := epochs.Commit{Base: wireEpoch0, Epoch: wireEpoch1, Number: wireCommitN, Creator: wireBob,
		EventID: "$commit:other.example", Resolves: []epochs.ID{wireEpoch2}}
	if !reflect.DeepEqual(wel.Commit, want) || wel.RoomID != "!room:example.org" || string(wel.Message) != "an MLS Welcome" ||
		wel.Algorithm != wireWelAlg {
		t.Fatalf("parsed %+v, want commit %+v", wel, want)
	}
}

func TestParsePlaintextValid(t *testing.T) {
	p, err := ParsePlaintext([]byte(`{"type":"m.room.message","content":{"body":"hi","msgtype":"m.text"},"room_id":"!r:example.org"}`))
	if err != nil {
		t.Fatal(err)
	}
	if p.Type != "m.room.message" || p.RoomID != "!r:example.org" || string(p.Content) != `{"body":"hi","msgtype":"m.text"}` {
		t.Fatalf("parsed %+v", p)
	}
}

// edit returns the JSON of v with field set to value (a JSON text), or
// removed if value is "".
func edit(t testing.TB, v any, field, value string) []byte {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(mustJSON(t, v), &m); err != nil {
		t.Fatal(err)
	}
	if value == "" {
		delete(m, field)
	} else {
		m[field] = json.RawMessage(value)
	}
	return mustJSON(t, m)
}

// malformedCase is one malformed field: the parser must refuse the
// content with an error that wraps ErrWire and names the field.
type malformedCase struct {
	name    string
	content []byte
	field   string // the name the error must contain
}

func checkMalformed(t *testing.T, cases []malformedCase, parse func([]byte) error) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := parse(c.content)
			if err == nil {
				t.Fatalf("accepted %s", c.content)
			}
			if !errors.Is(err, ErrWire) {
				t.Errorf("error %q does not wrap ErrWire", err)
			}
			if !strings.Contains(err.Error(), c.field) {
				t.Errorf("error %q does not name %s", err, c.field)
			}
		})
	}
}

func TestParseEncryptedMalformed(t *testing.T) {
	msg, commit := wireMessage(), wireCommit()
	long := `"` + strings.Repeat("A", maxCiphertext+1) + `"`
	cases := []malformedCase{
		{"not an object", []byte(`["algorithm"]`), "object"},
		{"not JSON", []byte(`{"algorithm":`), "malformed"},
		{"invalid UTF-8", []byte("{\"algorithm\":\"\xff\"}"), "UTF-8"},
		{"algorithm missing", edit(t, msg, "algorithm", ""), "algorithm"},
		{"algorithm not DMLS", edit(t, msg, "algorithm", `"m.megolm.v1.aes-sha2"`), "algorithm"},
		{"algorithm a number", edit(t, msg, "algorithm", `5`), "algorithm"},
		{"ciphertext missing", edit(t, msg, "ciphertext", ""), "ciphertext"},
		{"ciphertext not base64", edit(t, msg, "ciphertext", `"not*base64"`), "ciphertext"},
		{"ciphertext too long", edit(t, msg, "ciphertext", long), "ciphertext"},
		{"ciphertext a number", edit(t, msg, "ciphertext", `12`), "ciphertext"},
		{"epoch_creator missing", edit(t, msg, "epoch_creator", ""), "epoch_creator"},
		{"commit_event missing", edit(t, msg, "commit_event", ""), "commit_event"},
		{"commit_event wrong sigil", edit(t, msg, "commit_event", `"!room:b"`), "commit_event"},
		{"dmls_epoch missing", edit(t, msg, "dmls_epoch", ""), "dmls_epoch"},
		{"dmls_epoch not base64", edit(t, msg, "dmls_epoch", `"**"`), "dmls_epoch"},
		{"dmls_epoch empty", edit(t, msg, "dmls_epoch", `""`), "dmls_epoch"},
		{"dmls_epoch too long", edit(t, msg, "dmls_epoch", `"`+b64(make([]byte, 65))+`"`), "dmls_epoch"},
		{"sender without next", edit(t, msg, "sender", `["@a:b","D"]`), "dmls_next_epoch"},
		{"resolves without next", edit(t, msg, "resolves", `[[1,["@a:b","D"]]]`), "dmls_next_epoch"},
		{"commit sender missing", edit(t, commit, "sender", ""), "sender"},
		{"dmls_next_epoch_number missing", edit(t, commit, "dmls_next_epoch_number", ""), "dmls_next_epoch_number"},
		{"dmls_next_epoch_number negative", edit(t, commit, "dmls_next_epoch_number", `-1`), "dmls_next_epoch_number"},
		{"dmls_next_epoch_number a string", edit(t, commit, "dmls_next_epoch_number", `"7"`), "dmls_next_epoch_number"},
		{"resolves not a list", edit(t, commit, "resolves", `{}`), "resolves"},
		{"resolves entry short", edit(t, commit, "resolves", `[[6]]`), "resolves"},
		{"resolves creator malformed", edit(t, commit, "resolves", `[[6,"@a:b"]]`), "resolves"},
		{"resolves number negative", edit(t, commit, "resolves", `[[-6,["@a:b","D"]]]`), "resolves"},
		{"resolves longer than dmls_resolves", edit(t, commit, "resolves", `[[6,["@a:b","D"]],[6,["@c:d","E"]]]`), "resolves"},
		{"dmls_resolves missing", edit(t, commit, "dmls_resolves", ""), "dmls_resolves"},
	}
	checkMalformed(t, cases, func(b []byte) error { _, err := ParseEncrypted(b); return err })
}

func TestParseWelcomeMalformed(t *testing.T) {
	wel := wireWelcomeContent()
	cases := []malformedCase{
		{"not an object", []byte(`"welcome"`), "object"},
		{"algorithm missing", edit(t, wel, "algorithm", ""), "algorithm"},
		{"algorithm a room event's", edit(t, wel, "algorithm", `"`+wireAlg+`"`), "algorithm"},
		{"ciphertext missing", edit(t, wel, "ciphertext", ""), "ciphertext"},
		{"ciphertext not base64", edit(t, wel, "ciphertext", `"%%%"`), "ciphertext"},
		{"room_id missing", edit(t, wel, "room_id", ""), "room_id"},
		{"room_id wrong sigil", edit(t, wel, "room_id", `"#alias:b"`), "room_id"},
		{"commit_event missing", edit(t, wel, "commit_event", ""), "commit_event"},
		{"commit_event wrong sigil", edit(t, wel, "commit_event", `"@a:b"`), "commit_event"},
		{"sender missing", edit(t, wel, "sender", ""), "sender"},
		{"dmls_base_epoch missing", edit(t, wel, "dmls_base_epoch", ""), "dmls_base_epoch"},
		{"dmls_epoch missing", edit(t, wel, "dmls_epoch", ""), "dmls_epoch"},
		{"dmls_epoch_number missing", edit(t, wel, "dmls_epoch_number", ""), "dmls_epoch_number"},
		{"dmls_epoch_number zero", edit(t, wel, "dmls_epoch_number", `0`), "first"},
		{"dmls_epoch_number a string", edit(t, wel, "dmls_epoch_number", `"x"`), "dmls_epoch_number"},
		{"resolves malformed", edit(t, wel, "resolves", `[["x",["@a:b","D"]]]`), "resolves"},
	}
	checkMalformed(t, cases, func(b []byte) error { _, err := ParseWelcome(b); return err })
}

func TestParsePlaintextMalformed(t *testing.T) {
	ok := Plaintext{Type: "m.room.message", Content: json.RawMessage(`{"body":"x"}`), RoomID: "!r:example.org"}
	cases := []malformedCase{
		{"not an object", []byte(`[]`), "object"},
		{"type missing", edit(t, ok, "type", ""), "type"},
		{"type empty", edit(t, ok, "type", `""`), "type"},
		{"type with NUL", edit(t, ok, "type", `"a\u0000b"`), "type"},
		{"type too long", edit(t, ok, "type", `"`+strings.Repeat("t", 256)+`"`), "type"},
		{"room_id missing", edit(t, ok, "room_id", ""), "room_id"},
		{"room_id wrong sigil", edit(t, ok, "room_id", `"$e:b"`), "room_id"},
		{"content missing", edit(t, ok, "content", ""), "content"},
		{"content a string", edit(t, ok, "content", `"body"`), "content"},
		{"content null", edit(t, ok, "content", `null`), "content"},
	}
	checkMalformed(t, cases, func(b []byte) error { _, err := ParsePlaintext(b); return err })
}

// Fuzz targets: no panic, every error wraps ErrWire, and whatever parses
// is encoded again by the emitters' structs into content that parses to
// the same value.

func FuzzParseEncrypted(f *testing.F) {
	for _, w := range []wireEncrypted{wireMessage(), wireCommit()} {
		f.Add(mustJSON(f, w))
	}
	noResolves := wireCommit()
	noResolves.Resolves, noResolves.DMLSResolves = nil, nil
	f.Add(mustJSON(f, noResolves))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := ParseEncrypted(data)
		if err != nil {
			if !errors.Is(err, ErrWire) {
				t.Fatalf("error %q does not wrap ErrWire", err)
			}
			return
		}
		if !strings.HasPrefix(e.Algorithm, algorithmPrefix) {
			t.Fatalf("accepted algorithm %q", e.Algorithm)
		}
		if e.Commit != nil && len(e.Commit.Resolves) != len(e.Commit.DMLSResolv) {
			t.Fatalf("accepted %d resolves and %d dmls_resolves", len(e.Commit.Resolves), len(e.Commit.DMLSResolv))
		}
		again, err := ParseEncrypted(mustJSON(t, emitEncrypted(e)))
		if err != nil {
			t.Fatalf("parsed %q as %+v, whose encoding does not parse: %v", data, e, err)
		}
		if !reflect.DeepEqual(again, e) {
			t.Fatalf("round trip of %q: %+v, then %+v", data, e, again)
		}
	})
}

func FuzzParseWelcome(f *testing.F) {
	f.Add(mustJSON(f, wireWelcomeContent()))
	w := wireWelcomeContent()
	w.Resolves, w.DMLSResolves = nil, nil
	f.Add(mustJSON(f, w))
	f.Add([]byte(`{"algorithm":"org.matrix.msc2883.v1.dmls.welcome.x"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		wel, err := ParseWelcome(data)
		if err != nil {
			if !errors.Is(err, ErrWire) {
				t.Fatalf("error %q does not wrap ErrWire", err)
			}
			return
		}
		if !strings.HasPrefix(wel.Algorithm, welcomePrefix) || wel.Commit.Number == 0 {
			t.Fatalf("accepted %+v", wel)
		}
		again, err := ParseWelcome(mustJSON(t, emitWelcome(wel)))
		if err != nil {
			t.Fatalf("parsed %q as %+v, whose encoding does not parse: %v", data, wel, err)
		}
		if !reflect.DeepEqual(again, wel) {
			t.Fatalf("round trip of %q: %+v, then %+v", data, wel, again)
		}
	})
}

func FuzzParsePlaintext(f *testing.F) {
	for _, p := range []Plaintext{
		{Type: "m.room.message", Content: json.RawMessage(`{"body":"hello","msgtype":"m.text"}`), RoomID: "!r:example.org"},
		{Type: "m.reaction", Content: json.RawMessage(`{"m.relates_to":{"event_id":"$e","key":"👍"}}`), RoomID: "!r:b"},
	} {
		f.Add(mustJSON(f, p))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePlaintext(data)
		if err != nil {
			if !errors.Is(err, ErrWire) {
				t.Fatalf("error %q does not wrap ErrWire", err)
			}
			return
		}
		if p.Type == "" || !isObject(p.Content) || !json.Valid(p.Content) {
			t.Fatalf("accepted %+v", p)
		}
		again, err := ParsePlaintext(mustJSON(t, p))
		if err != nil {
			t.Fatalf("parsed %q as %+v, whose encoding does not parse: %v", data, p, err)
		}
		var c1, c2 bytes.Buffer
		_ = json.Compact(&c1, p.Content)
		_ = json.Compact(&c2, again.Content)
		if again.Type != p.Type || again.RoomID != p.RoomID || c1.String() != c2.String() {
			t.Fatalf("round trip of %q: %+v, then %+v", data, p, again)
		}
	})
}
