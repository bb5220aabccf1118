package keys

import (
	"fmt"
	"testing"
	"time"

	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// BenchmarkKeyPackage measures making one sealed last-resort KeyPackage
// (keys, signatures, encoding, sealing); BenchmarkDeviceStock a new
// device's whole stock at the default keys.stock of 50 (one batch), plus
// its last-resort KeyPackage, signature key and signed device keys: the
// CPU cost of EnsureIdentity without the database.
func BenchmarkKeyPackage(b *testing.B) {
	for _, id := range []suite.ID{1, 2, 3} {
		m, dev, sig := benchManager(b, id)
		b.Run(fmt.Sprintf("suite=%d", id), func(b *testing.B) {
			for b.Loop() {
				if _, err := m.makeLastResort(dev, sig); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDeviceStock(b *testing.B) {
	for _, id := range []suite.ID{1, 2, 3} {
		m, dev, _ := benchManager(b, id)
		b.Run(fmt.Sprintf("suite=%d/stock=50", id), func(b *testing.B) {
			for b.Loop() {
				sig, err := m.suite.GenerateSignatureKey()
				if err != nil {
					b.Fatal(err)
				}
				if _, err := buildDeviceKeys(dev, sig); err != nil {
					b.Fatal(err)
				}
				if _, err := m.makeBatch(dev, sig, 50); err != nil {
					b.Fatal(err)
				}
				if _, err := m.makeLastResort(dev, sig); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDeriveFromBatch measures deriving one KeyPackage of a stored
// batch again (open the sealed PPRF, evaluate, derive keys and
// signatures): what a Welcome's ref costs a device when it matches one of
// the batch's ref prefixes, by chance or not (refPrefixLen).
func BenchmarkDeriveFromBatch(b *testing.B) {
	for _, id := range []suite.ID{1, 2, 3} {
		m, dev, sig := benchManager(b, id)
		batch, err := m.makeBatch(dev, sig, 50)
		if err != nil {
			b.Fatal(err)
		}
		sealed, err := m.cfg.Sealer.Seal(purposeKeyPackageBatch, batchRow(dev, "txn"), batch.state)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("suite=%d/stock=50", id), func(b *testing.B) {
			for b.Loop() {
				hit, err := m.deriveFromBatch(dev, sig, "txn", batch.template, sealed, 17)
				if err != nil || hit == nil {
					b.Fatal(err)
				}
				hit.wipe()
			}
		})
	}
}

func benchManager(b *testing.B, id suite.ID) (*Manager, Device, *suite.SignaturePrivateKey) {
	m, _ := offlineManager(b, id, 50, 20, 90*24*time.Hour)
	sig, _ := m.suite.GenerateSignatureKey()
	return m, Device{UserID: "@mls_bench:localhost", DeviceID: "BENCHDEVICE"}, sig
}
