package suite

import (
	"crypto/hpke"
	"crypto/rand"
	"fmt"

	circlhpke "github.com/cloudflare/circl/hpke"
)

// HPKE's secret export (RFC 9180 §5.3) is what external commits use to
// agree on an init secret (RFC 9420 §8.3): the joiner runs SetupBaseS
// against the group's external public key and exports; the group runs
// SetupBaseR with the external private key and exports the same value.
// MLS uses an empty info string there.

// ExportSender sets up an HPKE base-mode sender context to pub with an empty
// info and returns the encapsulated key and Export(exporterContext, length).
func (s *Suite) ExportSender(pub []byte, exporterContext string, length int) (kemOutput, secret []byte, err error) {
	return s.kem.exportSender(s, pub, exporterContext, length)
}

// ExportReceiver is the receiving side of ExportSender.
func (s *Suite) ExportReceiver(priv, kemOutput []byte, exporterContext string, length int) ([]byte, error) {
	return s.kem.exportReceiver(s, priv, kemOutput, exporterContext, length)
}

func (k stdKEM) exportSender(s *Suite, pub []byte, exporterContext string, length int) ([]byte, []byte, error) {
	pk, err := k.scheme().NewPublicKey(pub)
	if err != nil {
		return nil, nil, fmt.Errorf("hpke public key: %w", err)
	}
	enc, sender, err := hpke.NewSender(pk, hpkeKDF(s), hpkeAEAD(s), nil)
	if err != nil {
		return nil, nil, fmt.Errorf("hpke setup: %w", err)
	}
	secret, err := sender.Export(exporterContext, length)
	if err != nil {
		return nil, nil, fmt.Errorf("hpke export: %w", err)
	}
	return enc, secret, nil
}

func (k stdKEM) exportReceiver(s *Suite, priv, kemOutput []byte, exporterContext string, length int) ([]byte, error) {
	sk, err := k.privateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("hpke private key: %w", err)
	}
	r, err := hpke.NewRecipient(kemOutput, sk, hpkeKDF(s), hpkeAEAD(s), nil)
	if err != nil {
		return nil, fmt.Errorf("%w: hpke setup: %v", ErrDecrypt, err)
	}
	secret, err := r.Export(exporterContext, length)
	if err != nil {
		return nil, fmt.Errorf("hpke export: %w", err)
	}
	return secret, nil
}

func (k x448KEM) exportSender(s *Suite, pub []byte, exporterContext string, length int) ([]byte, []byte, error) {
	pk, err := circlhpke.KEM_X448_HKDF_SHA512.Scheme().UnmarshalBinaryPublicKey(pub)
	if err != nil {
		return nil, nil, fmt.Errorf("hpke public key: %w", err)
	}
	snd, err := k.circlSuite(s).NewSender(pk, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("hpke setup: %w", err)
	}
	enc, sealer, err := snd.Setup(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("hpke setup: %w", err)
	}
	return enc, sealer.Export([]byte(exporterContext), uint(length)), nil
}

func (k x448KEM) exportReceiver(s *Suite, priv, kemOutput []byte, exporterContext string, length int) ([]byte, error) {
	sk, err := circlhpke.KEM_X448_HKDF_SHA512.Scheme().UnmarshalBinaryPrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("hpke private key: %w", err)
	}
	rcv, err := k.circlSuite(s).NewReceiver(sk, nil)
	if err != nil {
		return nil, fmt.Errorf("hpke setup: %w", err)
	}
	opener, err := rcv.Setup(kemOutput)
	if err != nil {
		return nil, fmt.Errorf("%w: hpke setup: %v", ErrDecrypt, err)
	}
	return opener.Export([]byte(exporterContext), uint(length)), nil
}
