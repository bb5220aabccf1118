package keys

import "github.com/mls-appservice/mls-appservice/internal/reseal"

// SealedColumns are the columns of sealed values this package keeps, for
// `mls-appservice keys reseal` (package reseal). Their bindings are those
// the values were sealed to, which migrations 0023 and 0024 kept when
// they moved the cross-signing keys and the signature key.
func SealedColumns() []reseal.Column {
	return []reseal.Column{
		{Table: "puppet_device", Column: "signature_key", Purpose: purposeSignatureKey,
			Binding: identityBinding, Parts: []string{"t.user_id", "t.device_id"}},
		{Table: "key_package", Column: "private", Purpose: purposeKeyPackage,
			Binding: "key_package", Parts: []string{"t.user_id", "t.device_id", "t.key_id"}},
		{Table: "puppet_device", Column: "last_resort_secret", Purpose: purposeKeyPackage,
			Binding: lastResortBinding, Parts: []string{"t.user_id", "t.device_id", "t.last_resort_txn"}},
		{Table: "key_package_batch", Column: "secrets", Purpose: purposeKeyPackageBatch,
			Binding: "key_package_batch", Parts: []string{"t.user_id", "t.device_id", "t.upload_txn"}},
		{Table: "puppet", Column: "master_key", Purpose: purposeMasterKey,
			Binding: crossSigningBinding, Parts: []string{"t.user_id"}},
		{Table: "puppet", Column: "self_signing_key", Purpose: purposeSelfSigningKey,
			Binding: crossSigningBinding, Parts: []string{"t.user_id"}},
	}
}
