package epochs

import (
	mathbits "math/bits"

	"github.com/mls-appservice/mls-appservice/mls/codec"
)

// Which of a retained epoch's members are our devices (its holders) is
// stored with the metadata, which every load of a room decodes and every
// save that changes the graph writes (a message sent changes it). As a
// list, 8 epochs of a room of 10,000 of our devices were 2.4 MB of device
// IDs, decoded into 80,000 strings at every load. Since the holders are
// members of the epoch, and the epoch's member list is in the graph
// already, they are stored as a bitmap over it (HeldEpoch, form 1): 1,250
// bytes an epoch there, decoded into no new strings. A holder that is not
// a member, which would be a defect elsewhere, makes the epoch's holders
// stored as a list (form 0), as before version 4.

// Forms of HeldEpoch.
const (
	heldListed = 0
	heldBitmap = 1
)

// writeHeld encodes holders (ascending, unique) of an epoch whose members
// (ascending, unique) are given.
func writeHeld(w *codec.Writer, holders, members []Device) {
	bits, ok := heldBits(holders, members)
	if !ok {
		w.Uint8(heldListed)
		writeDevices(w, holders)
		return
	}
	w.Uint8(heldBitmap)
	w.Opaque(bits)
}

// heldBits returns the bitmap of holders over members (bit i, least
// significant first in byte i/8, for members[i]), or false if a holder is
// not a member.
func heldBits(holders, members []Device) ([]byte, bool) {
	bits := make([]byte, (len(members)+7)/8)
	i := 0
	for _, h := range holders {
		for i < len(members) && members[i].Compare(h) < 0 {
			i++
		}
		if i == len(members) || members[i] != h {
			return nil, false
		}
		bits[i/8] |= 1 << (i % 8)
		i++
	}
	return bits, true
}

// readHeld decodes a HeldEpoch: the holders if listed, or the bitmap to
// resolve against the epoch's members once the graph is decoded
// (membersHeld).
func readHeld(r *codec.Reader) (holders []Device, bits []byte) {
	switch form := r.Uint8("held.form"); {
	case r.Err() != nil:
		return nil, nil
	case form == heldListed:
		return readDevices(r, "held.holders"), nil
	case form == heldBitmap:
		return nil, r.Opaque("held.members_held")
	default:
		r.Fail("held.form", invalid("unknown form %d", form))
		return nil, nil
	}
}

// membersHeld returns the members whose bits are set: bits must be exactly
// as long as members need, with no bit set past the last.
func membersHeld(bits []byte, members []Device) ([]Device, error) {
	if len(bits) != (len(members)+7)/8 {
		return nil, invalid("holders' bitmap of %d bytes for %d members", len(bits), len(members))
	}
	if n := len(members) % 8; n != 0 && bits[len(bits)-1]>>n != 0 {
		return nil, invalid("holders' bitmap names a member past the last")
	}
	n := 0
	for _, b := range bits {
		n += mathbits.OnesCount8(b)
	}
	// Sized first: a room of 10,000 of our devices grew this list append
	// by append for each retained epoch at every load.
	out := make([]Device, 0, n)
	for i, m := range members {
		if bits[i/8]&(1<<(i%8)) != 0 {
			out = append(out, m)
		}
	}
	return out, nil
}
