package treekem

import (
	"bytes"
	"testing"
)

// FuzzUnmarshalBinary checks that decoding a stored private state never
// panics and that what it accepts round-trips.
func FuzzUnmarshalBinary(f *testing.F) {
	g := newGroup(f, 6)
	for _, st := range g.states {
		data, _ := st.MarshalBinary()
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var st PrivateState
		if st.UnmarshalBinary(data) != nil {
			return
		}
		again, err := st.MarshalBinary()
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("round trip differs: %v", err)
		}
	})
}
