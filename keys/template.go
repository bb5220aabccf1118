package keys

import (
	"bytes"
	"fmt"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/message"
)

// A KeyPackage template (group.NewKeyPackageTemplate) is stored in the
// row of its batch or last-resort KeyPackage. Its credential is the
// device's own (Device.Credential), which the row's key already names, so
// it is stored with an empty identity and given the device's back when
// read: about 30 bytes less in each template, two templates a device.
// Templates stored before carry the identity, which must then be the
// device's.

// encodeTemplate encodes t, made for dev, for storage.
func encodeTemplate(t *message.KeyPackage, dev Device) []byte {
	if !isOwn(t.LeafNode.Credential, dev) {
		return codec.Marshal(t)
	}
	stripped := *t
	stripped.LeafNode.Credential = message.BasicCredential([]byte{})
	return codec.Marshal(&stripped)
}

// decodeTemplate decodes a template of dev's as stored. Stored state is
// checked, not trusted: a template that names another credential is an
// error.
func decodeTemplate(b []byte, dev Device) (*message.KeyPackage, error) {
	var t message.KeyPackage
	if err := codec.Unmarshal(b, &t, "key_package_template"); err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	c := &t.LeafNode.Credential
	switch {
	case c.Type == message.CredentialBasic && len(c.Identity) == 0 && len(c.Certificates) == 0:
		*c = dev.Credential()
	case !isOwn(*c, dev):
		return nil, fmt.Errorf("template: credential %q is not %s's", c.Identity, dev)
	}
	return &t, nil
}

// isOwn reports whether c is dev's credential (Device.Credential).
func isOwn(c message.Credential, dev Device) bool {
	own := dev.Credential()
	return c.Type == own.Type && len(c.Certificates) == 0 && bytes.Equal(c.Identity, own.Identity)
}
