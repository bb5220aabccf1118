package group

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/internal/vectors"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

type passiveCase struct {
	CipherSuite  uint16 `json:"cipher_suite"`
	ExternalPSKs []struct {
		PSKID vectors.Hex `json:"psk_id"`
		PSK   vectors.Hex `json:"psk"`
	} `json:"external_psks"`
	KeyPackage                vectors.Hex `json:"key_package"`
	SignaturePriv             vectors.Hex `json:"signature_priv"`
	EncryptionPriv            vectors.Hex `json:"encryption_priv"`
	InitPriv                  vectors.Hex `json:"init_priv"`
	Welcome                   vectors.Hex `json:"welcome"`
	RatchetTree               vectors.Hex `json:"ratchet_tree"`
	InitialEpochAuthenticator vectors.Hex `json:"initial_epoch_authenticator"`
	Epochs                    []struct {
		Proposals          []vectors.Hex `json:"proposals"`
		Commit             vectors.Hex   `json:"commit"`
		EpochAuthenticator vectors.Hex   `json:"epoch_authenticator"`
	} `json:"epochs"`
}

func TestPassiveClient(t *testing.T) {
	files := []string{"passive-client-welcome.json", "passive-client-handling-commit.json", "passive-client-random.json"}
	if extra := os.Getenv("MLS_PASSIVE_VECTORS"); extra != "" {
		for _, f := range strings.Split(extra, ":") {
			if f != "" {
				if !filepath.IsAbs(f) && filepath.Base(f) == f {
					f = "./" + f
				}
				files = append(files, f)
			}
		}
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			var cases []passiveCase
			vectors.Load(t, file, &cases)
			passed := 0
			for i := range cases {
				if err := runPassive(&cases[i]); err != nil {
					t.Errorf("case %d (suite %d): %v", i, cases[i].CipherSuite, err)
					continue
				}
				passed++
			}
			vectors.Report(t, file, passed, len(cases))
		})
	}
}

func runPassive(c *passiveCase) error {
	s, err := suite.Lookup(suite.ID(c.CipherSuite))
	if err != nil {
		return err
	}
	m, err := message.ParseMLSMessage(c.KeyPackage)
	if err != nil {
		return err
	}
	if m.KeyPackage == nil {
		return fmt.Errorf("key_package is not a KeyPackage message")
	}
	kp := *m.KeyPackage
	bundle := &KeyPackageBundle{KeyPackage: kp}
	if bundle.SignatureKey, err = s.NewSignaturePrivateKey(c.SignaturePriv); err != nil {
		return err
	}
	if bundle.EncryptionKey, err = s.NewHPKEPrivateKey(c.EncryptionPriv); err != nil {
		return err
	}
	if bundle.InitKey, err = s.NewHPKEPrivateKey(c.InitPriv); err != nil {
		return err
	}
	// The private keys must match the KeyPackage's public keys.
	if err := bundle.Check(); err != nil {
		return err
	}
	psks := NewPSKStore()
	for _, p := range c.ExternalPSKs {
		psks.AddExternal(p.PSKID, p.PSK)
	}
	// The vectors' KeyPackages may have expired since they were made.
	cfg := Config{PSKs: psks, Now: func() time.Time { return time.Time{} }}
	opts := &JoinOptions{Config: cfg}
	if len(c.RatchetTree) > 0 {
		var rt message.RatchetTree
		if err := codec.Unmarshal(c.RatchetTree, &rt, "ratchet_tree"); err != nil {
			return err
		}
		opts.RatchetTree = rt
	}
	g, err := Join(c.Welcome, bundle, opts)
	if err != nil {
		return fmt.Errorf("join: %w", err)
	}
	if !bytes.Equal(g.EpochAuthenticator(), c.InitialEpochAuthenticator) {
		return fmt.Errorf("initial epoch authenticator mismatch")
	}
	for i, e := range c.Epochs {
		for j, p := range e.Proposals {
			if _, err := g.Handle(p); err != nil {
				return fmt.Errorf("epoch %d proposal %d: %w", i, j, err)
			}
		}
		r, err := g.Handle(e.Commit)
		if err != nil {
			return fmt.Errorf("epoch %d commit: %w", i, err)
		}
		if r.Next == nil {
			return fmt.Errorf("epoch %d: removed", i)
		}
		g = r.Next
		if !bytes.Equal(g.EpochAuthenticator(), e.EpochAuthenticator) {
			return fmt.Errorf("epoch %d: epoch authenticator mismatch", i)
		}
	}
	return nil
}
