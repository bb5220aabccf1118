package groups

import (
	"testing"
)

// Regressions (bugs in wire.go found by these tests, now fixed):
//
//  1. A malformed [user id, device id] pair (epoch_creator, sender) or a
//     malformed base64 id (dmls_next_epoch, dmls_base_epoch,
//     dmls_resolves) is refused with an error that does not name its
//     field: deviceJSON.UnmarshalJSON and b64ID.UnmarshalJSON do not know
//     it, encoding/json adds no context to an Unmarshaler's error, and
//     epochs.ParseID always says "dmls_epoch". wire.go promises "an error
//     naming it".
//  2. decodeCiphertext accepts a ciphertext of padding only ("=", "==")
//     and returns an empty ciphertext, while a missing or empty one is
//     refused ("no ciphertext"): the emitters then encode it as "", which
//     does not parse (the fuzz targets' round trip).

func TestWireErrorsNameTheField(t *testing.T) {
	msg, commit, wel := wireMessage(), wireCommit(), wireWelcomeContent()
	checkMalformed(t, []malformedCase{
		{"epoch_creator not a pair", edit(t, msg, "epoch_creator", `["@a:b"]`), "epoch_creator"},
		{"epoch_creator bad user", edit(t, msg, "epoch_creator", `["alice","DEV"]`), "epoch_creator"},
		{"epoch_creator empty device", edit(t, msg, "epoch_creator", `["@a:b",""]`), "epoch_creator"},
		{"commit sender malformed", edit(t, commit, "sender", `["@a:b"]`), "sender"},
		{"dmls_next_epoch not base64", edit(t, commit, "dmls_next_epoch", `"**"`), "dmls_next_epoch"},
		{"dmls_next_epoch empty", edit(t, commit, "dmls_next_epoch", `""`), "dmls_next_epoch"},
		{"dmls_resolves not base64", edit(t, commit, "dmls_resolves", `["**"]`), "dmls_resolves"},
		{"dmls_resolves entry empty", edit(t, commit, "dmls_resolves", `[""]`), "dmls_resolves"},
	}, func(b []byte) error { _, err := ParseEncrypted(b); return err })
	checkMalformed(t, []malformedCase{
		{"welcome sender malformed", edit(t, wel, "sender", `["@a:b","D","E"]`), "sender"},
		{"dmls_base_epoch malformed", edit(t, wel, "dmls_base_epoch", `"**"`), "dmls_base_epoch"},
		{"dmls_epoch malformed", edit(t, wel, "dmls_epoch", `7`), "dmls_epoch"},
		{"dmls_resolves malformed", edit(t, wel, "dmls_resolves", `[1]`), "dmls_resolves"},
	}, func(b []byte) error { _, err := ParseWelcome(b); return err })
}

func TestWireRefusesPaddingOnlyCiphertext(t *testing.T) {
	for _, ct := range []string{`"="`, `"=="`, `"===="`} {
		checkMalformed(t, []malformedCase{{"room event " + ct, edit(t, wireMessage(), "ciphertext", ct), "ciphertext"}},
			func(b []byte) error { _, err := ParseEncrypted(b); return err })
		checkMalformed(t, []malformedCase{{"welcome " + ct, edit(t, wireWelcomeContent(), "ciphertext", ct), "ciphertext"}},
			func(b []byte) error { _, err := ParseWelcome(b); return err })
	}
}
