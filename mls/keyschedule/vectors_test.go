package keyschedule

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/internal/vectors"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

type keyScheduleCase struct {
	CipherSuite       suite.ID    `json:"cipher_suite"`
	GroupID           vectors.Hex `json:"group_id"`
	InitialInitSecret vectors.Hex `json:"initial_init_secret"`
	Epochs            []struct {
		TreeHash                vectors.Hex `json:"tree_hash"`
		CommitSecret            vectors.Hex `json:"commit_secret"`
		PSKSecret               vectors.Hex `json:"psk_secret"`
		ConfirmedTranscriptHash vectors.Hex `json:"confirmed_transcript_hash"`
		GroupContext            vectors.Hex `json:"group_context"`
		JoinerSecret            vectors.Hex `json:"joiner_secret"`
		WelcomeSecret           vectors.Hex `json:"welcome_secret"`
		InitSecret              vectors.Hex `json:"init_secret"`
		SenderDataSecret        vectors.Hex `json:"sender_data_secret"`
		EncryptionSecret        vectors.Hex `json:"encryption_secret"`
		ExporterSecret          vectors.Hex `json:"exporter_secret"`
		EpochAuthenticator      vectors.Hex `json:"epoch_authenticator"`
		ExternalSecret          vectors.Hex `json:"external_secret"`
		ConfirmationKey         vectors.Hex `json:"confirmation_key"`
		MembershipKey           vectors.Hex `json:"membership_key"`
		ResumptionPSK           vectors.Hex `json:"resumption_psk"`
		ExternalPub             vectors.Hex `json:"external_pub"`
		Exporter                struct {
			// The label is a string in the format description; the
			// generator filled it with hex text, used as is.
			Label   string      `json:"label"`
			Context vectors.Hex `json:"context"`
			Length  int         `json:"length"`
			Secret  vectors.Hex `json:"secret"`
		} `json:"exporter"`
	} `json:"epochs"`
}

func checkKeySchedule(c *keyScheduleCase) error {
	s, err := suite.Lookup(c.CipherSuite)
	if err != nil {
		return err
	}
	initSecret := []byte(c.InitialInitSecret)
	for i, ep := range c.Epochs {
		gc := message.GroupContext{
			Version:                 message.MLS10,
			CipherSuite:             c.CipherSuite,
			GroupID:                 c.GroupID,
			Epoch:                   uint64(i),
			TreeHash:                ep.TreeHash,
			ConfirmedTranscriptHash: ep.ConfirmedTranscriptHash,
			Extensions:              []message.Extension{},
		}
		gcBytes := codec.Marshal(&gc)
		if !bytes.Equal(gcBytes, ep.GroupContext) {
			return fmt.Errorf("epoch %d: group_context = %x, want %x", i, gcBytes, ep.GroupContext)
		}
		d, err := Derive(s, Input{
			InitSecret:   initSecret,
			CommitSecret: ep.CommitSecret,
			PSKSecret:    ep.PSKSecret,
			GroupContext: gcBytes,
		})
		if err != nil {
			return fmt.Errorf("epoch %d: %w", i, err)
		}
		e := d.Epoch
		next, after, err := e.NextInitSecret(Child{})
		if err != nil {
			return fmt.Errorf("epoch %d: %w", i, err)
		}
		if !bytes.Equal(after.InitSecret, e.InitSecret) {
			return fmt.Errorf("epoch %d: RFC 9420 init scheme changed the epoch", i)
		}
		for _, f := range []struct {
			name      string
			got, want []byte
		}{
			{"joiner_secret", d.JoinerSecret, ep.JoinerSecret},
			{"welcome_secret", d.WelcomeSecret, ep.WelcomeSecret},
			{"init_secret", next, ep.InitSecret},
			{"sender_data_secret", e.SenderDataSecret, ep.SenderDataSecret},
			{"encryption_secret", e.EncryptionSecret, ep.EncryptionSecret},
			{"exporter_secret", e.ExporterSecret, ep.ExporterSecret},
			{"epoch_authenticator", e.EpochAuthenticator, ep.EpochAuthenticator},
			{"external_secret", e.ExternalSecret, ep.ExternalSecret},
			{"confirmation_key", e.ConfirmationKey, ep.ConfirmationKey},
			{"membership_key", e.MembershipKey, ep.MembershipKey},
			{"resumption_psk", e.ResumptionPSK, ep.ResumptionPSK},
		} {
			if !bytes.Equal(f.got, f.want) {
				return fmt.Errorf("epoch %d: %s = %x, want %x", i, f.name, f.got, f.want)
			}
		}
		k, err := e.ExternalKey()
		if err != nil {
			return fmt.Errorf("epoch %d: %w", i, err)
		}
		if pub := k.Public().Bytes(); !bytes.Equal(pub, ep.ExternalPub) {
			return fmt.Errorf("epoch %d: external_pub = %x, want %x", i, pub, ep.ExternalPub)
		}
		exported, err := e.Exporter(ep.Exporter.Label, ep.Exporter.Context, ep.Exporter.Length)
		if err != nil {
			return fmt.Errorf("epoch %d: exporter: %w", i, err)
		}
		if !bytes.Equal(exported, ep.Exporter.Secret) {
			return fmt.Errorf("epoch %d: exporter = %x, want %x", i, exported, ep.Exporter.Secret)
		}
		ws, err := WelcomeSecret(s, d.JoinerSecret, ep.PSKSecret)
		if err != nil || !bytes.Equal(ws, ep.WelcomeSecret) {
			return fmt.Errorf("epoch %d: WelcomeSecret = %x, %v", i, ws, err)
		}
		initSecret = next
	}
	return nil
}

func TestKeyScheduleVectors(t *testing.T) {
	vectors.Run(t, "key-schedule.json", checkKeySchedule, func(c *keyScheduleCase) string { return fmt.Sprintf("suite %d", c.CipherSuite) })
}

type pskSecretCase struct {
	CipherSuite suite.ID `json:"cipher_suite"`
	PSKs        []struct {
		PSKID    vectors.Hex `json:"psk_id"`
		PSK      vectors.Hex `json:"psk"`
		PSKNonce vectors.Hex `json:"psk_nonce"`
	} `json:"psks"`
	PSKSecret vectors.Hex `json:"psk_secret"`
}

func checkPSKSecret(c *pskSecretCase) error {
	s, err := suite.Lookup(c.CipherSuite)
	if err != nil {
		return err
	}
	var psks []PSK
	for _, p := range c.PSKs {
		id := &message.PreSharedKeyID{Type: message.PSKExternal, ID: p.PSKID, Nonce: p.PSKNonce}
		psks = append(psks, PSK{ID: id, Secret: p.PSK})
	}
	got, err := PSKSecret(s, psks)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, c.PSKSecret) {
		return fmt.Errorf("psk_secret = %x, want %x", got, c.PSKSecret)
	}
	return nil
}

func TestPSKSecretVectors(t *testing.T) {
	vectors.Run(t, "psk_secret.json", checkPSKSecret, func(c *pskSecretCase) string {
		return fmt.Sprintf("suite %d, %d psks", c.CipherSuite, len(c.PSKs))
	})
}
