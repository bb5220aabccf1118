package keys

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// TestStoredTemplate: a template is stored without the device's
// credential and read back with it, the same KeyPackage template as made;
// one stored with the credential inline (before) reads the same; one
// whose credential is another device's is refused.
func TestStoredTemplate(t *testing.T) {
	m, _ := offlineManager(t, 1, 5, 1, 24*time.Hour)
	s, _ := suite.Lookup(1)
	a := newTestDevice(t, s, "@a:hs", "A")
	tmpl, _, err := m.keyPackageTemplate(a.dev, a.sig)
	if err != nil {
		t.Fatal(err)
	}
	inline := codec.Marshal(tmpl)
	stored := encodeTemplate(tmpl, a.dev)
	if len(stored) != len(inline)-len(a.dev.Credential().Identity) {
		t.Fatalf("stored template of %d bytes, %d inline: the credential is not left out", len(stored), len(inline))
	}
	if bytes.Contains(stored, a.dev.Credential().Identity) {
		t.Fatal("stored template holds the credential")
	}
	for name, b := range map[string][]byte{"stored": stored, "inline": inline} {
		got, err := decodeTemplate(b, a.dev)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(codec.Marshal(got), inline) {
			t.Fatalf("%s template read back differs", name)
		}
	}
	b := newTestDevice(t, s, "@b:hs", "B")
	if _, err := decodeTemplate(inline, b.dev); err == nil || !strings.Contains(err.Error(), "is not @b:hs") {
		t.Fatalf("another device's template read as b's: %v", err)
	}
	other := *tmpl
	other.LeafNode.Credential = message.BasicCredential([]byte("@c:hs|C"))
	if got := encodeTemplate(&other, a.dev); !bytes.Equal(got, codec.Marshal(&other)) {
		t.Fatal("a template of another credential stored without it")
	}
}
