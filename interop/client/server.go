package client

import (
	"context"
	"fmt"

	"github.com/mls-appservice/mls-appservice/interop/mlsclientpb"
	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/group"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// Name is what the Name RPC reports.
const Name = "mls-appservice"

// Server implements mlsclientpb.MLSClientServer over mls/group.
type Server struct {
	mlsclientpb.UnimplementedMLSClientServer
	store *Store
}

// NewServer returns a server with an empty store.
func NewServer() *Server { return &Server{store: NewStore()} }

// Store returns the server's handle store.
func (s *Server) Store() *Store { return s.store }

func (s *Server) Name(context.Context, *mlsclientpb.NameRequest) (*mlsclientpb.NameResponse, error) {
	return &mlsclientpb.NameResponse{Name: Name}, nil
}

func (s *Server) SupportedCiphersuites(context.Context, *mlsclientpb.SupportedCiphersuitesRequest) (*mlsclientpb.SupportedCiphersuitesResponse, error) {
	var ids []uint32
	for _, su := range suite.All() {
		ids = append(ids, uint32(su.ID()))
	}
	return &mlsclientpb.SupportedCiphersuitesResponse{Ciphersuites: ids}, nil
}

func (s *Server) CreateGroup(_ context.Context, req *mlsclientpb.CreateGroupRequest) (*mlsclientpb.CreateGroupResponse, error) {
	me := &member{identity: req.Identity, suite: suite.ID(req.CipherSuite), encrypt: req.EncryptHandshake, psks: group.NewPSKStore()}
	kp, err := me.keyPackage(me.suite)
	if err != nil {
		return nil, toStatus("CreateGroup", err)
	}
	me.sigKey = kp.SignatureKey
	g, err := group.Create(kp, req.GroupId, nil, me.config())
	if err != nil {
		return nil, toStatus("CreateGroup", err)
	}
	return &mlsclientpb.CreateGroupResponse{StateId: s.store.putState(g, me)}, nil
}

func (s *Server) CreateKeyPackage(_ context.Context, req *mlsclientpb.CreateKeyPackageRequest) (*mlsclientpb.CreateKeyPackageResponse, error) {
	me := &member{identity: req.Identity, suite: suite.ID(req.CipherSuite), psks: group.NewPSKStore()}
	kp, err := me.keyPackage(me.suite)
	if err != nil {
		return nil, toStatus("CreateKeyPackage", err)
	}
	me.sigKey = kp.SignatureKey
	id := s.store.putTransaction(&transaction{bundle: kp, me: me})
	return &mlsclientpb.CreateKeyPackageResponse{
		TransactionId:  id,
		KeyPackage:     encodeKeyPackage(&kp.KeyPackage),
		InitPriv:       kp.InitKey.Bytes(),
		EncryptionPriv: kp.EncryptionKey.Bytes(),
		SignaturePriv:  kp.SignatureKey.Bytes(),
	}, nil
}

func (s *Server) JoinGroup(_ context.Context, req *mlsclientpb.JoinGroupRequest) (*mlsclientpb.JoinGroupResponse, error) {
	t, err := s.store.transaction(req.TransactionId)
	if err != nil {
		return nil, toStatus("JoinGroup", err)
	}
	rt, err := decodeTree(req.RatchetTree)
	if err != nil {
		return nil, toStatus("JoinGroup", err)
	}
	me := *t.me
	me.encrypt = req.EncryptHandshake
	g, err := group.Join(req.Welcome, t.bundle, &group.JoinOptions{RatchetTree: rt, Config: me.config()})
	if err != nil {
		return nil, toStatus("JoinGroup", err)
	}
	return &mlsclientpb.JoinGroupResponse{StateId: s.store.putState(g, &me), EpochAuthenticator: g.EpochAuthenticator()}, nil
}

func (s *Server) GroupInfo(_ context.Context, req *mlsclientpb.GroupInfoRequest) (*mlsclientpb.GroupInfoResponse, error) {
	st, err := s.store.state(req.StateId)
	if err != nil {
		return nil, toStatus("GroupInfo", err)
	}
	gi, err := st.g.GroupInfo(group.GroupInfoOptions{RatchetTree: !req.ExternalTree, ExternalPub: true})
	if err != nil {
		return nil, toStatus("GroupInfo", err)
	}
	resp := &mlsclientpb.GroupInfoResponse{GroupInfo: codec.Marshal(&message.MLSMessage{Version: message.MLS10, WireFormat: message.WireFormatGroupInfo, GroupInfo: gi})}
	if req.ExternalTree {
		resp.RatchetTree = encodeTree(st.g)
	}
	return resp, nil
}

func (s *Server) StateAuth(_ context.Context, req *mlsclientpb.StateAuthRequest) (*mlsclientpb.StateAuthResponse, error) {
	st, err := s.store.state(req.StateId)
	if err != nil {
		return nil, toStatus("StateAuth", err)
	}
	return &mlsclientpb.StateAuthResponse{StateAuthSecret: st.g.EpochAuthenticator()}, nil
}

func (s *Server) Export(_ context.Context, req *mlsclientpb.ExportRequest) (*mlsclientpb.ExportResponse, error) {
	st, err := s.store.state(req.StateId)
	if err != nil {
		return nil, toStatus("Export", err)
	}
	// The exporter's length is a uint16 (RFC 9420 §8.5).
	if req.KeyLength > 0xffff {
		return nil, toStatus("Export", fmt.Errorf("%w: key_length %d exceeds 65535", errBadRequest, req.KeyLength))
	}
	out, err := st.g.Export(req.Label, req.Context, int(req.KeyLength))
	if err != nil {
		return nil, toStatus("Export", err)
	}
	return &mlsclientpb.ExportResponse{ExportedSecret: out}, nil
}

func (s *Server) Protect(_ context.Context, req *mlsclientpb.ProtectRequest) (*mlsclientpb.ProtectResponse, error) {
	st, err := s.store.state(req.StateId)
	if err != nil {
		return nil, toStatus("Protect", err)
	}
	ct, err := st.g.Protect(req.Plaintext, req.AuthenticatedData)
	if err != nil {
		return nil, toStatus("Protect", err)
	}
	return &mlsclientpb.ProtectResponse{Ciphertext: ct}, nil
}

func (s *Server) Unprotect(_ context.Context, req *mlsclientpb.UnprotectRequest) (*mlsclientpb.UnprotectResponse, error) {
	st, err := s.store.state(req.StateId)
	if err != nil {
		return nil, toStatus("Unprotect", err)
	}
	r, err := st.g.Handle(req.Ciphertext)
	if err != nil {
		return nil, toStatus("Unprotect", err)
	}
	if r.ContentType != message.ContentApplication {
		return nil, toStatus("Unprotect", fmt.Errorf("%w: content type %d is not application data", errBadRequest, r.ContentType))
	}
	return &mlsclientpb.UnprotectResponse{AuthenticatedData: r.AuthenticatedData, Plaintext: r.ApplicationData}, nil
}

func (s *Server) StorePSK(_ context.Context, req *mlsclientpb.StorePSKRequest) (*mlsclientpb.StorePSKResponse, error) {
	psks, err := s.store.psks(req.StateOrTransactionId)
	if err != nil {
		return nil, toStatus("StorePSK", err)
	}
	psks.AddExternal(req.PskId, req.PskSecret)
	return &mlsclientpb.StorePSKResponse{}, nil
}

func (s *Server) Free(_ context.Context, req *mlsclientpb.FreeRequest) (*mlsclientpb.FreeResponse, error) {
	s.store.Free(req.StateId)
	return &mlsclientpb.FreeResponse{}, nil
}

func encodeKeyPackage(kp *message.KeyPackage) []byte {
	return codec.Marshal(&message.MLSMessage{Version: message.MLS10, WireFormat: message.WireFormatKeyPackage, KeyPackage: kp})
}

// decodeKeyPackage reads an MLSMessage carrying a KeyPackage.
func decodeKeyPackage(data []byte) (*message.KeyPackage, error) {
	m, err := message.ParseMLSMessage(data)
	if err != nil {
		return nil, fmt.Errorf("%w: key package: %w", group.ErrMalformed, err)
	}
	if m.WireFormat != message.WireFormatKeyPackage {
		return nil, fmt.Errorf("%w: wire format %d, want mls_key_package", group.ErrMalformed, m.WireFormat)
	}
	return m.KeyPackage, nil
}

// decodeGroupInfo reads an MLSMessage carrying a GroupInfo.
func decodeGroupInfo(data []byte) (*message.GroupInfo, error) {
	m, err := message.ParseMLSMessage(data)
	if err != nil {
		return nil, fmt.Errorf("%w: group info: %w", group.ErrMalformed, err)
	}
	if m.WireFormat != message.WireFormatGroupInfo {
		return nil, fmt.Errorf("%w: wire format %d, want mls_group_info", group.ErrMalformed, m.WireFormat)
	}
	return m.GroupInfo, nil
}

// decodeTree reads a ratchet tree delivered out of band; empty means none.
func decodeTree(data []byte) (message.RatchetTree, error) {
	if len(data) == 0 {
		return nil, nil
	}
	var rt message.RatchetTree
	if err := codec.Unmarshal(data, &rt, "ratchet_tree"); err != nil {
		return nil, fmt.Errorf("%w: %w", group.ErrMalformed, err)
	}
	return rt, nil
}

func encodeTree(g *group.Group) []byte {
	return codec.Marshal(g.Public().Tree().RatchetTree())
}

func extensions(in []*mlsclientpb.Extension) ([]message.Extension, error) {
	out := make([]message.Extension, 0, len(in))
	for _, e := range in {
		if e.ExtensionType > 0xffff {
			return nil, fmt.Errorf("%w: extension type %d", errBadRequest, e.ExtensionType)
		}
		out = append(out, message.Extension{Type: message.ExtensionType(e.ExtensionType), Data: nonNil(e.ExtensionData)})
	}
	return out, nil
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
