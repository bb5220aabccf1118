package keys

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// buildDeviceKeys returns the signed device keys object of our device
// (DESIGN 6): the DMLS algorithm, the credential key under its MSC2883
// name and, for Ed25519 suites, under ed25519:<device> too (our devices
// run no Olm, and tools that look for an ed25519 key then find one),
// signed with that key under each name.
func buildDeviceKeys(dev Device, k *suite.SignaturePrivateKey) (json.RawMessage, error) {
	s := k.Suite().ID()
	pub := b64.EncodeToString(k.Public().Bytes())
	names := []string{CredentialKeyID(s, dev.DeviceID)}
	if usesEd25519(s) {
		names = append(names, ed25519KeyID(dev.DeviceID))
	}
	keyMap := map[string]any{}
	for _, n := range names {
		keyMap[n] = pub
	}
	obj := map[string]any{
		"user_id":    string(dev.UserID),
		"device_id":  string(dev.DeviceID),
		"algorithms": []any{Algorithm(s)},
		"keys":       keyMap,
	}
	content, err := canonical(obj)
	if err != nil {
		return nil, err
	}
	sig, err := signJSON(k, content)
	if err != nil {
		return nil, fmt.Errorf("sign device keys: %w", err)
	}
	sigs := map[string]any{}
	for _, n := range names {
		sigs[n] = b64.EncodeToString(sig)
	}
	obj["signatures"] = map[string]any{string(dev.UserID): sigs}
	return canonical(obj)
}

// publishedDevice is another device's device keys object from
// /keys/query, checked against what a DMLS device must publish.
type publishedDevice struct {
	// CredentialKey is the device's MLS signature public key.
	CredentialKey []byte
	// obj is the object as received, for the cross-signing check.
	obj map[string]any
	// content is what its signatures sign.
	content []byte
}

// verifyDeviceKeys checks a device keys object from /keys/query for the
// device want in suite s: it names exactly that device, lists the DMLS
// algorithm, publishes a credential key of the suite, and is signed with
// that key. A Refusal says what failed.
func verifyDeviceKeys(want Device, s *suite.Suite, raw any) (*publishedDevice, error) {
	obj, ok := raw.(map[string]any)
	if !ok {
		return nil, refuse(ReasonDeviceKeys, "device keys are not an object")
	}
	if str(obj["user_id"]) != string(want.UserID) || str(obj["device_id"]) != string(want.DeviceID) {
		return nil, refuse(ReasonDeviceKeys, "device keys name %.100s|%.100s", str(obj["user_id"]), str(obj["device_id"]))
	}
	algs, _ := obj["algorithms"].([]any)
	if !slices.Contains(algs, any(Algorithm(s.ID()))) {
		return nil, refuse(ReasonDeviceKeys, "device does not list %s", Algorithm(s.ID()))
	}
	keyName := CredentialKeyID(s.ID(), want.DeviceID)
	keyMap, _ := obj["keys"].(map[string]any)
	pubText, ok := keyMap[keyName].(string)
	if !ok {
		return nil, refuse(ReasonDeviceKeys, "no %s key", keyName)
	}
	pub, err := decodeB64(pubText)
	if err != nil {
		return nil, refuse(ReasonDeviceKeys, "credential key: %v", err)
	}
	if _, err := s.NewSignaturePublicKey(pub); err != nil {
		return nil, refuse(ReasonDeviceKeys, "credential key: %v", err)
	}
	content, err := signedContent(obj)
	if err != nil {
		return nil, refuse(ReasonDeviceKeys, "%v", err)
	}
	sigText, ok := signature(obj, string(want.UserID), keyName)
	if !ok {
		return nil, refuse(ReasonDeviceSignature, "not signed with its credential key")
	}
	sig, err := decodeB64(sigText)
	if err != nil {
		return nil, refuse(ReasonDeviceSignature, "signature: %v", err)
	}
	if err := verifyJSON(s.ID(), pub, content, sig); err != nil {
		return nil, refuse(ReasonDeviceSignature, "%v", err)
	}
	return &publishedDevice{CredentialKey: pub, obj: obj, content: content}, nil
}

// signature returns signatures[user][keyName] of a signed object.
func signature(obj map[string]any, user, keyName string) (string, bool) {
	sigs, _ := obj["signatures"].(map[string]any)
	byUser, _ := sigs[user].(map[string]any)
	s, ok := byUser[keyName].(string)
	return s, ok
}

func str(v any) string { s, _ := v.(string); return s }
