package framing

import (
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// FuzzUnprotectPrivate feeds arbitrary bytes through PrivateMessage
// decoding and unprotection. Seeds are genuine messages, so mutations reach
// past decoding into the AEAD and sender checks.
func FuzzUnprotectPrivate(f *testing.F) {
	fx := newFixture(f, suite.X25519AES128GCMSHA256Ed25519)
	sender := fx.tree(f)
	for range 3 {
		f.Add(codec.Marshal(fx.private(f, sender, fx.priv, testSender)))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var pm message.PrivateMessage
		if codec.Unmarshal(data, &pm, "private_message") != nil {
			return
		}
		_, _ = UnprotectPrivate(fx.s, &pm, fx.ctx, fx.tree(t), fx.senderDataSecret, fx.memberKey)
	})
}

// FuzzUnprotectPrivatePlaintext encrypts arbitrary plaintext correctly, so
// that the content decoding, padding check and signature check behind the
// AEAD see hostile input too (as they would from a malicious member).
func FuzzUnprotectPrivatePlaintext(f *testing.F) {
	fx := newFixture(f, suite.X25519AES128GCMSHA256Ed25519)
	ac, err := Sign(fx.priv, message.WireFormatPrivateMessage, fx.content(message.ContentApplication, testSender), fx.ctx)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(codec.Marshal(&message.PrivateMessageContent{ContentType: message.ContentApplication, ApplicationData: ac.Content.ApplicationData, Auth: ac.Auth, Padding: 4}))
	f.Add([]byte{0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, plaintext []byte) {
		pm := fx.sealRaw(t, fx.tree(t), testSender, plaintext)
		_, _ = UnprotectPrivate(fx.s, pm, fx.ctx, fx.tree(t), fx.senderDataSecret, fx.memberKey)
	})
}
