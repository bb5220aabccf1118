package keys

import (
	"encoding/base64"
	"fmt"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// Prefix is the unstable prefix of MSC2883's names (DESIGN 6).
const Prefix = "org.matrix.msc2883.v1.dmls"

// Device names one device of a user.
type Device struct {
	UserID   id.UserID
	DeviceID id.DeviceID
}

func (d Device) String() string { return string(d.UserID) + "|" + string(d.DeviceID) }

// Credential returns the device's MLS credential: a BasicCredential whose
// identity is "<user id>|<device id>" (DESIGN 6).
func (d Device) Credential() message.Credential {
	return message.BasicCredential([]byte(d.String()))
}

// suiteNames are the MSC2883 names of the suites we run, and the name of
// each one's signature algorithm in key ids.
var suiteNames = map[suite.ID]struct{ name, signature string }{
	suite.X25519AES128GCMSHA256Ed25519:        {"dhkemx25519-aes128gcm-sha256-ed25519", "ed25519"},
	suite.P256AES128GCMSHA256P256:             {"dhkemp256-aes128gcm-sha256-p256", "p256"},
	suite.X25519ChaCha20Poly1305SHA256Ed25519: {"dhkemx25519-chacha20poly1305-sha256-ed25519", "ed25519"},
}

// Supported reports whether the package runs suite s.
func Supported(s suite.ID) bool { _, ok := suiteNames[s]; return ok }

// Algorithm is the DMLS algorithm of suite s, as in device keys'
// algorithms and a room's encryption.
func Algorithm(s suite.ID) string { return Prefix + "." + suiteNames[s].name }

// KeyPackageAlgorithm is the one-time key algorithm of suite s's
// KeyPackages.
func KeyPackageAlgorithm(s suite.ID) string { return Prefix + ".key_package." + suiteNames[s].name }

// CredentialKeyID is the name of a device's credential key in its device
// keys object, and of the signature it makes.
func CredentialKeyID(s suite.ID, device id.DeviceID) string {
	return Prefix + ".credential." + suiteNames[s].signature + ":" + string(device)
}

// ed25519KeyID is the plain Matrix name of a device's Ed25519 key.
func ed25519KeyID(device id.DeviceID) string { return "ed25519:" + string(device) }

// keyID is the one-time key id of a KeyPackage: its KeyPackageRef in
// unpadded URL-safe base64. Derived from the content (as MSC2883
// suggests), one key id can never name two KeyPackages. The URL alphabet
// has no ':', which would end the algorithm part of the name.
func keyID(ref []byte) string { return base64.RawURLEncoding.EncodeToString(ref) }

// b64 is Matrix's unpadded standard base64.
var b64 = base64.RawStdEncoding

// decodeB64 accepts Matrix's unpadded base64 and, leniently, padded.
func decodeB64(s string) ([]byte, error) {
	b, err := b64.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return nil, fmt.Errorf("not base64")
	}
	return b, nil
}
