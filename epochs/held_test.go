package epochs

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/codec"
)

// TestHeldEpochForms: holders that are members go as a bitmap over the
// members and come back equal; a holder that is not a member makes them a
// list; malformed bitmaps and forms are refused.
func TestHeldEpochForms(t *testing.T) {
	var members []Device
	for i := range 11 {
		members = append(members, dev(fmt.Sprintf("@u%02d:x", i), "D"))
	}
	stranger := dev("@z:x", "D")
	for _, tt := range []struct {
		name    string
		holders []Device
		form    uint8
	}{
		{"none", []Device{}, heldBitmap},
		{"some", []Device{members[0], members[7], members[8], members[10]}, heldBitmap},
		{"all", members, heldBitmap},
		{"one not a member", []Device{members[1], stranger}, heldListed},
	} {
		w := codec.NewWriter(0)
		writeHeld(w, tt.holders, members)
		data := w.Bytes()
		if data[0] != tt.form {
			t.Errorf("%s: form %d, want %d", tt.name, data[0], tt.form)
		}
		r := codec.NewReader(data)
		holders, bits := readHeld(r)
		if err := r.Finish("held"); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if bits != nil {
			var err error
			if holders, err = membersHeld(bits, members); err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
		}
		if !slices.Equal(holders, tt.holders) {
			t.Errorf("%s: holders %v, want %v", tt.name, holders, tt.holders)
		}
	}
	for _, tt := range []struct {
		name string
		bits []byte
	}{
		{"short", []byte{1}},
		{"long", []byte{1, 0, 0}},
		{"past the last member", []byte{0, 1 << 3}},
	} {
		if _, err := membersHeld(tt.bits, members); !errors.Is(err, ErrInvalidGraph) {
			t.Errorf("%s: %v, want ErrInvalidGraph", tt.name, err)
		}
	}
	r := codec.NewReader([]byte{2, 0})
	if readHeld(r); !errors.Is(r.Err(), ErrInvalidGraph) {
		t.Errorf("form 2: %v, want ErrInvalidGraph", r.Err())
	}
}

// TestHeldListedThoughMembers: version 4 metadata whose epoch lists
// holders that are all members is refused: the bitmap is its encoding.
func TestHeldListedThoughMembers(t *testing.T) {
	ms, _ := memberRoom(t, 2)
	meta, err := ms[0].marshalMetadata()
	if err != nil {
		t.Fatal(err)
	}
	v3, err := ms[0].marshalMetadataAs(3)
	if err != nil {
		t.Fatal(err)
	}
	// Version 3's graph, each HeldEpoch given form 0, in version 4: the
	// same bytes but the version and a form byte before each list.
	m, err := LoadMember(v3, dmlsConfig, nil)
	if err != nil {
		t.Fatal(err)
	}
	gb, err := m.graph.MarshalBinary(func(st *EpochState) ([]byte, error) {
		w := codec.NewWriter(0)
		w.Uint8(heldListed)
		writeDevices(w, st.holders)
		return w.Bytes(), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	good, err := m.graph.MarshalBinary(func(st *EpochState) ([]byte, error) {
		w := codec.NewWriter(0)
		writeHeld(w, st.holders, nodeMembers(m, st))
		return w.Bytes(), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(meta, good)
	if i < 0 {
		t.Fatal("graph not found in the metadata")
	}
	w := codec.NewWriter(0)
	w.Opaque(gb)
	wg := codec.NewWriter(0)
	wg.Opaque(good)
	start := i - (len(wg.Bytes()) - len(good)) // the graph's length prefix
	bad := slices.Concat(meta[:start], w.Bytes(), meta[i+len(good):])
	if _, err := LoadMember(meta, dmlsConfig, nil); err != nil {
		t.Fatalf("as written: %v", err)
	}
	if _, err := LoadMember(bad, dmlsConfig, nil); !errors.Is(err, ErrInvalidGraph) || !strings.Contains(err.Error(), "listed, though members") {
		t.Fatalf("holders listed though members: %v, want ErrInvalidGraph", err)
	}
}

func nodeMembers(m *Member, st *EpochState) []Device {
	for _, n := range m.graph.nodes {
		if n.State == st {
			return n.Members
		}
	}
	return nil
}
