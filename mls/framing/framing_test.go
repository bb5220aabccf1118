package framing

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/secrettree"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// fixture is a four-leaf group in which leaf 1 sends.
type fixture struct {
	s                *suite.Suite
	ctx              *message.GroupContext
	priv             *suite.SignaturePrivateKey
	pub              []byte
	encryptionSecret []byte
	senderDataSecret []byte
	membershipKey    []byte
}

const testSender = 1

func newFixture(tb testing.TB, id suite.ID) *fixture {
	tb.Helper()
	s, err := suite.Lookup(id)
	if err != nil {
		tb.Fatal(err)
	}
	priv, err := s.GenerateSignatureKey()
	if err != nil {
		tb.Fatal(err)
	}
	pub := priv.Public().Bytes()
	random := func() []byte {
		b := make([]byte, s.HashSize())
		rand.Read(b)
		return b
	}
	return &fixture{
		s: s,
		ctx: &message.GroupContext{
			Version: message.MLS10, CipherSuite: id, GroupID: []byte("group"), Epoch: 7,
			TreeHash: random(), ConfirmedTranscriptHash: random(), Extensions: []message.Extension{},
		},
		priv: priv, pub: pub,
		encryptionSecret: random(), senderDataSecret: random(), membershipKey: random(),
	}
}

