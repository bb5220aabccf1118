package group

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"sync"

	"github.com/mls-appservice/mls-appservice/mls/keyschedule"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// PSKStore holds pre-shared keys a member can inject (§8.4): external PSKs
// by psk_id, and resumption PSKs of other groups (or of epochs this
// group's state no longer retains) by group ID and epoch. It is safe for
// concurrent use and is meant to be shared by the states of one member.
type PSKStore struct {
	mu         sync.RWMutex
	external   map[string][]byte
	resumption map[string][]byte
}

// NewPSKStore returns an empty store.
func NewPSKStore() *PSKStore {
	return &PSKStore{external: map[string][]byte{}, resumption: map[string][]byte{}}
}

// AddExternal stores the external PSK named id.
func (s *PSKStore) AddExternal(id, secret []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.external[string(id)] = bytes.Clone(secret)
}

// AddResumption stores the resumption_psk of a group's epoch.
func (s *PSKStore) AddResumption(groupID []byte, epoch uint64, secret []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resumption[resumptionKey(groupID, epoch)] = bytes.Clone(secret)
}

// AddResumptionFrom stores the resumption PSK of g's current epoch.
func (s *PSKStore) AddResumptionFrom(g *Group) {
	s.AddResumption(g.GroupID(), g.Epoch(), g.pub.epoch.ResumptionPSK)
}

func resumptionKey(groupID []byte, epoch uint64) string {
	return fmt.Sprintf("%x/%d", groupID, epoch)
}

func (s *PSKStore) lookup(id *message.PreSharedKeyID) ([]byte, bool) {
	if s == nil {
		return nil, false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	var v []byte
	var ok bool
	switch id.Type {
	case message.PSKExternal:
		v, ok = s.external[string(id.ID)]
	case message.PSKResumption:
		v, ok = s.resumption[resumptionKey(id.GroupID, id.Epoch)]
	}
	return v, ok
}

// ExternalPSKID returns the PreSharedKeyID of an external PSK with a fresh
// nonce.
func ExternalPSKID(s *suite.Suite, id []byte) (message.PreSharedKeyID, error) {
	nonce, err := pskNonce(s)
	return message.PreSharedKeyID{Type: message.PSKExternal, ID: bytes.Clone(id), Nonce: nonce}, err
}

// ResumptionPSKID returns the PreSharedKeyID of a resumption PSK with a
// fresh nonce of KDF.Nh bytes of s, the suite of the group the PSK is
// injected into (RFC 9420 §8.4), not necessarily that of the group it
// comes from.
func ResumptionPSKID(s *suite.Suite, usage message.ResumptionPSKUsage, groupID []byte, epoch uint64) (message.PreSharedKeyID, error) {
	nonce, err := pskNonce(s)
	return message.PreSharedKeyID{Type: message.PSKResumption, Usage: usage, GroupID: bytes.Clone(groupID), Epoch: epoch, Nonce: nonce}, err
}

func pskNonce(s *suite.Suite) ([]byte, error) {
	nonce := make([]byte, s.HashSize())
	_, err := rand.Read(nonce)
	return nonce, err
}

// lookupPSK resolves id from g's own retained epochs first, then the store.
func (g *Group) lookupPSK(id *message.PreSharedKeyID) ([]byte, error) {
	if id.Type == message.PSKResumption && bytes.Equal(id.GroupID, g.GroupID()) {
		if v, ok := g.ResumptionPSK(id.Epoch); ok {
			return v, nil
		}
	}
	if v, ok := g.cfg.PSKs.lookup(id); ok {
		return v, nil
	}
	return nil, fmt.Errorf("%w: type %d id %x group %x epoch %d", ErrMissingPSK, id.Type, id.ID, id.GroupID, id.Epoch)
}

// pskSecret chains the PSKs named by ids, resolved by lookup, into
// psk_secret; nil when there are none.
func pskSecret(s *suite.Suite, ids []message.PreSharedKeyID, lookup func(*message.PreSharedKeyID) ([]byte, error)) ([]byte, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	psks := make([]keyschedule.PSK, len(ids))
	for i := range ids {
		v, err := lookup(&ids[i])
		if err != nil {
			return nil, err
		}
		psks[i] = keyschedule.PSK{ID: &ids[i], Secret: v}
	}
	return keyschedule.PSKSecret(s, psks)
}
