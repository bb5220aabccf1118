package suite

import (
	"crypto/hpke"
	"fmt"
)

// HPKE's secret export (RFC 9180 §5.3) is what external commits use to
// agree on an init secret (RFC 9420 §8.3): the joiner runs SetupBaseS
// against the group's external public key and exports; the group runs
// SetupBaseR with the external private key and exports the same value.
// MLS uses an empty info string there.

// ExportSender sets up an HPKE base-mode sender context to k with an empty
// info and returns the encapsulated key and Export(exporterContext, length).
func (k *HPKEPublicKey) ExportSender(exporterContext string, length int) (kemOutput, secret []byte, err error) {
	return k.key.exportSender(k.suite, exporterContext, length)
}

// ExportReceiver is the receiving side of ExportSender. A kemOutput that
// does not decapsulate yields an error wrapping ErrDecrypt.
func (k *HPKEPrivateKey) ExportReceiver(kemOutput []byte, exporterContext string, length int) ([]byte, error) {
	return k.key.exportReceiver(k.suite, kemOutput, exporterContext, length)
}

func (k stdPublic) exportSender(s *Suite, exporterContext string, length int) ([]byte, []byte, error) {
	enc, sender, err := hpke.NewSender(k.k, hpkeKDF(s), hpkeAEAD(s), nil)
	if err != nil {
		return nil, nil, fmt.Errorf("hpke setup: %w", err)
	}
	secret, err := sender.Export(exporterContext, length)
	if err != nil {
		return nil, nil, fmt.Errorf("hpke export: %w", err)
	}
	return enc, secret, nil
}

func (k stdPrivate) exportReceiver(s *Suite, kemOutput []byte, exporterContext string, length int) ([]byte, error) {
	r, err := hpke.NewRecipient(kemOutput, k.k, hpkeKDF(s), hpkeAEAD(s), nil)
	if err != nil {
		return nil, fmt.Errorf("%w: hpke setup: %v", ErrDecrypt, err)
	}
	secret, err := r.Export(exporterContext, length)
	if err != nil {
		return nil, fmt.Errorf("hpke export: %w", err)
	}
	return secret, nil
}

func (k x448Public) exportSender(s *Suite, exporterContext string, length int) ([]byte, []byte, error) {
	enc, sealer, err := k.sealer(s, nil)
	if err != nil {
		return nil, nil, err
	}
	return enc, sealer.Export([]byte(exporterContext), uint(length)), nil
}

func (k x448Private) exportReceiver(s *Suite, kemOutput []byte, exporterContext string, length int) ([]byte, error) {
	opener, err := k.opener(s, kemOutput, nil)
	if err != nil {
		return nil, err
	}
	return opener.Export([]byte(exporterContext), uint(length)), nil
}
