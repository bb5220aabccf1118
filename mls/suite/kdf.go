package suite

import (
	"crypto"
	"hash"
	"sync"
)

// kdf computes HMAC (RFC 2104), HKDF-Extract and HKDF-Expand (RFC 5869)
// over one hash function. crypto/hmac and crypto/hkdf allocate two hash
// states and their pads on every call, and the key schedule, the secret
// tree, every path secret and every HPKE operation call them: a few dozen
// times per processed commit, a fifth of the memory it allocates. A kdf
// reuses its working states instead.
type kdf struct {
	hash   crypto.Hash
	states sync.Pool // of *macState
}

// The suites' hash functions; a suite and the X25519 KEM share them.
var (
	kdfSHA256 = newKDF(crypto.SHA256)
	kdfSHA384 = newKDF(crypto.SHA384)
	kdfSHA512 = newKDF(crypto.SHA512)
)

func newKDF(h crypto.Hash) *kdf {
	k := &kdf{hash: h}
	k.states.New = func() any {
		inner := h.New()
		return &macState{inner: inner, outer: h.New(), pad: make([]byte, inner.BlockSize())}
	}
	return k
}

func kdfFor(h crypto.Hash) *kdf {
	switch h {
	case crypto.SHA256:
		return kdfSHA256
	case crypto.SHA384:
		return kdfSHA384
	case crypto.SHA512:
		return kdfSHA512
	}
	panic("suite: no KDF for hash " + h.String())
}

// macState is one HMAC computation's working state.
type macState struct {
	inner, outer hash.Hash
	pad          []byte // the key, padded to a block and masked
	sum          []byte // the inner hash; in Expand, T(i-1)
}

const (
	ipad = 0x36
	opad = 0x5c
)

// start keys the inner hash: H((K ^ ipad) || ...), with K hashed first if
// it is longer than a block.
func (m *macState) start(key []byte) {
	if len(key) > len(m.pad) {
		m.outer.Reset()
		m.outer.Write(key)
		m.sum = m.outer.Sum(m.sum[:0])
		key = m.sum
	}
	clear(m.pad)
	copy(m.pad, key)
	for i := range m.pad {
		m.pad[i] ^= ipad
	}
	m.inner.Reset()
	m.inner.Write(m.pad)
}

// finish appends H((K ^ opad) || inner) to out.
func (m *macState) finish(out []byte) []byte {
	m.sum = m.inner.Sum(m.sum[:0])
	for i := range m.pad {
		m.pad[i] ^= ipad ^ opad
	}
	m.outer.Reset()
	m.outer.Write(m.pad)
	m.outer.Write(m.sum)
	return m.outer.Sum(out)
}

func (k *kdf) get() *macState { return k.states.Get().(*macState) }

// put returns m to the pool without the key material it held.
func (k *kdf) put(m *macState) {
	clear(m.pad)
	clear(m.sum)
	k.states.Put(m)
}

// mac returns HMAC(key, data).
func (k *kdf) mac(key, data []byte) []byte {
	m := k.get()
	defer k.put(m)
	m.start(key)
	m.inner.Write(data)
	return m.finish(make([]byte, 0, k.hash.Size()))
}

// extract is HKDF-Extract(salt, ikm): HMAC(salt, ikm). An empty salt is
// the same key as HashLen zero bytes, since HMAC pads its key with zeros.
func (k *kdf) extract(salt, ikm []byte) []byte { return k.mac(salt, ikm) }

// expand is HKDF-Expand(prk, info, length). length must be at most
// 255·HashLen; the protocol's lengths are fixed far below that.
func (k *kdf) expand(prk, info []byte, length int) []byte {
	n := k.hash.Size()
	if length > 255*n {
		panic("suite: hkdf expand length too large")
	}
	out := make([]byte, 0, (length+n-1)/n*n)
	m := k.get()
	defer k.put(m)
	var prev []byte
	for i := byte(1); len(out) < length; i++ {
		m.start(prk)
		m.inner.Write(prev)
		m.inner.Write(info)
		m.inner.Write([]byte{i})
		out = m.finish(out)
		prev = out[len(out)-n:]
	}
	return out[:length:length]
}
