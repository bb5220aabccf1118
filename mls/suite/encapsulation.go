package suite

import "fmt"

// An Encapsulation is the first half of one HPKE SealBase to a public key
// (RFC 9180 §5.1): the KEM's Encap, a fresh ephemeral key and its
// Diffie-Hellman with the recipient's, which is nearly all of a seal's
// cost and does not depend on what will be sealed. A committer
// encapsulates to every node of its copath while it still builds the path
// whose tree hash the sealing context holds (treekem.Generate).
//
// For a KEM whose Encap cannot be taken apart from the seal here (the NIST
// curves' and X448's, whose HPKE comes from other packages), Encapsulate
// does nothing and EncryptWithLabel does the whole seal.
//
// An Encapsulation seals once: its shared secret is erased by
// EncryptWithLabel, and a second call fails.
type Encapsulation struct {
	key          *HPKEPublicKey
	split        splitKEM // nil: the whole seal is left to EncryptWithLabel
	sharedSecret []byte
	enc          []byte
	used         bool
}

// splitKEM is a public key whose seal is Encap followed by the key
// schedule and AEAD under an info's key schedule context.
type splitKEM interface {
	encap() (sharedSecret, enc []byte, err error)
	sealShared(s *Suite, sharedSecret, ksc, plaintext []byte) (ciphertext []byte, err error)
}

// A SealContext is the HPKE info of seals under one label and context,
// EncryptContext{label, context} (RFC 9420 §5.1.3), with the part of the
// key schedule that depends on the info alone computed once. A commit
// seals every path secret under the same group context, and a Welcome
// every new member's group secrets under the same encrypted GroupInfo,
// which holds the whole ratchet tree: hashed again for each new member,
// it was a third of a commit adding 100 members to a 1,000-member group.
type SealContext struct {
	suite   *Suite
	label   string
	context []byte
	// ksc is keyScheduleContext of the info, for a KEM whose seal is
	// split (splitKEM); nil otherwise.
	ksc []byte
}

// NewSealContext returns the SealContext of label and context. context
// is kept, not copied: it must not change while the SealContext is used.
func (s *Suite) NewSealContext(label string, context []byte) *SealContext {
	c := &SealContext{suite: s, label: label, context: context}
	if _, ok := s.kem.(x25519KEM); ok {
		c.ksc = keyScheduleContext(s, encryptContext(label, context))
	}
	return c
}

// Encapsulate runs the KEM's Encap to k.
func (k *HPKEPublicKey) Encapsulate() (*Encapsulation, error) {
	e := &Encapsulation{key: k}
	split, ok := k.key.(splitKEM)
	if !ok {
		return e, nil
	}
	ss, enc, err := split.encap()
	if err != nil {
		return nil, fmt.Errorf("hpke encap: %w", err)
	}
	e.split, e.sharedSecret, e.enc = split, ss, enc
	return e, nil
}

// EncryptWithLabel completes the seal as HPKEPublicKey.EncryptWithLabel
// would (RFC 9420 §5.1.3).
func (e *Encapsulation) EncryptWithLabel(label string, context, plaintext []byte) (kemOutput, ciphertext []byte, err error) {
	return e.Seal(e.key.suite.NewSealContext(label, context), plaintext)
}

// Seal completes the seal under c, as EncryptWithLabel with c's label and
// context. c must be of the key's suite.
func (e *Encapsulation) Seal(c *SealContext, plaintext []byte) (kemOutput, ciphertext []byte, err error) {
	if e.used {
		return nil, nil, fmt.Errorf("hpke: encapsulation already used")
	}
	if c.suite != e.key.suite {
		return nil, nil, fmt.Errorf("hpke: seal context of %v for a key of %v", c.suite, e.key.suite)
	}
	e.used = true
	if e.split == nil {
		return e.key.EncryptWithLabel(c.label, c.context, plaintext)
	}
	defer clear(e.sharedSecret)
	ct, err := e.split.sealShared(e.key.suite, e.sharedSecret, c.ksc, plaintext)
	if err != nil {
		return nil, nil, err
	}
	return e.enc, ct, nil
}

// Discard erases the Encapsulation's shared secret, sealing nothing: for
// the rest of a batch abandoned midway. A used or discarded Encapsulation
// is left as it is.
func (e *Encapsulation) Discard() {
	e.used = true
	clear(e.sharedSecret)
}

// EncapsulateAll runs Encapsulate to each of keys as one batch, in which
// the X25519 Encaps share one field inversion and run their ladders eight
// at a time where the CPU allows (ladder8.go); errs[i] is keys[i]'s error,
// and one key's error leaves the others' Encapsulations good.
func EncapsulateAll(keys []*HPKEPublicKey) (encs []*Encapsulation, errs []error) {
	encs, errs = make([]*Encapsulation, len(keys)), make([]error, len(keys))
	var pkRs [][]byte
	var at []int
	for i, k := range keys {
		x, ok := k.key.(x25519Public)
		if !ok {
			encs[i], errs[i] = k.Encapsulate()
			continue
		}
		pkRs, at = append(pkRs, x.pub), append(at, i)
	}
	batch := startEncaps(pkRs)
	finishEncaps(batch)
	for j, p := range batch {
		i := at[j]
		if p.err != nil {
			errs[i] = fmt.Errorf("hpke encap: %w", p.err)
			continue
		}
		encs[i] = &Encapsulation{key: keys[i], split: keys[i].key.(x25519Public), sharedSecret: p.sharedSecret, enc: p.enc}
	}
	return encs, errs
}

// DecryptAllWithLabel runs DecryptWithLabel (RFC 9420 §5.1.3) under c's
// label and context for each i, with keys[i], kemOutputs[i] and
// ciphertexts[i], as one batch: the X25519 Decaps run their ladders eight
// at a time where the CPU allows and share one field inversion, as
// EncapsulateAll's Encaps do. A commit processed for many members of ours
// decrypts a path secret for each. out[i] is the plaintext, errs[i] its
// error (wrapping ErrDecrypt where the ciphertext does not open); one
// failure leaves the others good.
func DecryptAllWithLabel(c *SealContext, keys []*HPKEPrivateKey, kemOutputs, ciphertexts [][]byte) (out [][]byte, errs []error) {
	out, errs = make([][]byte, len(keys)), make([]error, len(keys))
	var batch []*x25519Private
	var encs, cts [][]byte
	var at []int
	for i, k := range keys {
		x, ok := k.key.(*x25519Private)
		switch {
		case k.suite != c.suite:
			errs[i] = fmt.Errorf("hpke: seal context of %v for a key of %v", c.suite, k.suite)
		case !ok:
			out[i], errs[i] = k.DecryptWithLabel(c.label, c.context, kemOutputs[i], ciphertexts[i])
		default:
			batch, encs, cts, at = append(batch, x), append(encs, kemOutputs[i]), append(cts, ciphertexts[i]), append(at, i)
		}
	}
	if len(batch) > 0 {
		got, gotErrs := openAll(c.suite, c.ksc, batch, encs, cts)
		for j, i := range at {
			out[i], errs[i] = got[j], gotErrs[j]
		}
	}
	return out, errs
}
