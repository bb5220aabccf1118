package treekem

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/internal/vectors"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
	"github.com/mls-appservice/mls-appservice/mls/tree"
	"github.com/mls-appservice/mls-appservice/mls/treemath"
)

type treeKEMCase struct {
	CipherSuite             suite.ID    `json:"cipher_suite"`
	GroupID                 vectors.Hex `json:"group_id"`
	Epoch                   uint64      `json:"epoch"`
	ConfirmedTranscriptHash vectors.Hex `json:"confirmed_transcript_hash"`
	RatchetTree             vectors.Hex `json:"ratchet_tree"`
	LeavesPrivate           []struct {
		Index          uint32      `json:"index"`
		EncryptionPriv vectors.Hex `json:"encryption_priv"`
		SignaturePriv  vectors.Hex `json:"signature_priv"`
		PathSecrets    []struct {
			Node       uint32      `json:"node"`
			PathSecret vectors.Hex `json:"path_secret"`
		} `json:"path_secrets"`
	} `json:"leaves_private"`
	UpdatePaths []struct {
		Sender        uint32        `json:"sender"`
		UpdatePath    vectors.Hex   `json:"update_path"`
		PathSecrets   []vectors.Hex `json:"path_secrets"`
		CommitSecret  vectors.Hex   `json:"commit_secret"`
		TreeHashAfter vectors.Hex   `json:"tree_hash_after"`
	} `json:"update_paths"`
}

func checkTreeKEM(c *treeKEMCase) error {
	s, err := suite.Lookup(c.CipherSuite)
	if err != nil {
		return err
	}
	var rt message.RatchetTree
	if err := codec.Unmarshal(c.RatchetTree, &rt, "ratchet_tree"); err != nil {
		return err
	}
	base, err := tree.FromRatchetTree(s, rt)
	if err != nil {
		return err
	}
	states := map[treemath.LeafIndex]*PrivateState{}
	sigKeys := map[treemath.LeafIndex]*suite.SignaturePrivateKey{}
	for _, lp := range c.LeavesPrivate {
		l := treemath.LeafIndex(lp.Index)
		encPriv, err := s.NewHPKEPrivateKey(lp.EncryptionPriv)
		if err != nil {
			return fmt.Errorf("leaf %d: %w", l, err)
		}
		st := NewPrivateState(l, encPriv)
		for _, ps := range lp.PathSecrets {
			if st, err = st.WithNodeSecret(base, treemath.NodeIndex(ps.Node), ps.PathSecret); err != nil {
				return fmt.Errorf("leaf %d: %w", l, err)
			}
		}
		if err := st.Check(base); err != nil {
			return fmt.Errorf("leaf %d: %w", l, err)
		}
		states[l] = st
		if sigKeys[l], err = s.NewSignaturePrivateKey(lp.SignaturePriv); err != nil {
			return fmt.Errorf("leaf %d: %w", l, err)
		}
	}
	opts := PathOptions{GroupContext: message.GroupContext{
		Version:                 message.MLS10,
		CipherSuite:             c.CipherSuite,
		GroupID:                 c.GroupID,
		Epoch:                   c.Epoch,
		ConfirmedTranscriptHash: c.ConfirmedTranscriptHash,
		Extensions:              []message.Extension{},
	}}
	for _, up := range c.UpdatePaths {
		sender := treemath.LeafIndex(up.Sender)
		var path message.UpdatePath
		if err := codec.Unmarshal(up.UpdatePath, &path, "update_path"); err != nil {
			return err
		}
		if err := tree.ValidateLeafNode(s, &path.LeafNode, tree.LeafContext{
			GroupID: c.GroupID, LeafIndex: sender, Source: message.LeafNodeSourceCommit,
		}); err != nil {
			return fmt.Errorf("sender %d: %w", sender, err)
		}
		merged := base.Clone()
		if err := merged.MergeUpdatePath(sender, &path); err != nil {
			return fmt.Errorf("sender %d: %w", sender, err)
		}
		if !bytes.Equal(merged.RootHash(), up.TreeHashAfter) {
			return fmt.Errorf("sender %d: tree hash after = %x, want %x", sender, merged.RootHash(), up.TreeHashAfter)
		}
		for l, st := range states {
			if l == sender {
				continue
			}
			t := base.Clone()
			got, err := st.Apply(t, sender, &path, opts)
			if err != nil {
				return fmt.Errorf("sender %d, receiver %d: %w", sender, l, err)
			}
			if int(l) >= len(up.PathSecrets) || !bytes.Equal(got.PathSecret, up.PathSecrets[l]) {
				return fmt.Errorf("sender %d, receiver %d: path secret %x", sender, l, got.PathSecret)
			}
			if !bytes.Equal(got.CommitSecret, up.CommitSecret) {
				return fmt.Errorf("sender %d, receiver %d: commit secret %x, want %x", sender, l, got.CommitSecret, up.CommitSecret)
			}
			if err := got.Private.Check(t); err != nil {
				return fmt.Errorf("sender %d, receiver %d: new state: %w", sender, l, err)
			}
		}

		// Re-encrypt: our own UpdatePath from the same sender must be
		// processed by every other member to the same commit secret and
		// tree hash.
		gt := base.Clone()
		gen, err := states[sender].Generate(gt, *base.Leaf(sender), sigKeys[sender], opts)
		if err != nil {
			return fmt.Errorf("sender %d: generate: %w", sender, err)
		}
		if err := gen.Private.Check(gt); err != nil {
			return fmt.Errorf("sender %d: generated state: %w", sender, err)
		}
		wire := codec.Marshal(gen.Path)
		var sent message.UpdatePath
		if err := codec.Unmarshal(wire, &sent, "update_path"); err != nil {
			return err
		}
		for l, st := range states {
			if l == sender {
				continue
			}
			t := base.Clone()
			got, err := st.Apply(t, sender, &sent, opts)
			if err != nil {
				return fmt.Errorf("regenerated, sender %d, receiver %d: %w", sender, l, err)
			}
			if !bytes.Equal(got.CommitSecret, gen.CommitSecret) {
				return fmt.Errorf("regenerated, sender %d, receiver %d: commit secrets differ", sender, l)
			}
			if !bytes.Equal(t.RootHash(), gt.RootHash()) {
				return fmt.Errorf("regenerated, sender %d, receiver %d: tree hashes differ", sender, l)
			}
		}
	}
	return nil
}

func TestTreeKEMVectors(t *testing.T) {
	vectors.Run(t, "treekem.json", checkTreeKEM, func(c *treeKEMCase) string { return fmt.Sprintf("suite %d", c.CipherSuite) })
}
