package client

import (
	"crypto/sha256"
	"fmt"
	"sync"

	"github.com/mls-appservice/mls-appservice/mls/group"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// member is who holds a state: the basic credential's identity, the
// signature key (the group layer keeps it private, but ReInit and
// branching need it for the successor's KeyPackage), the handshake wire
// format and the PSKs, shared by every state of the member's lineage.
type member struct {
	identity []byte
	suite    suite.ID
	sigKey   *suite.SignaturePrivateKey
	encrypt  bool
	psks     *group.PSKStore
}

// pastEpochs is how many past epochs' secret trees a member keeps: the
// harness's out_of_order_across_epochs scenario reads messages of the
// epoch before a commit after it.
const pastEpochs = 3

func (m *member) config() group.Config {
	cfg := group.Config{PSKs: m.psks, PastEpochs: pastEpochs}
	if m.encrypt {
		cfg.HandshakeWireFormat = message.WireFormatPrivateMessage
	}
	return cfg
}

// keyPackage makes a fresh KeyPackage for m in suite id, reusing the
// signature key when the suite stays the same.
func (m *member) keyPackage(id suite.ID) (*group.KeyPackageBundle, error) {
	sigKey := m.sigKey
	if id != m.suite || sigKey == nil {
		s, err := suite.Lookup(id)
		if err != nil {
			return nil, err
		}
		if sigKey, err = s.GenerateSignatureKey(); err != nil {
			return nil, err
		}
	}
	return group.NewKeyPackage(message.BasicCredential(m.identity), sigKey, nil)
}

// state is one group state behind a state_id. The group value is never
// replaced; own and pending describe what this member did in the epoch.
type state struct {
	g  *group.Group
	me *member

	mu sync.Mutex
	// own maps digests of the proposal messages we sent in this epoch to
	// their ProposalRefs: the runner hands them back with the commit, and
	// a PrivateMessage of our own cannot be decrypted by us (its key is
	// consumed).
	own map[[32]byte][]byte
	// pending is the last commit made from this state, not yet adopted.
	pending *group.PendingCommit
}

func (s *state) markOwn(msg, ref []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.own[sha256.Sum256(msg)] = ref
}

// ownRef returns the ProposalRef of a proposal message we sent.
func (s *state) ownRef(msg []byte) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ref, ok := s.own[sha256.Sum256(msg)]
	return ref, ok
}

// transaction is a KeyPackage waiting for a Welcome (or a new-member
// proposal waiting for its commit), with the PSKs stored for the join.
type transaction struct {
	bundle *group.KeyPackageBundle
	me     *member
}

// suspended is a group whose last commit carried a ReInit, together with
// our KeyPackage for its successor.
type suspended struct {
	g      *group.Group
	bundle *group.KeyPackageBundle
	me     *member
}

// signer is an external sender (RFC 9420 §12.1.8.1).
type signer struct {
	suite  suite.ID
	sigKey *suite.SignaturePrivateKey
}

// Store maps the handles handed to the runner to values. Handles share one
// counter, so StorePSK can tell a state from a transaction by its id.
type Store struct {
	mu           sync.Mutex
	next         uint32
	states       map[uint32]*state
	transactions map[uint32]*transaction
	suspended    map[uint32]*suspended
	signers      map[uint32]*signer
}

// NewStore returns an empty store.
func NewStore() *Store {
	return &Store{
		states:       map[uint32]*state{},
		transactions: map[uint32]*transaction{},
		suspended:    map[uint32]*suspended{},
		signers:      map[uint32]*signer{},
	}
}

func (st *Store) id() uint32 {
	st.next++
	return st.next
}

// put stores v under a fresh handle in m, one of the store's maps.
func put[T any](st *Store, m map[uint32]*T, v *T) uint32 {
	st.mu.Lock()
	defer st.mu.Unlock()
	id := st.id()
	m[id] = v
	return id
}

func (st *Store) putState(g *group.Group, me *member) uint32 {
	return put(st, st.states, &state{g: g, me: me, own: map[[32]byte][]byte{}})
}
func (st *Store) putTransaction(t *transaction) uint32 { return put(st, st.transactions, t) }
func (st *Store) putSuspended(s *suspended) uint32     { return put(st, st.suspended, s) }
func (st *Store) putSigner(s *signer) uint32           { return put(st, st.signers, s) }

func lookup[T any](st *Store, m map[uint32]*T, id uint32, kind string) (*T, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	v, ok := m[id]
	if !ok {
		return nil, fmt.Errorf("%w: %s %d", errUnknownHandle, kind, id)
	}
	return v, nil
}

func (st *Store) state(id uint32) (*state, error) { return lookup(st, st.states, id, "state") }
func (st *Store) transaction(id uint32) (*transaction, error) {
	return lookup(st, st.transactions, id, "transaction")
}
func (st *Store) suspendedGroup(id uint32) (*suspended, error) {
	return lookup(st, st.suspended, id, "reinit")
}
func (st *Store) signer(id uint32) (*signer, error) { return lookup(st, st.signers, id, "signer") }

// psks returns the PSK store of a state or transaction handle.
func (st *Store) psks(id uint32) (*group.PSKStore, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if s, ok := st.states[id]; ok {
		return s.me.psks, nil
	}
	if t, ok := st.transactions[id]; ok {
		return t.me.psks, nil
	}
	return nil, fmt.Errorf("%w: state or transaction %d", errUnknownHandle, id)
}

// Free drops whatever id names. Freeing an unknown id is not an error:
// the runner frees the handles of removed members too.
func (st *Store) Free(id uint32) {
	st.mu.Lock()
	defer st.mu.Unlock()
	delete(st.states, id)
	delete(st.transactions, id)
	delete(st.suspended, id)
	delete(st.signers, id)
}

// Len returns the number of handles held, for tests of Free.
func (st *Store) Len() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.states) + len(st.transactions) + len(st.suspended) + len(st.signers)
}
