package group

import (
	"fmt"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/framing"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
	"github.com/mls-appservice/mls-appservice/mls/treekem"
)

// externalInitLabel is the HPKE exporter context of the external init
// secret (§8.3).
const externalInitLabel = "MLS 1.0 external init secret"

// externalInitSender returns kem_output and the init secret for an
// external commit to a group whose external public key is pub.
func externalInitSender(s *suite.Suite, pub []byte) (kemOutput, initSecret []byte, err error) {
	k, err := s.NewHPKEPublicKey(pub)
	if err != nil {
		return nil, nil, fmt.Errorf("external_pub: %w", err)
	}
	kemOutput, initSecret, err = k.ExportSender(externalInitLabel, s.HashSize())
	if err != nil {
		return nil, nil, fmt.Errorf("external_pub: %w", err)
	}
	return kemOutput, initSecret, nil
}

// externalInitSecret recovers the init secret of an external commit from
// its kem_output with the epoch's external private key.
func externalInitSecret(p *Public, kemOutput []byte) ([]byte, error) {
	priv, err := p.epoch.ExternalKey()
	if err != nil {
		return nil, err
	}
	secret, err := priv.ExportReceiver(kemOutput, externalInitLabel, p.suite.HashSize())
	if err != nil {
		return nil, fmt.Errorf("kem_output: %w", err)
	}
	return secret, nil
}

// ExternalJoinOptions are the optional inputs of JoinExternal.
type ExternalJoinOptions struct {
	// RatchetTree is the tree obtained out of band, for a GroupInfo
	// without the ratchet_tree extension.
	RatchetTree message.RatchetTree
	// Resync, if set, removes our previous appearance at leaf ResyncLeaf.
	Resync     bool
	ResyncLeaf uint32
	// PSKs are injected with PreSharedKey proposals; Config.PSKs must
	// hold them.
	PSKs []message.PreSharedKeyID
	// AuthenticatedData is the commit's authenticated_data.
	AuthenticatedData []byte
	// Config is the new state's configuration.
	Config Config
}

// JoinExternal joins the group that gi describes by an external commit
// (§12.4.3.2). gi must carry external_pub. The caller sends
// PendingCommit.Commit and, once the delivery service accepts it, uses
// PendingCommit.State().
func JoinExternal(gi *message.GroupInfo, kp *KeyPackageBundle, o *ExternalJoinOptions) (*PendingCommit, error) {
	if o == nil {
		o = &ExternalJoinOptions{}
	}
	cfg := o.Config
	ctx := gi.GroupContext
	s, err := suite.Lookup(ctx.CipherSuite)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidGroupInfo, err)
	}
	if err := kp.Check(); err != nil {
		return nil, err
	}
	if kp.KeyPackage.CipherSuite != ctx.CipherSuite {
		return nil, fmt.Errorf("%w: key package suite %d, group suite %d", ErrInvalidGroupInfo, kp.KeyPackage.CipherSuite, ctx.CipherSuite)
	}
	t, err := VerifyGroupInfo(gi, o.RatchetTree, cfg)
	if err != nil {
		return nil, err
	}
	if err := leafSupportsExtensions(&kp.KeyPackage.LeafNode, ctx.Extensions); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidGroupInfo, err)
	}
	e, ok := message.FindExtension(gi.Extensions, message.ExtensionExternalPub)
	if !ok {
		return nil, fmt.Errorf("%w: no external_pub", ErrInvalidGroupInfo)
	}
	var xpub message.ExternalPub
	if err := codec.Unmarshal(e.Data, &xpub, "external_pub"); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidGroupInfo, err)
	}
	kemOutput, initSecret, err := externalInitSender(s, xpub.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidGroupInfo, err)
	}
	defer clear(initSecret)

	p := &Public{suite: s, ctx: ctx, ctxBytes: codec.Marshal(&ctx), tree: t,
		interim: framing.InterimTranscriptHash(s, ctx.ConfirmedTranscriptHash, gi.ConfirmationTag)}
	p.epoch.Scheme = cfg.Scheme
	props := []*message.Proposal{{Type: message.ProposalExternalInit, ExternalInit: &message.ExternalInit{KEMOutput: kemOutput}}}
	if o.Resync {
		props = append(props, RemoveProposal(o.ResyncLeaf))
	}
	for _, id := range o.PSKs {
		props = append(props, PSKProposal(id))
	}
	sender := message.Sender{Type: message.SenderNewMemberCommit}
	res := make([]resolved, len(props))
	refs := make([]message.ProposalOrRef, len(props))
	for i, pr := range props {
		res[i] = resolved{proposal: pr, sender: sender}
		refs[i] = message.ProposalOrRef{Type: message.ProposalOrRefProposal, Proposal: pr}
	}
	st, err := p.stage(res, sender, &cfg, stageOptions{})
	if err != nil {
		return nil, err
	}
	leaf := kp.KeyPackage.LeafNode
	me, err := st.tree.AddLeaf(&leaf)
	if err != nil {
		return nil, err
	}
	gen, err := treekem.NewPrivateState(me, kp.EncryptionKey).Generate(st.tree, leaf, kp.SignatureKey, treekem.PathOptions{GroupContext: p.provisionalContext(st)})
	if err != nil {
		return nil, err
	}
	defer gen.Zero()
	content := &message.FramedContent{
		GroupID: ctx.GroupID, Epoch: ctx.Epoch, Sender: sender, AuthenticatedData: nonNil(o.AuthenticatedData),
		ContentType: message.ContentCommit, Commit: &message.Commit{Proposals: refs, Path: gen.Path},
	}
	ac, err := framing.Sign(kp.SignatureKey, message.WireFormatPublicMessage, content, &ctx)
	if err != nil {
		return nil, err
	}
	lookup := func(id *message.PreSharedKeyID) ([]byte, error) {
		if v, ok := cfg.PSKs.lookup(id); ok {
			return v, nil
		}
		return nil, ErrMissingPSK
	}
	adv, err := p.advance(st, ac, gen.CommitSecret, initSecret, nil, lookup)
	if err != nil {
		return nil, err
	}
	defer adv.zero()
	tag, err := adv.derived.Epoch.ConfirmationTag(adv.ctx.ConfirmedTranscriptHash)
	if err != nil {
		return nil, err
	}
	ac.Auth.ConfirmationTag = tag
	pm, err := framing.ProtectPublic(s, ac, &ctx, nil)
	if err != nil {
		return nil, err
	}
	newPub, err := newPublic(s, adv.ctx, st.tree, tag, adv.derived.Epoch, cfg.SecretTree)
	if err != nil {
		return nil, err
	}
	next := New(newPub, NewPrivate(me, kp.SignatureKey, gen.Private), cfg)
	return &PendingCommit{
		Commit: codec.Marshal(&message.MLSMessage{Version: message.MLS10, WireFormat: message.WireFormatPublicMessage, PublicMessage: pm}),
		next:   next,
	}, nil
}
