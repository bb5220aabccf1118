package keys

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
	"github.com/mls-appservice/mls-appservice/mls/tree"
)

// Reason says why a claimed KeyPackage was refused; it is the label of
// the refusal metric.
type Reason string

// The reasons of refusal.
const (
	// ReasonQuery: /keys/query answered nothing usable for the device
	// (unknown device, or the device's server did not answer).
	ReasonQuery Reason = "query_failed"
	// ReasonDeviceKeys: the device keys object does not publish a DMLS
	// credential key of our suite, or names another device.
	ReasonDeviceKeys Reason = "device_keys"
	// ReasonDeviceSignature: the device keys object is not validly signed
	// by its credential key.
	ReasonDeviceSignature Reason = "device_keys_signature"
	// ReasonNoKeyPackage: the claim returned no KeyPackage.
	ReasonNoKeyPackage Reason = "no_key_package"
	// ReasonMalformed: the claimed value is not an MLSMessage holding a
	// KeyPackage.
	ReasonMalformed Reason = "malformed"
	// ReasonSuite: the KeyPackage is of another cipher suite.
	ReasonSuite Reason = "suite"
	// ReasonSignature: a KeyPackage or leaf signature does not verify.
	ReasonSignature Reason = "key_package_signature"
	// ReasonLifetime: the KeyPackage is expired or not yet valid.
	ReasonLifetime Reason = "lifetime"
	// ReasonInvalid: the KeyPackage breaks another rule of RFC 9420
	// 10.1 (capabilities, leaf node, init key).
	ReasonInvalid Reason = "invalid"
	// ReasonCredential: the credential does not name exactly the device.
	ReasonCredential Reason = "credential"
	// ReasonSignatureKey: the leaf's signature key is not the device's
	// published credential key.
	ReasonSignatureKey Reason = "signature_key"
)

// Refusal is why a device's claimed KeyPackage was not accepted.
type Refusal struct {
	Reason Reason
	Detail string
}

func (r *Refusal) Error() string { return "refused (" + string(r.Reason) + "): " + r.Detail }

