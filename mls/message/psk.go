package message

import (
	"fmt"

	"github.com/mls-appservice/mls-appservice/mls/codec"
)

// PSKType says where a pre-shared key comes from (RFC 9420 §8.4).
type PSKType uint8

// The PSK types of RFC 9420 §8.4.
const (
	PSKExternal   PSKType = 1
	PSKResumption PSKType = 2
)

// ResumptionPSKUsage says why a resumption PSK is used (RFC 9420 §8.4).
// Values outside the three below decode unchanged; whether they are
// acceptable is for the key schedule to decide.
type ResumptionPSKUsage uint8

// The resumption PSK usages of RFC 9420 §8.4.
const (
	ResumptionApplication ResumptionPSKUsage = 1
	ResumptionReInit      ResumptionPSKUsage = 2
	ResumptionBranch      ResumptionPSKUsage = 3
)

// PreSharedKeyID names a pre-shared key (RFC 9420 §8.4). ID is used only
// for external PSKs; Usage, GroupID and Epoch only for resumption PSKs.
type PreSharedKeyID struct {
	Type    PSKType
	ID      []byte // external: psk_id
	Usage   ResumptionPSKUsage
	GroupID []byte // resumption: psk_group_id
	Epoch   uint64 // resumption: psk_epoch
	Nonce   []byte
}

// MarshalMLS implements codec.Marshaler.
func (p *PreSharedKeyID) MarshalMLS(w *codec.Writer) {
	w.Uint8(uint8(p.Type))
	switch p.Type {
	case PSKExternal:
		w.Opaque(p.ID)
	case PSKResumption:
		w.Uint8(uint8(p.Usage))
		w.Opaque(p.GroupID)
		w.Uint64(p.Epoch)
	}
	w.Opaque(p.Nonce)
}

// UnmarshalMLS implements codec.Unmarshaler.
func (p *PreSharedKeyID) UnmarshalMLS(r *codec.Reader) {
	*p = PreSharedKeyID{Type: PSKType(r.Uint8("psk_id.psktype"))}
	switch p.Type {
	case PSKExternal:
		p.ID = r.Opaque("psk_id.psk_id")
	case PSKResumption:
		p.Usage = ResumptionPSKUsage(r.Uint8("psk_id.usage"))
		p.GroupID = r.Opaque("psk_id.psk_group_id")
		p.Epoch = r.Uint64("psk_id.psk_epoch")
	default:
		r.Fail("psk_id.psktype", fmt.Errorf("%w %d", ErrUnknownPSKType, p.Type))
		return
	}
	p.Nonce = r.Opaque("psk_id.psk_nonce")
}
