package treekem

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"slices"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
	"github.com/mls-appservice/mls-appservice/mls/tree"
	"github.com/mls-appservice/mls-appservice/mls/treemath"
)

// PathOptions describe the commit an UpdatePath is generated or applied
// for.
type PathOptions struct {
	// GroupContext is the provisional group context of the commit (§12.4.2).
	// Its TreeHash is ignored: it is set to the hash of the tree with the
	// path merged, which is what the path secrets are encrypted under.
	GroupContext message.GroupContext
	// Exclude lists the leaves the commit adds. They get no encrypted path
	// secret (§7.6); they learn theirs from the Welcome.
	Exclude []treemath.LeafIndex
}

// Generated is the result of Generate.
type Generated struct {
	Path         *message.UpdatePath
	Private      *PrivateState
	CommitSecret []byte

	sender      treemath.LeafIndex
	fdp         []treemath.NodeIndex
	pathSecrets [][]byte
}

// PathSecretFor returns the path secret a Welcome gives the new member at
// joiner: the one of the lowest node of the committer's filtered direct
// path above both leaves (§12.4.3.1). It returns nil if there is none.
func (g *Generated) PathSecretFor(joiner treemath.LeafIndex) []byte {
	ca := treemath.CommonAncestor(g.sender.Node(), joiner.Node())
	if i := slices.Index(g.fdp, ca); i >= 0 {
		return bytes.Clone(g.pathSecrets[i])
	}
	return nil
}

// Zero erases the path secrets and the commit secret once the commit and
// its Welcome messages are built.
func (g *Generated) Zero() {
	for _, s := range g.pathSecrets {
		clear(s)
	}
	clear(g.CommitSecret)
}

// Generate builds the UpdatePath of a commit by p's member (§7.4–§7.6). t
// is the tree with the commit's proposals applied; Generate merges the path
// into it in place (clone it first to keep the old one). leaf is the
// template of the member's new LeafNode (signature key, credential,
// capabilities, extensions): Generate sets its encryption key to a fresh
// one, its source to commit and its parent hash, and signs it with
// signingKey. The returned state holds the member's new keys.
func (p *PrivateState) Generate(t *tree.Tree, leaf message.LeafNode, signingKey *suite.SignaturePrivateKey, o PathOptions) (*Generated, error) {
	s := p.suite
	fdp := t.FilteredDirectPath(p.leaf)
	leafPriv, err := s.GenerateHPKEKey()
	if err != nil {
		return nil, fmt.Errorf("generate leaf key: %w", err)
	}
	g := &Generated{sender: p.leaf, fdp: fdp, pathSecrets: make([][]byte, len(fdp))}
	keys := make([]nodeKey, len(fdp)+1)
	keys[0] = nodeKey{p.leaf.Node(), leafPriv}
	pubs := make([][]byte, len(fdp))
	secret := make([]byte, s.HashSize())
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	// The keys' scalar multiplications run on both cores; mergePath
	// encodes them all with one field inversion (suite.PublishHPKEKeys).
	derive := make([]func() error, len(fdp), len(fdp)+1)
	for i := range fdp {
		g.pathSecrets[i] = secret
		secret = s.DeriveSecret(secret, "path")
		derive[i] = func() error {
			priv, err := derivePathKey(s, g.pathSecrets[i])
			if err != nil {
				return err
			}
			priv.Precompute()
			keys[i+1] = nodeKey{fdp[i], priv}
			return nil
		}
	}
	derive = append(derive, func() error { leafPriv.Precompute(); return nil })
	g.CommitSecret = secret
	if len(fdp) == 0 {
		// A lone member has no path secrets to send; its commit secret
		// is still fresh, derived from a random path secret as for a root.
		g.CommitSecret = s.DeriveSecret(secret, "path")
		clear(secret)
	}

	// One HPKE encryption per node of each copath resolution: the bulk
	// of a commit's cost. The resolutions lie beside the path, so they
	// and their keys are known before the path is merged, and each
	// encryption's Encap runs while the path is (pathWork).
	g.Path = &message.UpdatePath{Nodes: make([]message.UpdatePathNode, len(fdp))}
	var encs []encJob
	var res []treemath.NodeIndex
	for i, x := range fdp {
		res = t.AppendCopathResolution(res[:0], x, p.leaf, o.Exclude)
		cts := make([]message.HPKECiphertext, len(res))
		for j, r := range res {
			pub, err := s.NewHPKEPublicKey(t.EncryptionKey(r))
			if err != nil {
				return nil, fmt.Errorf("encryption key of node %d: %w", r, err)
			}
			encs = append(encs, encJob{node: r, to: pub, secret: i, out: &cts[j]})
		}
		g.Path.Nodes[i].EncryptedPathSecret = cts
	}
	work := startPathWork(derive, encs)
	ctx, err := p.mergePath(t, &leaf, keys, pubs, work, signingKey, o)
	if err != nil {
		work.stop()
		return nil, err
	}
	if err := work.seal(s.NewSealContext("UpdatePathNode", codec.Marshal(ctx)), g.pathSecrets); err != nil {
		return nil, err
	}
	for i := range fdp {
		g.Path.Nodes[i].EncryptionKey = pubs[i]
	}
	g.Path.LeafNode = leaf
	// The member's old keys above its leaf are gone with the nodes they
	// opened: its whole direct path was blanked or replaced.
	g.Private = p.with(func(treemath.NodeIndex) bool { return true }, keys)
	return g, nil
}

