package keyschedule

import (
	"fmt"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/internal/stored"
)

// formatV1 is the first storage format of an Epoch:
//
//	struct {
//	    uint8 format = 1;
//	    CipherSuite cipher_suite;
//	    uint8 init_scheme;
//	    opaque id<V>;
//	    opaque sender_data_secret<V>;
//	    opaque encryption_secret<V>;
//	    opaque exporter_secret<V>;
//	    opaque external_secret<V>;
//	    opaque confirmation_key<V>;
//	    opaque membership_key<V>;
//	    opaque resumption_psk<V>;
//	    opaque epoch_authenticator<V>;
//	    opaque init_secret<V>;
//	} EpochState;
//
// A later format gets a new number; decoders keep reading the old ones,
// since stored state outlives binaries.
const formatV1 = 1

var fieldNames = [...]string{
	"epoch.id", "epoch.sender_data_secret", "epoch.encryption_secret",
	"epoch.exporter_secret", "epoch.external_secret", "epoch.confirmation_key",
	"epoch.membership_key", "epoch.resumption_psk", "epoch.epoch_authenticator",
	"epoch.init_secret",
}

// MarshalMLS implements codec.Marshaler with the storage format.
func (e *Epoch) MarshalMLS(w *codec.Writer) { e.marshal(w, true) }

// UnmarshalMLS implements codec.Unmarshaler. Besides the syntax it checks
// that the suite and scheme are known and that every secret has the length
// they imply, so that a decoded Epoch is safe to use.
func (e *Epoch) UnmarshalMLS(r *codec.Reader) { e.unmarshal(r, true) }

// marshal writes EpochState, or EpochSecrets when withInit is false.
func (e *Epoch) marshal(w *codec.Writer, withInit bool) {
	stored.WriteHeader(w, formatV1, e.Suite)
	w.Uint8(uint8(e.Scheme))
	for _, f := range e.fields() {
		if f == &e.InitSecret && !withInit {
			continue
		}
		w.Opaque(*f)
	}
}

func (e *Epoch) unmarshal(r *codec.Reader, withInit bool) {
	s := stored.ReadHeader(r, "epoch", formatV1, ErrUnknownFormat)
	e.Scheme = InitScheme(r.Uint8("epoch.init_scheme"))
	if r.Err() != nil {
		return
	}
	e.Suite = s.ID()
	if !e.Scheme.known() {
		r.Fail("epoch.init_scheme", fmt.Errorf("%w: %v", ErrUnknownInitScheme, e.Scheme))
		return
	}
	for i, f := range e.fields() {
		if f == &e.InitSecret && !withInit {
			continue
		}
		*f = r.Opaque(fieldNames[i])
		if r.Err() != nil {
			return
		}
		if f == &e.InitSecret {
			if err := e.Scheme.checkCarry(s, *f); err != nil {
				r.Fail(fieldNames[i], err)
			}
		} else if len(*f) != s.HashSize() {
			r.Fail(fieldNames[i], fmt.Errorf("%w: %d bytes, want %d", codec.ErrInvalidValue, len(*f), s.HashSize()))
		}
	}
}

// MarshalSecrets returns the storage encoding of e without its
// InitSecret, which has the same layout as EpochState minus the last
// field:
//
//	struct {
//	    uint8 format = 1;
//	    CipherSuite cipher_suite;
//	    uint8 init_scheme;
//	    opaque id<V>;
//	    ...                            // as EpochState
//	    opaque epoch_authenticator<V>;
//	} EpochSecrets;
//
// It serves callers that store the InitSecret apart because it changes
// while the rest never does (a DMLS epoch punctures its PRF once per
// child): the secrets are written once, the init secret on each change.
func (e Epoch) MarshalSecrets() []byte {
	var w codec.Writer
	e.marshal(&w, false)
	return w.Bytes()
}

// UnmarshalSecrets decodes EpochSecrets (see MarshalSecrets) into an Epoch
// without an InitSecret; set it with SetInitSecret before deriving a
// child. It checks what UnmarshalBinary checks.
func UnmarshalSecrets(data []byte) (Epoch, error) {
	var e Epoch
	r := codec.NewReader(data)
	e.unmarshal(r, false)
	if err := r.Finish("epoch_secrets"); err != nil {
		return Epoch{}, fmt.Errorf("decode epoch secrets: %w", err)
	}
	return e, nil
}

// SetInitSecret sets e's InitSecret to kept, a value stored from
// Epoch.InitSecret, after checking that it is valid under e's suite and
// scheme (a DMLS PRF state is decoded and checked in full).
func (e *Epoch) SetInitSecret(kept []byte) error {
	s, err := e.suite()
	if err != nil {
		return err
	}
	if err := e.Scheme.checkCarry(s, kept); err != nil {
		return fmt.Errorf("init secret: %w", err)
	}
	e.InitSecret = kept
	return nil
}

// MarshalBinary returns the storage encoding of e.
func (e Epoch) MarshalBinary() ([]byte, error) {
	return codec.Marshal(&e), nil
}

// UnmarshalBinary decodes stored epoch state.
func (e *Epoch) UnmarshalBinary(data []byte) error {
	var d Epoch
	if err := codec.Unmarshal(data, &d, "epoch"); err != nil {
		return fmt.Errorf("decode epoch state: %w", err)
	}
	*e = d
	return nil
}
