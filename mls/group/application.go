package group

import (
	"fmt"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/message"
)

// Protect encrypts an application message from us with the given
// authenticated data, as a PrivateMessage (§6.3). It consumes the next
// generation of our application ratchet in the shared secret tree.
//
// Once we have seen a valid proposal in the epoch (received or our own),
// Protect fails with ErrPendingProposals: §12.4 requires a commit first,
// so that, for instance, a member whose removal was proposed reads
// nothing more.
func (g *Group) Protect(plaintext, authData []byte) ([]byte, error) {
	if err := g.requireMember(); err != nil {
		return nil, err
	}
	if g.holdsValidProposal() {
		return nil, fmt.Errorf("protect: %w (%d cached)", ErrPendingProposals, g.PendingProposals())
	}
	c := g.content(message.ContentApplication, authData)
	c.ApplicationData = plaintext
	m, _, err := g.frame(&c, message.WireFormatPrivateMessage)
	if err != nil {
		return nil, fmt.Errorf("protect: %w", err)
	}
	return codec.Marshal(m), nil
}

// holdsValidProposal reports whether the epoch's cache holds a proposal
// that is valid on its own, as if committed alone by a member it does not
// concern. Proposals that could never be committed (a Remove of a blank
// leaf, an Add of a bad KeyPackage) do not count: §12.4 speaks of valid
// proposals. Each proposal's verdict is kept for the epoch, since the
// check may verify a KeyPackage signature.
func (g *Group) holdsValidProposal() bool {
	l := g.local
	l.mu.Lock()
	cached := append([]cachedProposal(nil), l.proposals...)
	l.mu.Unlock()
	bystander := message.MemberSender(^uint32(0))
	for _, c := range cached {
		l.mu.Lock()
		valid, known := l.valid[string(c.ref)]
		l.mu.Unlock()
		if !known {
			_, err := g.pub.stage([]resolved{{proposal: c.proposal, sender: c.sender, ref: c.ref}}, bystander, &g.cfg, stageOptions{})
			valid = err == nil
			l.mu.Lock()
			if l.valid == nil {
				l.valid = map[string]bool{}
			}
			l.valid[string(c.ref)] = valid
			l.mu.Unlock()
		}
		if valid {
			return true
		}
	}
	return false
}
