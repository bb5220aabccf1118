package matrix

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"maunium.net/go/mautrix/id"
)

// The key endpoints of the client-server API, called as a puppet (or one
// of its devices). They return the homeserver's answers as raw JSON: what
// comes back holds other servers' and devices' data, and package keys
// parses and verifies it. Uploads of device keys and KeyPackages go
// through the outbox instead (database.KeyUpload), so that they are
// written in the transaction that made the keys.

// OneTimeKeyCounts asks the homeserver how many one-time keys it holds
// for a device, by algorithm: an empty POST /keys/upload answers with the
// current counts, unlike MSC3202 counts, which come only with
// transactions that concern the device.
func (p *Puppets) OneTimeKeyCounts(ctx context.Context, user id.UserID, device id.DeviceID) (map[string]int, error) {
	cli, err := p.Client(user, device)
	if err != nil {
		return nil, err
	}
	var resp struct {
		Counts map[string]int `json:"one_time_key_counts"`
	}
	if _, err := cli.MakeRequest(ctx, http.MethodPost, cli.BuildClientURL("v3", "keys", "upload"), struct{}{}, &resp); err != nil {
		return nil, fmt.Errorf("one-time key counts of %s/%s: %w", user, device, err)
	}
	return resp.Counts, nil
}

// QueryKeys runs POST /keys/query as user for the devices of users (all
// devices of each), and returns the answer.
func (p *Puppets) QueryKeys(ctx context.Context, user id.UserID, users []id.UserID) (json.RawMessage, error) {
	cli, err := p.Client(user, "")
	if err != nil {
		return nil, err
	}
	req := struct {
		DeviceKeys map[id.UserID][]id.DeviceID `json:"device_keys"`
		Timeout    int                         `json:"timeout"`
	}{DeviceKeys: map[id.UserID][]id.DeviceID{}, Timeout: 10000}
	for _, u := range users {
		req.DeviceKeys[u] = []id.DeviceID{}
	}
	body, err := cli.MakeRequest(ctx, http.MethodPost, cli.BuildClientURL("v3", "keys", "query"), req, nil)
	if err != nil {
		return nil, fmt.Errorf("query keys of %d users as %s: %w", len(users), user, err)
	}
	return body, nil
}

// ClaimKeys runs POST /keys/claim as device for one key of the given
// algorithm per (user, device) and returns the answer. Claims of remote
// users go over federation.
func (p *Puppets) ClaimKeys(ctx context.Context, user id.UserID, device id.DeviceID, claims map[id.UserID]map[id.DeviceID]string) (json.RawMessage, error) {
	cli, err := p.Client(user, device)
	if err != nil {
		return nil, err
	}
	req := struct {
		OneTimeKeys map[id.UserID]map[id.DeviceID]string `json:"one_time_keys"`
		Timeout     int                                  `json:"timeout"`
	}{claims, 10000}
	body, err := cli.MakeRequest(ctx, http.MethodPost, cli.BuildClientURL("v3", "keys", "claim"), req, nil)
	if err != nil {
		return nil, fmt.Errorf("claim keys as %s/%s: %w", user, device, err)
	}
	return body, nil
}

// UploadSigningKeys uploads a puppet's cross-signing keys (POST
// /keys/device_signing/upload). Synapse asks an appservice user for no
// interactive authentication here, neither the first time (MSC3967) nor
// to replace keys (MSC4190); the same keys again are a no-op.
func (p *Puppets) UploadSigningKeys(ctx context.Context, user id.UserID, body json.RawMessage) error {
	cli, err := p.Client(user, "")
	if err != nil {
		return err
	}
	if _, err := cli.MakeRequest(ctx, http.MethodPost, cli.BuildClientURL("v3", "keys", "device_signing", "upload"), body, nil); err != nil {
		return fmt.Errorf("upload cross-signing keys of %s: %w", user, err)
	}
	return nil
}

// UploadSignatures uploads signatures made by user's keys (POST
// /keys/signatures/upload) and returns the answer, whose "failures" name
// the signatures the homeserver refused (it answers 200 regardless).
func (p *Puppets) UploadSignatures(ctx context.Context, user id.UserID, body json.RawMessage) (json.RawMessage, error) {
	cli, err := p.Client(user, "")
	if err != nil {
		return nil, err
	}
	resp, err := cli.MakeRequest(ctx, http.MethodPost, cli.BuildClientURL("v3", "keys", "signatures", "upload"), body, nil)
	if err != nil {
		return nil, fmt.Errorf("upload signatures of %s: %w", user, err)
	}
	return resp, nil
}
