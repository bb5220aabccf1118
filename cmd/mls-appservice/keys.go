package main

import (
	"fmt"

	"github.com/mls-appservice/mls-appservice/config"
	"github.com/mls-appservice/mls-appservice/seal"
)

// generateEncryptionKey puts a new master key into the configuration if
// it has none (-g). An existing key is never replaced: every sealed
// secret depends on it (rotation is encryption.old_keys and keys reseal).
func generateEncryptionKey(cfg *config.Config, configPath string) error {
	if cfg.HasEncryptionKey() {
		return nil
	}
	k, err := seal.GenerateKey()
	if err != nil {
		return err
	}
	if err := config.SetEncryptionKey(configPath, k.Encode()); err != nil {
		return fmt.Errorf("write encryption.key into %s: %w", configPath, err)
	}
	fmt.Printf("Generated encryption.key (key id %s) in %s. Back it up: the service's secrets cannot be opened without it.\n", k.ID(), configPath)
	return nil
}
