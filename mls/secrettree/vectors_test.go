package secrettree

import (
	"bytes"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/internal/vectors"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

type secretTreeCase struct {
	CipherSuite uint16 `json:"cipher_suite"`
	SenderData  struct {
		SenderDataSecret vectors.Hex `json:"sender_data_secret"`
		Ciphertext       vectors.Hex `json:"ciphertext"`
		Key              vectors.Hex `json:"key"`
		Nonce            vectors.Hex `json:"nonce"`
	} `json:"sender_data"`
	EncryptionSecret vectors.Hex `json:"encryption_secret"`
	Leaves           [][]struct {
		Generation       uint32      `json:"generation"`
		HandshakeKey     vectors.Hex `json:"handshake_key"`
		HandshakeNonce   vectors.Hex `json:"handshake_nonce"`
		ApplicationKey   vectors.Hex `json:"application_key"`
		ApplicationNonce vectors.Hex `json:"application_nonce"`
	} `json:"leaves"`
}

// TestSecretTreeVectors checks every case of secret-tree.json, including
// its sender-data part; a case passes only if all of it does.
func TestSecretTreeVectors(t *testing.T) {
	var cases []secretTreeCase
	vectors.Load(t, "secret-tree.json", &cases)
	passed := 0
	for i, c := range cases {
		if err := checkSecretTreeCase(c); err != "" {
			t.Errorf("case %d (suite %d, %d leaves): %s", i, c.CipherSuite, len(c.Leaves), err)
			continue
		}
		passed++
	}
	vectors.Report(t, "secret-tree.json", passed, len(cases))
}

func checkSecretTreeCase(c secretTreeCase) string {
	s, err := suite.Lookup(suite.ID(c.CipherSuite))
	if err != nil {
		return err.Error()
	}
	key, nonce := SenderDataKey(s, c.SenderData.SenderDataSecret, c.SenderData.Ciphertext)
	if !bytes.Equal(key, c.SenderData.Key) || !bytes.Equal(nonce, c.SenderData.Nonce) {
		return "sender data key/nonce mismatch"
	}
	tree, err := New(s, c.EncryptionSecret, uint32(len(c.Leaves)), Options{})
	if err != nil {
		return err.Error()
	}
	for leaf, gens := range c.Leaves {
		for _, g := range gens {
			for _, want := range []struct {
				kind       RatchetType
				key, nonce []byte
			}{
				{Handshake, g.HandshakeKey, g.HandshakeNonce},
				{Application, g.ApplicationKey, g.ApplicationNonce},
			} {
				var match bool
				err := tree.Receive(uint32(leaf), want.kind, g.Generation, func(k Key) error {
					match = bytes.Equal(k.Key, want.key) && bytes.Equal(k.Nonce, want.nonce)
					return nil
				})
				if err != nil {
					return err.Error()
				}
				if !match {
					return "leaf " + want.kind.String() + " key/nonce mismatch"
				}
			}
		}
	}
	return ""
}