// mergePath waits for the path's keys (keys[0] the leaf's, then one per
// node of the filtered direct path), sets their public keys in pubs,
// merges them into t, signs the member's new leaf into place and returns
// the group context the path secrets are encrypted under, the one with
// the new tree hash.
func (p *PrivateState) mergePath(t *tree.Tree, leaf *message.LeafNode, keys []nodeKey, pubs [][]byte, work *pathWork, signingKey *suite.SignaturePrivateKey, o PathOptions) (*message.GroupContext, error) {
	if err := work.waitDerived(); err != nil {
		return nil, err
	}
	privs := make([]*suite.HPKEPrivateKey, len(keys))
	for i, k := range keys {
		privs[i] = k.priv
	}
	suite.PublishHPKEKeys(privs)
	for i := range pubs {
		pubs[i] = privs[i+1].Public().Bytes()
	}
	parentHash, err := t.SetPathKeys(p.leaf, pubs)
	if err != nil {
		return nil, err
	}
	leaf.EncryptionKey = privs[0].Public().Bytes()
	leaf.Source = message.LeafNodeSourceCommit
	leaf.Lifetime = message.Lifetime{}
	leaf.ParentHash = parentHash
	leaf.Signature, err = signingKey.SignWithLabel("LeafNodeTBS", leaf.TBS(o.GroupContext.GroupID, uint32(p.leaf)))
	if err != nil {
		return nil, fmt.Errorf("sign leaf node: %w", err)
	}
	if err := t.SetLeaf(p.leaf, leaf); err != nil {
		return nil, err
	}
	ctx := o.GroupContext
	ctx.TreeHash = t.RootHash()
	return &ctx, nil
}

// Applied is the result of Apply.
type Applied struct {
	Private      *PrivateState
	CommitSecret []byte
	// PathSecret is the secret the member decrypted, that of the lowest
	// common ancestor of its leaf and the sender's.
	PathSecret []byte
}

// Apply processes an UpdatePath from the member at sender (§7.5): it merges
// the path into t in place (checking the committer's parent hash),
// decrypts the path secret of the lowest common ancestor with the one key p
// holds in the copath resolution, derives the secrets above it, checks
// every derived public key against the path, and returns p's new state and
// the commit secret. t must be the tree with the commit's proposals
// applied; on error it must be discarded. The new LeafNode's signature and
// other §7.3 properties are for tree.ValidateLeafNode, before Apply.
func (p *PrivateState) Apply(t *tree.Tree, sender treemath.LeafIndex, path *message.UpdatePath, o PathOptions) (*Applied, error) {
	s := p.suite
	if sender == p.leaf {
		return nil, ErrOwnPath
	}
	if t.Leaf(p.leaf) == nil {
		return nil, fmt.Errorf("%w: leaf %d", ErrNotInTree, p.leaf)
	}
	fdp := t.FilteredDirectPath(sender)
	if len(fdp) != len(path.Nodes) {
		return nil, fmt.Errorf("%w: %d nodes for a filtered direct path of %d", tree.ErrPathLength, len(path.Nodes), len(fdp))
	}
	ca := treemath.CommonAncestor(sender.Node(), p.leaf.Node())
	i := slices.Index(fdp, ca)
	if i < 0 {
		return nil, fmt.Errorf("%w: common ancestor %d is not on the sender's filtered direct path", ErrNoDecryptionKey, ca)
	}
	res := t.AppendCopathResolution(nil, ca, sender, o.Exclude)
	cts := path.Nodes[i].EncryptedPathSecret
	if len(cts) != len(res) {
		return nil, fmt.Errorf("%w: %d for a resolution of %d", ErrCiphertextCount, len(cts), len(res))
	}
	j := slices.IndexFunc(res, func(x treemath.NodeIndex) bool { return p.PrivateKey(x) != nil })
	if j < 0 {
		return nil, ErrNoDecryptionKey
	}
	priv := p.PrivateKey(res[j])

	if err := t.MergeUpdatePath(sender, path); err != nil {
		return nil, err
	}
	ctx := o.GroupContext
	ctx.TreeHash = t.RootHash()
	secret, err := priv.DecryptWithLabel("UpdatePathNode", codec.Marshal(&ctx), cts[j].KEMOutput, cts[j].Ciphertext)
	if err != nil {
		return nil, fmt.Errorf("%w: node %d: %w", ErrDecrypt, res[j], err)
	}
	out := &Applied{PathSecret: bytes.Clone(secret)}
	secrets := make([][]byte, len(fdp)-i)
	for k := range secrets {
		secrets[k] = secret
		secret = s.DeriveSecret(secret, "path")
	}
	add := make([]nodeKey, len(secrets))
	err = parallel(len(secrets), func(k int) error {
		priv, err := derivePathKey(s, secrets[k])
		if err != nil {
			return err
		}
		if x := fdp[i+k]; !priv.HasPublic(path.Nodes[i+k].EncryptionKey) {
			return fmt.Errorf("%w: node %d", ErrPublicKeyMismatch, x)
		}
		add[k] = nodeKey{fdp[i+k], priv}
		return nil
	})
	for _, sec := range secrets {
		clear(sec)
	}
	if err != nil {
		return nil, err
	}
	out.CommitSecret = secret
	senderNode := sender.Node()
	out.Private = p.with(func(x treemath.NodeIndex) bool {
		// Keys of nodes on the sender's direct path are outdated (§7.5),
		// and so are those of nodes the commit's proposals blanked (an
		// Update or Remove below them) or truncated away.
		return !x.IsLeaf() && (treemath.InSubtree(senderNode, x) || t.IsBlank(x))
	}, add)
	return out, nil
}
