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

func benchManager(b *testing.B, id suite.ID) (*Manager, Device, *suite.SignaturePrivateKey) {
	m, _ := offlineManager(b, id, 50, 20, 90*24*time.Hour)
	sig, _ := m.suite.GenerateSignatureKey()
	return m, Device{UserID: "@mls_bench:localhost", DeviceID: "BENCHDEVICE"}, sig
}
