package suite

import (
	"bytes"
	"errors"
	"testing"
)

func TestExportAgrees(t *testing.T) {
	for _, s := range All() {
		t.Run(s.String(), func(t *testing.T) {
			priv, err := s.GenerateHPKEKey()
			if err != nil {
				t.Fatal(err)
			}
			enc, sent, err := priv.Public().ExportSender("MLS 1.0 external init secret", s.HashSize())
			if err != nil {
				t.Fatal(err)
			}
			got, err := priv.ExportReceiver(enc, "MLS 1.0 external init secret", s.HashSize())
			if err != nil {
				t.Fatal(err)
			}
			if len(sent) != s.HashSize() || !bytes.Equal(sent, got) {
				t.Fatalf("sender %x, receiver %x", sent, got)
			}
			other, err := priv.ExportReceiver(enc, "another context", s.HashSize())
			if err != nil || bytes.Equal(other, sent) {
				t.Fatalf("another exporter context gave %x, %v", other, err)
			}
			if _, err := priv.ExportReceiver(enc[:len(enc)-1], "x", 8); !errors.Is(err, ErrDecrypt) {
				t.Fatalf("truncated kem output: %v", err)
			}
		})
	}
}
