package groups

import (
	"github.com/mls-appservice/mls-appservice/internal/reseal"
	"github.com/mls-appservice/mls-appservice/seal"
)

// epochIDText is an epoch ID column as epochs.ID.String writes it
// (unpadded standard base64), for the bindings of the epoch's parts.
const epochIDText = `rtrim(replace(encode(t.epoch_id, 'base64'), E'\n', ''), '=')`

// SealedColumns are the columns of sealed values this package keeps, for
// `mls-appservice keys reseal` (package reseal), each with the binding
// its values were sealed to (epochRow, privateRow, deliveryRow, roomEntryRow, sentRow).
func SealedColumns() []reseal.Column {
	epochPart := func(column, part string, p seal.Purpose) reseal.Column {
		return reseal.Column{Table: "dmls_epoch", Column: column, Purpose: p, Binding: "dmls_epoch",
			Parts: []string{"t.room_id", epochIDText, "'" + part + "'"}}
	}
	return []reseal.Column{
		epochPart("static", "static", purposeEpochStatic),
		epochPart("init", "init", purposeEpochInit),
		epochPart("secrets", "secrets", purposeEpochSecrets),
		{Table: "dmls_epoch_private", Column: "privates", Purpose: purposeEpochPrivate, Binding: "dmls_epoch_device",
			Parts: []string{"t.room_id", epochIDText}, Elements: []string{"t.user_ids", "t.device_ids"}},
		// A log's entries are bound to its puppet's user ID, which the
		// log's number stands for since migration 0018.
		{Table: "delivery", Column: "content", Purpose: purposeDelivery, Binding: "delivery",
			Parts: []string{"(SELECT c.user_id FROM delivery_cursor c WHERE c.log_no = t.log_no)", "t.seq::text"}},
		{Table: "room_entry", Column: "content", Purpose: purposeRoomEntry, Binding: "room_entry",
			Parts: []string{"(SELECT r.room_id FROM room_log r WHERE r.room_no = t.room_no)", "t.no::text"}},
		{Table: "dmls_sent", Column: "plaintext", Purpose: purposeSent, Binding: "dmls_sent",
			Parts: []string{"encode(t.digest, 'hex')"}},
	}
}
