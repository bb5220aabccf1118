package keys

import (
	"context"
	"fmt"
	"slices"

	"maunium.net/go/mautrix/id"
)

// MLSDevices runs /keys/query as our device as and returns, for each of
// users, the devices that can take part in a DMLS group of our suite:
// their device keys list the suite's algorithm, publish a credential key
// and are signed with it (the checks Claim makes before it claims). A
// user the answer lists with no such device maps to none. A user it does
// not list, or whose homeserver it names in "failures" (not reached over
// federation: a partition, a server down), is left out: unknown is not
// deviceless, and a caller that took it so would remove every device of
// that server's users from its groups. Devices of other homeservers are
// queried over federation.
func (m *Manager) MLSDevices(ctx context.Context, as Device, users []id.UserID) (map[id.UserID][]id.DeviceID, error) {
	out := make(map[id.UserID][]id.DeviceID, len(users))
	if len(users) == 0 {
		return out, nil
	}
	raw, err := m.cfg.Homeserver.QueryKeys(ctx, as.UserID, users)
	if err != nil {
		return nil, err
	}
	answer, err := parseQuery(raw)
	if err != nil {
		return nil, fmt.Errorf("keys query: %w", err)
	}
	for _, u := range users {
		if answer.knows(u) {
			out[u] = []id.DeviceID{}
		}
	}
	for d, obj := range answer.devices {
		if _, asked := out[d.UserID]; !asked {
			continue
		}
		if _, err := verifyDeviceKeys(d, m.suite, obj); err != nil {
			continue
		}
		out[d.UserID] = append(out[d.UserID], d.DeviceID)
	}
	for u := range out {
		slices.Sort(out[u])
	}
	return out, nil
}
