package welcome

import (
	"fmt"

	"github.com/mls-appservice/mls-appservice/mls/keyschedule"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// pskSecret resolves the PSKs that the group secrets name and chains them
// into psk_secret; nil when there are none, which the key schedule reads
// as the all-zero value.
func pskSecret(s *suite.Suite, ids []message.PreSharedKeyID, lookup func(*message.PreSharedKeyID) ([]byte, error)) ([]byte, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	special := 0
	for i := range ids {
		if isReInitOrBranch(&ids[i]) {
			special++
		}
	}
	// RFC 9420 §12.4.3.1: a reinit or branch PSK must be the only one of
	// its kind.
	if special > 1 {
		return nil, fmt.Errorf("%w: %d reinit or branch PSKs", ErrBadPSKs, special)
	}
	if lookup == nil {
		return nil, fmt.Errorf("%w: %d PSKs named, none held", ErrMissingPSK, len(ids))
	}
	psks := make([]keyschedule.PSK, len(ids))
	for i := range ids {
		v, err := lookup(&ids[i])
		if err != nil {
			return nil, fmt.Errorf("%w: psk %d: %w", ErrMissingPSK, i, err)
		}
		psks[i] = keyschedule.PSK{ID: &ids[i], Secret: v}
	}
	secret, err := keyschedule.PSKSecret(s, psks)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadPSKs, err)
	}
	return secret, nil
}

func isReInitOrBranch(id *message.PreSharedKeyID) bool {
	return id.Type == message.PSKResumption &&
		(id.Usage == message.ResumptionReInit || id.Usage == message.ResumptionBranch)
}

// checkResumptionEpoch applies RFC 9420 §12.4.3.1: a group started by
// reinitialisation or branching is joined at epoch 1. The remaining checks
// on such groups need the old group's state and are the caller's.
func checkResumptionEpoch(ids []message.PreSharedKeyID, gi *message.GroupInfo) error {
	for i := range ids {
		if isReInitOrBranch(&ids[i]) && gi.GroupContext.Epoch != 1 {
			return fmt.Errorf("%w: reinit or branch PSK in a welcome to epoch %d", ErrBadPSKs, gi.GroupContext.Epoch)
		}
	}
	return nil
}
