package message

import "github.com/mls-appservice/mls-appservice/mls/codec"

// ExtensionType is a value from the IANA "MLS Extension Types" registry.
type ExtensionType uint16

// The extension types of RFC 9420 §17.3.
const (
	ExtensionApplicationID        ExtensionType = 0x0001
	ExtensionRatchetTree          ExtensionType = 0x0002
	ExtensionRequiredCapabilities ExtensionType = 0x0003
	ExtensionExternalPub          ExtensionType = 0x0004
	ExtensionExternalSenders      ExtensionType = 0x0005
)

// Extension is an extension as carried on the wire. Its data is kept
// opaque here; the packages that act on an extension type decode it.
type Extension struct {
	Type ExtensionType
	Data []byte
}

// MarshalMLS implements codec.Marshaler.
func (e *Extension) MarshalMLS(w *codec.Writer) {
	w.Uint16(uint16(e.Type))
	w.Opaque(e.Data)
}

// UnmarshalMLS implements codec.Unmarshaler.
func (e *Extension) UnmarshalMLS(r *codec.Reader) {
	e.Type = ExtensionType(r.Uint16("extension.extension_type"))
	e.Data = r.Opaque("extension.extension_data")
}

func marshalExtensions(w *codec.Writer, exts []Extension) {
	w.Vector(func(w *codec.Writer) {
		for i := range exts {
			exts[i].MarshalMLS(w)
		}
	})
}

// unmarshalExtensions decodes an Extension vector. It always returns a
// non-nil slice so that an empty list round-trips like any other.
func unmarshalExtensions(r *codec.Reader, field string) []Extension {
	exts := []Extension{}
	r.Each(field, func(r *codec.Reader) {
		var e Extension
		e.UnmarshalMLS(r)
		exts = append(exts, e)
	})
	return exts
}

// FindExtension returns the first extension of the given type, if any.
func FindExtension(exts []Extension, t ExtensionType) (*Extension, bool) {
	for i := range exts {
		if exts[i].Type == t {
			return &exts[i], true
		}
	}
	return nil, false
}