func refuse(reason Reason, format string, args ...any) *Refusal {
	return &Refusal{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// Claimed is the outcome of claiming one device's KeyPackage: a verified
// KeyPackage, or the Refusal that says why there is none.
type Claimed struct {
	Device Device
	// KeyPackage is verified (see Claim); nil if Refused is set.
	KeyPackage *message.KeyPackage
	// CrossSigned reports that the device keys carry a valid signature of
	// the user's self-signing key, itself signed by the user's master key.
	CrossSigned bool
	Refused     *Refusal
}

// Claim claims one KeyPackage of each device of want, acting as our
// device as, and returns them verified, in the order of want. Devices of
// other homeservers are claimed over federation by the homeserver. A
// KeyPackage is accepted only if:
//
//   - the device's keys (/keys/query) name exactly that device, list the
//     DMLS algorithm of our suite, publish a credential key and are
//     signed with it;
//   - the claimed value is an MLSMessage with a KeyPackage of our suite,
//     valid by RFC 9420 10.1 (signatures, lifetime now, capabilities
//     listing the version and suite, leaf node, init key);
//   - its credential is the BasicCredential "<user id>|<device id>" of
//     that device, and its leaf's signature key is the published
//     credential key.
//
// Anything else is refused with its Reason, logged and counted, and not
// returned. The error is for a request that failed as a whole.
func (m *Manager) Claim(ctx context.Context, as Device, want []Device) ([]Claimed, error) {
	out := make([]Claimed, len(want))
	for i, d := range want {
		out[i].Device = d
	}
	if len(want) == 0 {
		return out, nil
	}
	var users []id.UserID
	seen := map[id.UserID]bool{}
	for _, d := range want {
		if !seen[d.UserID] {
			seen[d.UserID] = true
			users = append(users, d.UserID)
		}
	}
	raw, err := m.cfg.Homeserver.QueryKeys(ctx, as.UserID, users)
	if err != nil {
		return nil, err
	}
	answer, err := parseQuery(raw)
	if err != nil {
		return nil, fmt.Errorf("keys query: %w", err)
	}
	published := make([]*publishedDevice, len(want))
	alg := KeyPackageAlgorithm(m.suite.ID())
	claims := map[id.UserID]map[id.DeviceID]string{}
	for i, d := range want {
		obj, ok := answer.devices[d]
		if !ok {
			out[i].Refused = refuse(ReasonQuery, "no device keys for the device")
			continue
		}
		p, err := verifyDeviceKeys(d, m.suite, obj)
		if err != nil {
			out[i].Refused = asRefusal(err)
			continue
		}
		published[i] = p
		out[i].CrossSigned = answer.crossSigned(d.UserID, p)
		if claims[d.UserID] == nil {
			claims[d.UserID] = map[id.DeviceID]string{}
		}
		claims[d.UserID][d.DeviceID] = alg
	}
	if len(claims) > 0 {
		raw, err := m.cfg.Homeserver.ClaimKeys(ctx, as.UserID, as.DeviceID, claims)
		if err != nil {
			return nil, err
		}
		keys, err := parseClaim(raw)
		if err != nil {
			return nil, fmt.Errorf("keys claim: %w", err)
		}
		for i, d := range want {
			if published[i] == nil {
				continue
			}
			kp, err := m.verifyClaimed(d, published[i], keys[d], alg)
			if err != nil {
				out[i].Refused = asRefusal(err)
				continue
			}
			out[i].KeyPackage = kp
		}
	}
	for _, c := range out {
		if c.Refused != nil {
			m.cfg.Metrics.Refused.WithLabelValues(string(c.Refused.Reason)).Inc()
			m.cfg.Log.Warn().Stringer("user_id", c.Device.UserID).Stringer("device_id", c.Device.DeviceID).
				Str("reason", string(c.Refused.Reason)).Str("detail", c.Refused.Detail).Msg("Refused a device's KeyPackage")
			continue
		}
		m.cfg.Metrics.Claimed.Inc()
	}
	return out, nil
}

func asRefusal(err error) *Refusal {
	var r *Refusal
	if errors.As(err, &r) {
		return r
	}
	return refuse(ReasonInvalid, "%v", err)
}

// verifyClaimed checks one claimed one-time key (see Claim).
func (m *Manager) verifyClaimed(d Device, p *publishedDevice, claimed map[string]any, alg string) (*message.KeyPackage, error) {
	var value string
	found := false
	for name, v := range claimed {
		a, _, _ := strings.Cut(name, ":")
		if a != alg {
			continue
		}
		s, ok := v.(string)
		if !ok {
			return nil, refuse(ReasonMalformed, "one-time key %.100s is not a string", name)
		}
		value, found = s, true
		break
	}
	if !found {
		return nil, refuse(ReasonNoKeyPackage, "the homeserver returned no %s key", alg)
	}
	return verifyKeyPackage(m.suite, d, p.CredentialKey, value, m.cfg.Now())
}

// verifyKeyPackage checks a claimed base64 KeyPackage of device d, whose
// published credential key is credKey, at time now.
func verifyKeyPackage(s *suite.Suite, d Device, credKey []byte, value string, now time.Time) (*message.KeyPackage, error) {
	data, err := decodeB64(value)
	if err != nil {
		return nil, refuse(ReasonMalformed, "%v", err)
	}
	msg, err := message.ParseMLSMessage(data)
	if err != nil {
		return nil, refuse(ReasonMalformed, "%v", err)
	}
	if msg.WireFormat != message.WireFormatKeyPackage || msg.KeyPackage == nil {
		return nil, refuse(ReasonMalformed, "MLSMessage of wire format %d, not a KeyPackage", msg.WireFormat)
	}
	kp := msg.KeyPackage
	if kp.CipherSuite != s.ID() {
		return nil, refuse(ReasonSuite, "suite 0x%04x, want 0x%04x", uint16(kp.CipherSuite), uint16(s.ID()))
	}
	err = tree.ValidateKeyPackage(s, kp, tree.LeafContext{Version: message.MLS10, ListsGroupParameters: true, Now: now})
	switch {
	case errors.Is(err, tree.ErrLifetime):
		return nil, refuse(ReasonLifetime, "%v", err)
	case errors.Is(err, suite.ErrBadSignature):
		return nil, refuse(ReasonSignature, "%v", err)
	case err != nil:
		return nil, refuse(ReasonInvalid, "%v", err)
	}
	cred := kp.LeafNode.Credential
	if cred.Type != message.CredentialBasic || string(cred.Identity) != d.String() {
		return nil, refuse(ReasonCredential, "credential of type %d names %.200q", cred.Type, cred.Identity)
	}
	if string(kp.LeafNode.SignatureKey) != string(credKey) {
		return nil, refuse(ReasonSignatureKey, "leaf signature key is not the device's credential key")
	}
	return kp, nil
}

// queryAnswer is the useful part of a /keys/query answer.
type queryAnswer struct {
	devices     map[Device]any
	master      map[id.UserID]any
	selfSigning map[id.UserID]any
	// listed are the users the answer has a device list for (possibly
	// empty); failed the servers it names in "failures" (not reached).
	listed map[id.UserID]bool
	failed map[string]bool
}

// knows reports whether the answer says which devices user has: a user
// whose homeserver was not reached, or who is missing from the answer,
// is unknown, not deviceless.
func (a *queryAnswer) knows(user id.UserID) bool {
	_, server, _ := strings.Cut(string(user), ":")
	return a.listed[user] && !a.failed[server]
}

// crossSigned reports whether device p of user carries a valid signature
// of user's self-signing key, which carries one of user's master key.
// Whether the master key itself is the user's is a matter of verifying
// the user, not the device.
func (a *queryAnswer) crossSigned(user id.UserID, p *publishedDevice) bool {
	master := crossSigningPublic(a.master[user], user, "master")
	self := crossSigningPublic(a.selfSigning[user], user, "self_signing")
	if master == nil || self == nil {
		return false
	}
	selfObj := a.selfSigning[user].(map[string]any)
	if !verifiedBy(selfObj, user, master) {
		return false
	}
	return verifiedBy(p.obj, user, self)
}

// crossSigningPublic returns the Ed25519 key of a cross-signing key
// object of user with the given usage; nil if it is not one.
func crossSigningPublic(raw any, user id.UserID, usage string) ed25519.PublicKey {
	obj, ok := raw.(map[string]any)
	if !ok || str(obj["user_id"]) != string(user) {
		return nil
	}
	usages, _ := obj["usage"].([]any)
	hasUsage := false
	for _, u := range usages {
		hasUsage = hasUsage || u == usage
	}
	keyMap, _ := obj["keys"].(map[string]any)
	if !hasUsage || len(keyMap) != 1 {
		return nil
	}
	for name, v := range keyMap {
		text, _ := v.(string)
		pub, err := decodeB64(text)
		if err != nil || len(pub) != ed25519.PublicKeySize || name != "ed25519:"+b64.EncodeToString(pub) {
			return nil
		}
		return ed25519.PublicKey(pub)
	}
	return nil
}

// verifiedBy reports whether obj carries a valid signature by key under user.
func verifiedBy(obj map[string]any, user id.UserID, key ed25519.PublicKey) bool {
	name, _ := ed25519Name(key)
	sigText, ok := signature(obj, string(user), name)
	if !ok {
		return false
	}
	sig, err := decodeB64(sigText)
	if err != nil {
		return false
	}
	content, err := signedContent(obj)
	return err == nil && ed25519.Verify(key, content, sig)
}

// maxAnswerBytes bounds a query or claim answer we parse.
const maxAnswerBytes = 16 << 20

// parseQuery decodes a /keys/query answer. Malformed parts are left out
// (their devices are then refused), except a body that is not a JSON
// object.
func parseQuery(raw []byte) (*queryAnswer, error) {
	top, err := decodeAnswer(raw)
	if err != nil {
		return nil, err
	}
	a := &queryAnswer{devices: map[Device]any{}, master: map[id.UserID]any{}, selfSigning: map[id.UserID]any{},
		listed: map[id.UserID]bool{}, failed: map[string]bool{}}
	if failures, ok := top["failures"].(map[string]any); ok {
		for server := range failures {
			a.failed[server] = true
		}
	}
	byUser, _ := top["device_keys"].(map[string]any)
	for user, devs := range byUser {
		devMap, ok := devs.(map[string]any)
		if ok {
			a.listed[id.UserID(user)] = true
		}
		for device, obj := range devMap {
			a.devices[Device{UserID: id.UserID(user), DeviceID: id.DeviceID(device)}] = obj
		}
	}
	for _, f := range []struct {
		name string
		dst  map[id.UserID]any
	}{{"master_keys", a.master}, {"self_signing_keys", a.selfSigning}} {
		m, _ := top[f.name].(map[string]any)
		for user, obj := range m {
			f.dst[id.UserID(user)] = obj
		}
	}
	return a, nil
}

// decodeAnswer decodes a homeserver's answer, which must be a JSON object
// of bounded size.
func decodeAnswer(raw []byte) (map[string]any, error) {
	if len(raw) > maxAnswerBytes {
		return nil, fmt.Errorf("answer of %d bytes", len(raw))
	}
	v, err := decodeValue(raw)
	if err != nil {
		return nil, fmt.Errorf("answer does not parse: %w", err)
	}
	top, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("answer is not an object")
	}
	return top, nil
}

// parseClaim decodes a /keys/claim answer into each device's keys.
func parseClaim(raw []byte) (map[Device]map[string]any, error) {
	top, err := decodeAnswer(raw)
	if err != nil {
		return nil, err
	}
	out := map[Device]map[string]any{}
	byUser, _ := top["one_time_keys"].(map[string]any)
	for user, devs := range byUser {
		devMap, _ := devs.(map[string]any)
		for device, keys := range devMap {
			if k, ok := keys.(map[string]any); ok {
				out[Device{UserID: id.UserID(user), DeviceID: id.DeviceID(device)}] = k
			}
		}
	}
	return out, nil
}
