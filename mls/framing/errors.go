package framing

import (
	"errors"

	"github.com/mls-appservice/mls-appservice/mls/secrettree"
)

var (
	// ErrBadMembershipTag means a member's PublicMessage carried a
	// membership tag that does not match.
	ErrBadMembershipTag = errors.New("framing: bad membership tag")
	// ErrBadConfirmationTag means a commit's confirmation tag does not
	// match the confirmed transcript hash.
	ErrBadConfirmationTag = errors.New("framing: bad confirmation tag")
	// ErrContentDecrypt means the PrivateMessage ciphertext did not
	// authenticate under the sender's ratchet key.
	ErrContentDecrypt = errors.New("framing: content decryption failed")
	// ErrSenderDataDecrypt means the encrypted sender data did not
	// authenticate.
	ErrSenderDataDecrypt = errors.New("framing: sender data decryption failed")
	// ErrUnknownSender means the sender does not resolve to a signature
	// key: a blank or out-of-range leaf, or an unknown external sender.
	ErrUnknownSender = errors.New("framing: unknown sender")
	// ErrWrongGroup means the message names another group.
	ErrWrongGroup = errors.New("framing: message for another group")
	// ErrWrongEpoch means the message names another epoch of this group.
	ErrWrongEpoch = errors.New("framing: message for another epoch")
	// ErrBadPadding means the PrivateMessageContent padding held a
	// non-zero byte. Errors with it also match message.ErrNonZeroPadding.
	ErrBadPadding = errors.New("framing: bad padding")
	// ErrMalformed means a decrypted plaintext did not decode.
	ErrMalformed = errors.New("framing: malformed plaintext")
	// ErrApplicationInPublic means an application message was to be sent or
	// accepted as a PublicMessage, which §6.2 forbids.
	ErrApplicationInPublic = errors.New("framing: application data in a PublicMessage")
	// ErrNotMember means a PrivateMessage was to be built for a sender that
	// is not a member; only members have ratchets.
	ErrNotMember = errors.New("framing: PrivateMessage sender is not a member")
	// ErrWireFormat means an AuthenticatedContent was signed for another
	// wire format than the one it is being protected as.
	ErrWireFormat = errors.New("framing: wrong wire format")
)

// The ratchet errors come from the secret tree; framing re-exports them so
// that callers need not import it to tell a replay from a jump.
var (
	// ErrReplay means the generation was already consumed (or its retained
	// key discarded).
	ErrReplay = secrettree.ErrGenerationConsumed
	// ErrGenerationTooFar means the generation is beyond the secret tree's
	// forward window.
	ErrGenerationTooFar = secrettree.ErrGenerationTooFar
)
