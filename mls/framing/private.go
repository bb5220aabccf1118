package framing

import (
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/secrettree"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// MemberKey returns the signature public key of the member at leaf, or nil
// if the leaf is blank or outside the tree (§6.3.2 requires rejecting
// those).
type MemberKey func(leaf uint32) []byte

// MaxPadding bounds the padding ProtectPrivate adds, so that a caller's
// miscomputed length fails instead of allocating without limit.
const MaxPadding = 1 << 16

func ratchetFor(ct message.ContentType) secrettree.RatchetType {
	if ct == message.ContentApplication {
		return secrettree.Application
	}
	return secrettree.Handshake
}

// applyReuseGuard returns the key-schedule nonce with its first four bytes
// XORed with the guard (§6.3.1), leaving the ratchet's nonce untouched.
func applyReuseGuard(nonce []byte, guard [4]byte) []byte {
	out := append([]byte(nil), nonce...)
	for i := range guard {
		out[i] ^= guard[i]
	}
	return out
}

// ProtectPrivate encrypts signed content as a PrivateMessage, with padding
// zero bytes after the auth data. It takes the next generation of the
// sender's ratchet in tree, which it consumes even if encryption fails.
func ProtectPrivate(s *suite.Suite, ac *message.AuthenticatedContent, tree *secrettree.Tree, senderDataSecret []byte, padding int) (*message.PrivateMessage, error) {
	if ac.WireFormat != message.WireFormatPrivateMessage {
		return nil, fmt.Errorf("%w: content signed for wire format %d", ErrWireFormat, ac.WireFormat)
	}
	if ac.Content.Sender.Type != message.SenderMember {
		return nil, ErrNotMember
	}
	if padding < 0 || padding > MaxPadding {
		return nil, fmt.Errorf("framing: padding %d outside 0..%d", padding, MaxPadding)
	}
	c := &ac.Content
	pm := &message.PrivateMessage{
		GroupID:           c.GroupID,
		Epoch:             c.Epoch,
		ContentType:       c.ContentType,
		AuthenticatedData: c.AuthenticatedData,
	}
	plaintext := codec.Marshal(&message.PrivateMessageContent{
		ContentType:     c.ContentType,
		ApplicationData: c.ApplicationData,
		Proposal:        c.Proposal,
		Commit:          c.Commit,
		Auth:            ac.Auth,
		Padding:         padding,
	})
	defer clear(plaintext)
	aad := codec.Marshal(pm.ContentAAD())

	sd := message.SenderData{LeafIndex: c.Sender.LeafIndex}
	if _, err := rand.Read(sd.ReuseGuard[:]); err != nil {
		return nil, fmt.Errorf("framing: reuse guard: %w", err)
	}
	err := tree.Send(c.Sender.LeafIndex, ratchetFor(c.ContentType), func(k secrettree.Key) error {
		nonce := applyReuseGuard(k.Nonce, sd.ReuseGuard)
		defer clear(nonce)
		ct, err := s.Seal(k.Key, nonce, aad, plaintext)
		sd.Generation = k.Generation
		pm.Ciphertext = ct
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("framing: encrypt content: %w", err)
	}

	key, nonce := secrettree.SenderDataKey(s, senderDataSecret, pm.Ciphertext)
	defer clear(key)
	defer clear(nonce)
	pm.EncryptedSenderData, err = s.Seal(key, nonce, codec.Marshal(pm.SenderDataAAD()), codec.Marshal(&sd))
	if err != nil {
		return nil, fmt.Errorf("framing: encrypt sender data: %w", err)
	}
	return pm, nil
}

// UnprotectPrivate decrypts and authenticates a PrivateMessage of the epoch
// ctx describes, whose secret tree is tree. The ratchet generation is
// consumed only if the content decrypts, its padding is zero and its
// signature verifies against memberKey's key for the sender; on any error
// tree's ratchets are unchanged. A commit's confirmation tag is left for
// the caller.
func UnprotectPrivate(s *suite.Suite, pm *message.PrivateMessage, ctx *message.GroupContext, tree *secrettree.Tree, senderDataSecret []byte, memberKey MemberKey) (*message.AuthenticatedContent, error) {
	ac, _, err := unprotectPrivate(s, pm, ctx, tree, senderDataSecret, memberKey, false)
	return ac, err
}

// UnprotectPrivateDeferred is UnprotectPrivate without the signature
// check, which it returns for the caller to make, with others at once
// (suite.VerifyBatch). The ratchet generation is consumed as if the
// signature verified: a caller whose check fails must discard tree, and
// everything it took from the content.
func UnprotectPrivateDeferred(s *suite.Suite, pm *message.PrivateMessage, ctx *message.GroupContext, tree *secrettree.Tree, senderDataSecret []byte, memberKey MemberKey) (*message.AuthenticatedContent, suite.SignatureCheck, error) {
	return unprotectPrivate(s, pm, ctx, tree, senderDataSecret, memberKey, true)
}

func unprotectPrivate(s *suite.Suite, pm *message.PrivateMessage, ctx *message.GroupContext, tree *secrettree.Tree, senderDataSecret []byte, memberKey MemberKey, deferred bool) (*message.AuthenticatedContent, suite.SignatureCheck, error) {
	if err := checkGroup(pm.GroupID, pm.Epoch, ctx); err != nil {
		return nil, suite.SignatureCheck{}, err
	}
	sd, err := openSenderData(s, pm, senderDataSecret)
	if err != nil {
		return nil, suite.SignatureCheck{}, err
	}
	if sd.LeafIndex >= tree.LeafCount() {
		return nil, suite.SignatureCheck{}, fmt.Errorf("%w: leaf %d outside a %d-leaf tree", ErrUnknownSender, sd.LeafIndex, tree.LeafCount())
	}
	pub := memberKey(sd.LeafIndex)
	if pub == nil {
		return nil, suite.SignatureCheck{}, fmt.Errorf("%w: leaf %d", ErrUnknownSender, sd.LeafIndex)
	}

	aad := codec.Marshal(pm.ContentAAD())
	var ac *message.AuthenticatedContent
	var check suite.SignatureCheck
	err = tree.Receive(sd.LeafIndex, ratchetFor(pm.ContentType), sd.Generation, func(k secrettree.Key) error {
		nonce := applyReuseGuard(k.Nonce, sd.ReuseGuard)
		defer clear(nonce)
		plaintext, err := s.Open(k.Key, nonce, aad, pm.Ciphertext)
		if err != nil {
			return ErrContentDecrypt
		}
		defer clear(plaintext)
		pmc, err := message.UnmarshalPrivateMessageContent(plaintext, pm.ContentType)
		if errors.Is(err, message.ErrNonZeroPadding) {
			return fmt.Errorf("%w: %w", ErrBadPadding, err)
		}
		if err != nil {
			return fmt.Errorf("%w: content: %w", ErrMalformed, err)
		}
		candidate := &message.AuthenticatedContent{
			WireFormat: message.WireFormatPrivateMessage,
			Content: message.FramedContent{
				GroupID:           pm.GroupID,
				Epoch:             pm.Epoch,
				Sender:            message.MemberSender(sd.LeafIndex),
				AuthenticatedData: pm.AuthenticatedData,
				ContentType:       pm.ContentType,
				ApplicationData:   pmc.ApplicationData,
				Proposal:          pmc.Proposal,
				Commit:            pmc.Commit,
			},
			Auth: pmc.Auth,
		}
		c, err := signatureCheck(pub, candidate, ctx)
		if err != nil {
			return err
		}
		if !deferred {
			if err := verify(s, c); err != nil {
				return err
			}
		}
		ac, check = candidate, c
		return nil
	})
	if err != nil {
		return nil, suite.SignatureCheck{}, fmt.Errorf("framing: unprotect private message: %w", err)
	}
	return ac, check, nil
}

func openSenderData(s *suite.Suite, pm *message.PrivateMessage, senderDataSecret []byte) (*message.SenderData, error) {
	key, nonce := secrettree.SenderDataKey(s, senderDataSecret, pm.Ciphertext)
	defer clear(key)
	defer clear(nonce)
	plain, err := s.Open(key, nonce, codec.Marshal(pm.SenderDataAAD()), pm.EncryptedSenderData)
	if err != nil {
		return nil, ErrSenderDataDecrypt
	}
	var sd message.SenderData
	if err := codec.Unmarshal(plain, &sd, "sender_data"); err != nil {
		return nil, fmt.Errorf("%w: sender data: %w", ErrMalformed, err)
	}
	return &sd, nil
}
