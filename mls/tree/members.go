package tree

import (
	"slices"

	"github.com/mls-appservice/mls-appservice/mls/message"
)

// memberStats counts the credential types the members use and support, so
// that the credential rules of §7.3 (every member supports a new leaf's
// credential type; a new leaf supports every type in use) need no pass
// over the members. Its slices are never modified: a change returns new
// ones, so clones of a tree share the stats as they share the key index.
// Groups use one or two credential types, so slices beat maps.
type memberStats struct {
	members int
	// inUse counts the leaves with each credential type, in order of
	// first appearance when the tree was built.
	inUse []credentialCount
	// supported counts the leaves whose capabilities list each type (a
	// leaf listing a type twice counts once).
	supported []credentialCount
}

type credentialCount struct {
	typ message.CredentialType
	n   int
}

// with returns the stats after adding (delta 1) or removing (delta -1) the
// member whose leaf is l.
func (s memberStats) with(l *message.LeafNode, delta int) memberStats {
	s.members += delta
	s.inUse = bumpCredential(s.inUse, l.Credential.Type, delta)
	creds := l.Capabilities.Credentials
	for i, ct := range creds {
		if !slices.Contains(creds[:i], ct) {
			s.supported = bumpCredential(s.supported, ct, delta)
		}
	}
	return s
}

// add counts the member whose leaf is l in place. It is only for building
// the stats of a new tree, whose slices no other tree shares yet.
func (s *memberStats) add(l *message.LeafNode) {
	s.members++
	s.inUse = bumpInPlace(s.inUse, l.Credential.Type)
	creds := l.Capabilities.Credentials
	for i, ct := range creds {
		if !slices.Contains(creds[:i], ct) {
			s.supported = bumpInPlace(s.supported, ct)
		}
	}
}

func bumpInPlace(counts []credentialCount, ct message.CredentialType) []credentialCount {
	for i := range counts {
		if counts[i].typ == ct {
			counts[i].n++
			return counts
		}
	}
	return append(counts, credentialCount{ct, 1})
}

// bumpCredential returns a copy of counts with ct's count changed by delta,
// dropping it at zero.
func bumpCredential(counts []credentialCount, ct message.CredentialType, delta int) []credentialCount {
	i := slices.IndexFunc(counts, func(c credentialCount) bool { return c.typ == ct })
	out := make([]credentialCount, len(counts), len(counts)+1)
	copy(out, counts)
	switch {
	case i < 0 && delta > 0:
		out = append(out, credentialCount{ct, delta})
	case i >= 0 && out[i].n+delta > 0:
		out[i].n += delta
	case i >= 0:
		out = slices.Delete(out, i, i+1)
	}
	return out
}

func (s *memberStats) count(counts []credentialCount, ct message.CredentialType) int {
	for _, c := range counts {
		if c.typ == ct {
			return c.n
		}
	}
	return 0
}

// supportedByOthers reports whether every member other than the one whose
// leaf is except (nil for none) lists ct in its capabilities.
func (s *memberStats) supportedByOthers(ct message.CredentialType, except *message.LeafNode) bool {
	members, supporters := s.members, s.count(s.supported, ct)
	if except != nil {
		members--
		if slices.Contains(except.Capabilities.Credentials, ct) {
			supporters--
		}
	}
	return supporters == members
}

// CredentialTypes returns the distinct credential types of the members'
// leaves.
func (t *Tree) CredentialTypes() []message.CredentialType {
	types := make([]message.CredentialType, len(t.stats.inUse))
	for i, c := range t.stats.inUse {
		types[i] = c.typ
	}
	return types
}

// MemberCount returns the number of non-blank leaves.
func (t *Tree) MemberCount() int { return t.stats.members }

// SupportedByAllMembers reports whether every member's capabilities list
// credential type ct, as a new member's credential type requires (§7.3).
func (t *Tree) SupportedByAllMembers(ct message.CredentialType) bool {
	return t.stats.supportedByOthers(ct, nil)
}