func (f *fixture) tree(tb testing.TB) *secrettree.Tree {
	tb.Helper()
	t, err := secrettree.New(f.s, f.encryptionSecret, 4, secrettree.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	return t
}

func (f *fixture) memberKey(leaf uint32) []byte {
	if leaf == testSender {
		return f.pub
	}
	return nil
}

func (f *fixture) senderKey(c *message.FramedContent) []byte {
	if c.Sender.Type != message.SenderMember {
		return nil
	}
	return f.memberKey(c.Sender.LeafIndex)
}

func (f *fixture) content(ct message.ContentType, leaf uint32) *message.FramedContent {
	c := &message.FramedContent{
		GroupID: f.ctx.GroupID, Epoch: f.ctx.Epoch, Sender: message.MemberSender(leaf),
		AuthenticatedData: []byte("aad"), ContentType: ct,
	}
	switch ct {
	case message.ContentApplication:
		c.ApplicationData = bytes.Repeat([]byte("hello "), 20)
	case message.ContentProposal:
		c.Proposal = &message.Proposal{Type: message.ProposalRemove, Remove: &message.Remove{Removed: 2}}
	}
	return c
}

func (f *fixture) private(tb testing.TB, sender *secrettree.Tree, priv *suite.SignaturePrivateKey, leaf uint32) *message.PrivateMessage {
	tb.Helper()
	ac, err := Sign(priv, message.WireFormatPrivateMessage, f.content(message.ContentApplication, leaf), f.ctx)
	if err != nil {
		tb.Fatal(err)
	}
	pm, err := ProtectPrivate(f.s, ac, sender, f.senderDataSecret, 0)
	if err != nil {
		tb.Fatal(err)
	}
	return pm
}

func (f *fixture) public(tb testing.TB) *message.PublicMessage {
	tb.Helper()
	ac, err := Sign(f.priv, message.WireFormatPublicMessage, f.content(message.ContentProposal, testSender), f.ctx)
	if err != nil {
		tb.Fatal(err)
	}
	pm, err := ProtectPublic(f.s, ac, f.ctx, f.membershipKey)
	if err != nil {
		tb.Fatal(err)
	}
	return pm
}

// sealRaw encrypts an arbitrary plaintext as leaf's next application
// message, so that tests can reach the checks behind the AEAD.
func (f *fixture) sealRaw(tb testing.TB, sender *secrettree.Tree, leaf uint32, plaintext []byte) *message.PrivateMessage {
	tb.Helper()
	pm := &message.PrivateMessage{GroupID: f.ctx.GroupID, Epoch: f.ctx.Epoch, ContentType: message.ContentApplication, AuthenticatedData: []byte{}}
	var sd message.SenderData
	err := sender.Send(leaf, secrettree.Application, func(k secrettree.Key) error {
		sd = message.SenderData{LeafIndex: leaf, Generation: k.Generation}
		var err error
		pm.Ciphertext, err = f.s.Seal(k.Key, k.Nonce, codec.Marshal(pm.ContentAAD()), plaintext)
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	key, nonce := secrettree.SenderDataKey(f.s, f.senderDataSecret, pm.Ciphertext)
	pm.EncryptedSenderData, err = f.s.Seal(key, nonce, codec.Marshal(pm.SenderDataAAD()), codec.Marshal(&sd))
	if err != nil {
		tb.Fatal(err)
	}
	return pm
}

func TestPrivateRoundTripAllContentTypes(t *testing.T) {
	for _, s := range suite.All() {
		f := newFixture(t, s.ID())
		sender, receiver := f.tree(t), f.tree(t)
		for _, ct := range []message.ContentType{message.ContentApplication, message.ContentProposal} {
			ac, err := Sign(f.priv, message.WireFormatPrivateMessage, f.content(ct, testSender), f.ctx)
			if err != nil {
				t.Fatal(err)
			}
			pm, err := ProtectPrivate(f.s, ac, sender, f.senderDataSecret, 33)
			if err != nil {
				t.Fatal(err)
			}
			got, err := UnprotectPrivate(f.s, pm, f.ctx, receiver, f.senderDataSecret, f.memberKey)
			if err != nil {
				t.Fatalf("%v content %d: %v", s, ct, err)
			}
			if !bytes.Equal(codec.Marshal(got), codec.Marshal(ac)) {
				t.Fatalf("%v content %d: content changed in transit", s, ct)
			}
		}
	}
}

func TestUnprotectPrivateErrors(t *testing.T) {
	f := newFixture(t, suite.X25519AES128GCMSHA256Ed25519)
	otherPriv, _ := f.s.GenerateSignatureKey()

	tests := []struct {
		name string
		// build returns the message and the receiver's tree.
		build func(t *testing.T) (*message.PrivateMessage, *secrettree.Tree)
		ctx   *message.GroupContext
		want  error
	}{
		{"bad signature", func(t *testing.T) (*message.PrivateMessage, *secrettree.Tree) {
			return f.private(t, f.tree(t), otherPriv, testSender), f.tree(t)
		}, nil, suite.ErrBadSignature},
		{"content AEAD", func(t *testing.T) (*message.PrivateMessage, *secrettree.Tree) {
			pm := f.private(t, f.tree(t), f.priv, testSender)
			pm.Ciphertext[len(pm.Ciphertext)-1] ^= 1 // past the sender-data sample
			return pm, f.tree(t)
		}, nil, ErrContentDecrypt},
		{"sender data AEAD", func(t *testing.T) (*message.PrivateMessage, *secrettree.Tree) {
			pm := f.private(t, f.tree(t), f.priv, testSender)
			pm.EncryptedSenderData[0] ^= 1
			return pm, f.tree(t)
		}, nil, ErrSenderDataDecrypt},
		{"sample changed", func(t *testing.T) (*message.PrivateMessage, *secrettree.Tree) {
			pm := f.private(t, f.tree(t), f.priv, testSender)
			pm.Ciphertext[0] ^= 1 // changes the sender-data key
			return pm, f.tree(t)
		}, nil, ErrSenderDataDecrypt},
		{"blank sender leaf", func(t *testing.T) (*message.PrivateMessage, *secrettree.Tree) {
			return f.private(t, f.tree(t), f.priv, 2), f.tree(t)
		}, nil, ErrUnknownSender},
		{"sender leaf outside tree", func(t *testing.T) (*message.PrivateMessage, *secrettree.Tree) {
			big, err := secrettree.New(f.s, f.encryptionSecret, 8, secrettree.Options{})
			if err != nil {
				t.Fatal(err)
			}
			return f.private(t, big, f.priv, 6), f.tree(t)
		}, nil, ErrUnknownSender},
		{"replay", func(t *testing.T) (*message.PrivateMessage, *secrettree.Tree) {
			pm, receiver := f.private(t, f.tree(t), f.priv, testSender), f.tree(t)
			if _, err := UnprotectPrivate(f.s, pm, f.ctx, receiver, f.senderDataSecret, f.memberKey); err != nil {
				t.Fatal(err)
			}
			return pm, receiver
		}, nil, ErrReplay},
		{"generation too far", func(t *testing.T) (*message.PrivateMessage, *secrettree.Tree) {
			sender := f.tree(t)
			for range secrettree.DefaultMaxForward + 1 {
				sender.Send(testSender, secrettree.Application, func(secrettree.Key) error { return nil })
			}
			return f.private(t, sender, f.priv, testSender), f.tree(t)
		}, nil, ErrGenerationTooFar},
		{"wrong epoch", func(t *testing.T) (*message.PrivateMessage, *secrettree.Tree) {
			return f.private(t, f.tree(t), f.priv, testSender), f.tree(t)
		}, &message.GroupContext{GroupID: f.ctx.GroupID, Epoch: f.ctx.Epoch + 1}, ErrWrongEpoch},
		{"wrong group", func(t *testing.T) (*message.PrivateMessage, *secrettree.Tree) {
			return f.private(t, f.tree(t), f.priv, testSender), f.tree(t)
		}, &message.GroupContext{GroupID: []byte("other"), Epoch: f.ctx.Epoch}, ErrWrongGroup},
		{"bad padding", func(t *testing.T) (*message.PrivateMessage, *secrettree.Tree) {
			ac, _ := Sign(f.priv, message.WireFormatPrivateMessage, f.content(message.ContentApplication, testSender), f.ctx)
			plain := codec.Marshal(&message.PrivateMessageContent{ContentType: message.ContentApplication, ApplicationData: ac.Content.ApplicationData, Auth: ac.Auth, Padding: 8})
			plain[len(plain)-3] = 1
			return f.sealRaw(t, f.tree(t), testSender, plain), f.tree(t)
		}, nil, ErrBadPadding},
		{"malformed content", func(t *testing.T) (*message.PrivateMessage, *secrettree.Tree) {
			return f.sealRaw(t, f.tree(t), testSender, []byte{0x40}), f.tree(t)
		}, nil, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pm, receiver := tt.build(t)
			ctx := f.ctx
			if tt.ctx != nil {
				ctx = tt.ctx
			}
			_, err := UnprotectPrivate(f.s, pm, ctx, receiver, f.senderDataSecret, f.memberKey)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestPaddingErrorMatchesMessageSentinel(t *testing.T) {
	f := newFixture(t, suite.X25519AES128GCMSHA256Ed25519)
	plain := []byte{0, 0, 0, 5} // empty data, empty signature, padding 0 0 5
	_, err := UnprotectPrivate(f.s, f.sealRaw(t, f.tree(t), testSender, plain), f.ctx, f.tree(t), f.senderDataSecret, f.memberKey)
	if !errors.Is(err, ErrBadPadding) || !errors.Is(err, message.ErrNonZeroPadding) {
		t.Fatalf("got %v", err)
	}
}

// A forged message (valid AEAD, bad signature) must not burn the genuine
// sender's generation.
func TestForgeryDoesNotConsumeGeneration(t *testing.T) {
	f := newFixture(t, suite.X25519AES128GCMSHA256Ed25519)
	otherPriv, _ := f.s.GenerateSignatureKey()
	receiver := f.tree(t)
	forged := f.private(t, f.tree(t), otherPriv, testSender)
	if _, err := UnprotectPrivate(f.s, forged, f.ctx, receiver, f.senderDataSecret, f.memberKey); !errors.Is(err, suite.ErrBadSignature) {
		t.Fatal(err)
	}
	genuine := f.private(t, f.tree(t), f.priv, testSender) // also generation 0
	if _, err := UnprotectPrivate(f.s, genuine, f.ctx, receiver, f.senderDataSecret, f.memberKey); err != nil {
		t.Fatalf("genuine message after forgery: %v", err)
	}
}

func TestUnprotectPublicErrors(t *testing.T) {
	f := newFixture(t, suite.X25519AES128GCMSHA256Ed25519)
	otherPriv, _ := f.s.GenerateSignatureKey()
	tests := []struct {
		name   string
		mutate func(pm *message.PublicMessage)
		keys   SenderKey
		want   error
	}{
		{"ok", func(*message.PublicMessage) {}, f.senderKey, nil},
		{"membership tag", func(pm *message.PublicMessage) { pm.MembershipTag[0] ^= 1 }, f.senderKey, ErrBadMembershipTag},
		{"signature", func(pm *message.PublicMessage) { pm.Auth.Signature[0] ^= 1 }, f.senderKey, ErrBadMembershipTag},
		{"unknown sender", func(*message.PublicMessage) {}, func(*message.FramedContent) []byte { return nil }, ErrUnknownSender},
		{"epoch", func(pm *message.PublicMessage) { pm.Content.Epoch++ }, f.senderKey, ErrWrongEpoch},
		{"group", func(pm *message.PublicMessage) { pm.Content.GroupID = []byte("x") }, f.senderKey, ErrWrongGroup},
		{"application", func(pm *message.PublicMessage) {
			pm.Content.ContentType, pm.Content.ApplicationData = message.ContentApplication, []byte("x")
		}, f.senderKey, ErrApplicationInPublic},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pm := f.public(t)
			tt.mutate(pm)
			_, err := UnprotectPublic(f.s, pm, f.ctx, f.membershipKey, tt.keys)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}

	// A valid membership tag over a wrongly signed message isolates the
	// signature check.
	ac, _ := Sign(otherPriv, message.WireFormatPublicMessage, f.content(message.ContentProposal, testSender), f.ctx)
	pm, _ := ProtectPublic(f.s, ac, f.ctx, f.membershipKey)
	if _, err := UnprotectPublic(f.s, pm, f.ctx, f.membershipKey, f.senderKey); !errors.Is(err, suite.ErrBadSignature) {
		t.Fatalf("bad signature: got %v", err)
	}
}

func TestProtectRejects(t *testing.T) {
	f := newFixture(t, suite.X25519AES128GCMSHA256Ed25519)
	ac, _ := Sign(f.priv, message.WireFormatPublicMessage, f.content(message.ContentProposal, testSender), f.ctx)
	if _, err := ProtectPrivate(f.s, ac, f.tree(t), f.senderDataSecret, 0); !errors.Is(err, ErrWireFormat) {
		t.Errorf("public-signed content as private: %v", err)
	}
	ext := f.content(message.ContentProposal, 0)
	ext.Sender = message.Sender{Type: message.SenderExternal}
	ac, _ = Sign(f.priv, message.WireFormatPrivateMessage, ext, nil)
	if _, err := ProtectPrivate(f.s, ac, f.tree(t), f.senderDataSecret, 0); !errors.Is(err, ErrNotMember) {
		t.Errorf("external sender as private: %v", err)
	}
}

func TestConfirmationTag(t *testing.T) {
	f := newFixture(t, suite.X25519AES128GCMSHA256Ed25519)
	key, cth := []byte("key"), []byte("transcript")
	tag := ConfirmationTag(f.s, key, cth)
	if err := VerifyConfirmationTag(f.s, key, cth, tag); err != nil {
		t.Fatal(err)
	}
	tag[0] ^= 1
	if err := VerifyConfirmationTag(f.s, key, cth, tag); !errors.Is(err, ErrBadConfirmationTag) {
		t.Fatalf("got %v", err)
	}
}
