package database

import (
	"context"
	"fmt"
)

// SavePuppet remembers that userID is registered on the homeserver.
func SavePuppet(ctx context.Context, q Querier, userID string) error {
	_, err := q.Exec(ctx, `INSERT INTO puppet (user_id) VALUES ($1) ON CONFLICT DO NOTHING`, userID)
	if err != nil {
		return fmt.Errorf("save puppet %s: %w", userID, err)
	}
	return nil
}

// IsPuppet reports whether userID was registered by this service.
func IsPuppet(ctx context.Context, q Querier, userID string) (bool, error) {
	var ok bool
	err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM puppet WHERE user_id = $1)`, userID).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("look up puppet %s: %w", userID, err)
	}
	return ok, nil
}

// SavePuppetDevice remembers a device created for a puppet.
func SavePuppetDevice(ctx context.Context, q Querier, userID, deviceID, displayName string) error {
	_, err := q.Exec(ctx, `INSERT INTO puppet_device (user_id, device_id, display_name) VALUES ($1, $2, $3)
		ON CONFLICT (user_id, device_id) DO UPDATE SET display_name = excluded.display_name`,
		userID, deviceID, displayName)
	if err != nil {
		return fmt.Errorf("save device %s of puppet %s: %w", deviceID, userID, err)
	}
	return nil
}

// PuppetDevices lists the device IDs created for userID.
func PuppetDevices(ctx context.Context, q Querier, userID string) ([]string, error) {
	rows, err := q.Query(ctx, `SELECT device_id FROM puppet_device WHERE user_id = $1 ORDER BY device_id`, userID)
	if err != nil {
		return nil, fmt.Errorf("list devices of puppet %s: %w", userID, err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("list devices of puppet %s: %w", userID, err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list devices of puppet %s: %w", userID, err)
	}
	return ids, nil
}
