package secrettree

import (
	"fmt"
	"math"

	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// maxGeneration is the last generation a uint32 can name.
const maxGeneration = math.MaxUint32

// ratchet is one hash ratchet: the secret for generation next, and the keys
// of earlier generations that were skipped but not yet used.
type ratchet struct {
	// next is the generation secret belongs to. It is wider than a
	// generation so that it can say "all 2^32 generations are used".
	next    uint64
	secret  []byte
	skipped []Key // ascending by generation
}

func (r *ratchet) clone() ratchet {
	c := ratchet{next: r.next, secret: clone(r.secret)}
	if r.skipped != nil {
		c.skipped = make([]Key, len(r.skipped))
		for i, k := range r.skipped {
			c.skipped[i] = Key{Generation: k.Generation, Key: clone(k.Key), Nonce: clone(k.Nonce)}
		}
	}
	return c
}

func (r *ratchet) zero() {
	clear(r.secret)
	for i := range r.skipped {
		r.skipped[i].zero()
	}
	r.skipped = nil
}

// derive returns the key of generation gen from its ratchet secret.
func derive(s *suite.Suite, secret []byte, gen uint32) Key {
	return Key{
		Generation: gen,
		Key:        s.DeriveTreeSecret(secret, "key", gen, s.KeySize()),
		Nonce:      s.DeriveTreeSecret(secret, "nonce", gen, s.NonceSize()),
	}
}

// advance returns the secret of generation gen+1, zeroing secret.
func advance(s *suite.Suite, secret []byte, gen uint32) []byte {
	next := s.DeriveTreeSecret(secret, "secret", gen, s.HashSize())
	clear(secret)
	return next
}

// step consumes generation next and returns its key. The caller checks that
// next is a valid generation.
func (r *ratchet) step(s *suite.Suite) Key {
	gen := uint32(r.next)
	k := derive(s, r.secret, gen)
	r.secret = advance(s, r.secret, gen)
	r.next++
	return k
}

func (r *ratchet) receive(s *suite.Suite, opts Options, gen uint32, use func(Key) error) error {
	if uint64(gen) < r.next {
		for i := range r.skipped {
			if r.skipped[i].Generation != gen {
				continue
			}
			if err := use(r.skipped[i]); err != nil {
				return err
			}
			r.skipped[i].zero()
			r.skipped = append(r.skipped[:i], r.skipped[i+1:]...)
			return nil
		}
		return ErrGenerationConsumed
	}
	if uint64(gen)-r.next > uint64(opts.MaxForward) {
		return fmt.Errorf("%w: next is %d, limit %d ahead", ErrGenerationTooFar, r.next, opts.MaxForward)
	}

	// Derive on the side and commit only if use succeeds. Keys of skipped
	// generations are derived only for those that would be retained.
	secret := clone(r.secret)
	var fresh []Key
	keepFrom := uint64(0)
	if uint64(gen) > uint64(opts.MaxRetained) {
		keepFrom = uint64(gen) - uint64(opts.MaxRetained)
	}
	for j := r.next; j < uint64(gen); j++ {
		if j >= keepFrom {
			fresh = append(fresh, derive(s, secret, uint32(j)))
		}
		secret = advance(s, secret, uint32(j))
	}
	k := derive(s, secret, gen)
	defer k.zero()
	if err := use(k); err != nil {
		clear(secret)
		for i := range fresh {
			fresh[i].zero()
		}
		return err
	}
	clear(r.secret)
	r.secret = advance(s, secret, gen)
	r.next = uint64(gen) + 1
	r.skipped = append(r.skipped, fresh...)
	if drop := len(r.skipped) - opts.MaxRetained; drop > 0 {
		for i := range drop {
			r.skipped[i].zero()
		}
		r.skipped = append(r.skipped[:0], r.skipped[drop:]...)
	}
	return nil
}
