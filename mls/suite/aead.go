package suite

import (
	"crypto/aes"
	"crypto/cipher"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"
)

// aeadAlg names an AEAD by its HPKE identifier and key size.
type aeadAlg struct {
	id      uint16 // HPKE AEAD identifier (RFC 9180 §7.3)
	keySize int
}

var (
	aes128GCM        = aeadAlg{id: 0x0001, keySize: 16}
	aes256GCM        = aeadAlg{id: 0x0002, keySize: 32}
	chacha20Poly1305 = aeadAlg{id: 0x0003, keySize: 32}
)

func (a aeadAlg) new(key []byte) (cipher.AEAD, error) {
	if len(key) != a.keySize {
		return nil, fmt.Errorf("aead: key is %d bytes, want %d", len(key), a.keySize)
	}
	if a.id == chacha20Poly1305.id {
		return chacha20poly1305.New(key)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}
