package framing

import (
	"crypto/rand"
	"fmt"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/secrettree"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

func benchContent(f *fixture) *message.FramedContent {
	c := f.content(message.ContentApplication, testSender)
	c.ApplicationData = make([]byte, 1024)
	rand.Read(c.ApplicationData)
	return c
}

// BenchmarkProtectPrivate measures the whole send path of a 1 KiB
// application message: signing, then content and sender-data encryption.
func BenchmarkProtectPrivate(b *testing.B) {
	for _, s := range suite.All() {
		b.Run(fmt.Sprintf("suite=%d", s.ID()), func(b *testing.B) {
			f := newFixture(b, s.ID())
			sender, content := f.tree(b), benchContent(f)
			for b.Loop() {
				ac, err := Sign(f.priv, message.WireFormatPrivateMessage, content, f.ctx)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := ProtectPrivate(f.s, ac, sender, f.senderDataSecret, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkUnprotectPrivate measures the whole receive path of a 1 KiB
// application message: sender-data and content decryption and signature
// verification. Each iteration unprotects the same message with a fresh
// copy of a receiver tree whose path to the sender is already derived, so
// the figure includes one Clone of a small tree.
func BenchmarkUnprotectPrivate(b *testing.B) {
	for _, s := range suite.All() {
		b.Run(fmt.Sprintf("suite=%d", s.ID()), func(b *testing.B) {
			f := newFixture(b, s.ID())
			ac, err := Sign(f.priv, message.WireFormatPrivateMessage, benchContent(f), f.ctx)
			if err != nil {
				b.Fatal(err)
			}
			pm, err := ProtectPrivate(f.s, ac, f.tree(b), f.senderDataSecret, 0)
			if err != nil {
				b.Fatal(err)
			}
			template := f.tree(b)
			template.Receive(testSender, secrettree.Handshake, 0, func(secrettree.Key) error { return nil })
			for b.Loop() {
				if _, err := UnprotectPrivate(f.s, pm, f.ctx, template.Clone(), f.senderDataSecret, f.memberKey); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
