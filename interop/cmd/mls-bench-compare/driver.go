package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	pb "github.com/mls-appservice/mls-appservice/interop/mlsclientpb"
	"github.com/mls-appservice/mls-appservice/interop/runner"
	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/group"
	"github.com/mls-appservice/mls-appservice/mls/message"
)

// driver is a peer implementation behind its MLSClient gRPC server.
type driver struct {
	proc *runner.Process
	c    *runner.Client
	rpc  pb.MLSClientClient
	ctx  context.Context
}

func startDriver(bin string) (*driver, error) {
	if bin == "" {
		return nil, errors.New("no driver binary: pass -openmls or set MLSAS_OPENMLS_DRIVER (interop/openmls/build.sh prints the path)")
	}
	ctx := context.Background()
	p, err := runner.StartProcess(ctx, bin, "--port", "0")
	if err != nil {
		return nil, err
	}
	c, err := runner.Dial(ctx, p.Addr)
	if err != nil {
		p.Stop()
		return nil, err
	}
	if !c.Supports(uint16(cs)) {
		c.Close()
		p.Stop()
		return nil, fmt.Errorf("%s does not support suite %d", c.Name, cs)
	}
	return &driver{proc: p, c: c, rpc: c.RPC(), ctx: ctx}, nil
}

func (d *driver) stop() {
	d.c.Close()
	d.proc.Stop()
}

// overhead is the fastest of several round trips of a trivial RPC on
// state, the transport's share of each timed RPC.
func (d *driver) overhead(state uint32) (time.Duration, error) {
	best := time.Hour
	for range 50 {
		start := time.Now()
		if _, err := d.rpc.StateAuth(d.ctx, &pb.StateAuthRequest{StateId: state}); err != nil {
			return 0, err
		}
		best = min(best, time.Since(start))
	}
	return best, nil
}

// keyPackage has the driver make a KeyPackage; it returns the transaction
// to join with and the encoded KeyPackage.
func (d *driver) keyPackage(name string) (uint32, []byte, error) {
	r, err := d.rpc.CreateKeyPackage(d.ctx, &pb.CreateKeyPackageRequest{CipherSuite: uint32(cs), Identity: []byte(name)})
	if err != nil {
		return 0, nil, fmt.Errorf("CreateKeyPackage: %w", err)
	}
	return r.TransactionId, r.KeyPackage, nil
}

func (d *driver) join(tx uint32, welcome []byte) (uint32, error) {
	r, err := d.rpc.JoinGroup(d.ctx, &pb.JoinGroupRequest{TransactionId: tx, Welcome: welcome, Identity: []byte("joiner")})
	if err != nil {
		return 0, fmt.Errorf("JoinGroup: %w", err)
	}
	return r.StateId, nil
}

// commitAndMerge has x commit req and adopt it; y (if non-zero) processes
// it. It returns both new states and the commit.
func (d *driver) commitAndMerge(x, y uint32, req *pb.CommitRequest) (uint32, uint32, *pb.CommitResponse, error) {
	req.StateId = x
	c, err := d.rpc.Commit(d.ctx, req)
	if err != nil {
		return 0, 0, nil, fmt.Errorf("Commit: %w", err)
	}
	nx, err := d.mergePending(x)
	if err != nil {
		return 0, 0, nil, err
	}
	if y == 0 {
		return nx, 0, c, nil
	}
	ny, err := d.handle(y, c.Commit)
	return nx, ny, c, err
}

func (d *driver) mergePending(x uint32) (uint32, error) {
	r, err := d.rpc.HandlePendingCommit(d.ctx, &pb.HandlePendingCommitRequest{StateId: x})
	if err != nil {
		return 0, fmt.Errorf("HandlePendingCommit: %w", err)
	}
	return r.StateId, nil
}

func (d *driver) handle(y uint32, commit []byte) (uint32, error) {
	r, err := d.rpc.HandleCommit(d.ctx, &pb.HandleCommitRequest{StateId: y, Commit: commit})
	if err != nil {
		return 0, fmt.Errorf("HandleCommit: %w", err)
	}
	return r.StateId, nil
}

func addDesc(kp []byte) *pb.ProposalDescription {
	return &pb.ProposalDescription{ProposalType: []byte("add"), KeyPackage: kp}
}

func encodeKeyPackage(kp *message.KeyPackage) []byte {
	return codec.Marshal(&message.MLSMessage{Version: message.MLS10, WireFormat: message.WireFormatKeyPackage, KeyPackage: kp})
}

// setup builds the group of n members in the driver, as oursSetup does in
// ours, and returns X and Y.
func (d *driver) setup(n int, full bool) (x, y uint32, err error) {
	xtx, xkp, err := d.keyPackage("x")
	if err != nil {
		return 0, 0, err
	}
	ytx, ykp, err := d.keyPackage("y")
	if err != nil {
		return 0, 0, err
	}
	if !full {
		// X creates the group; the members other than Y are ours, which
		// only their KeyPackages represent.
		g, err := d.rpc.CreateGroup(d.ctx, &pb.CreateGroupRequest{GroupId: []byte(fmt.Sprintf("bench-%d", n)), CipherSuite: uint32(cs), Identity: []byte("x")})
		if err != nil {
			return 0, 0, fmt.Errorf("CreateGroup: %w", err)
		}
		descs := []*pb.ProposalDescription{addDesc(ykp)}
		for i := 2; i < n; i++ {
			kp, err := newMember(cs, fmt.Sprintf("member-%d", i))
			if err != nil {
				return 0, 0, err
			}
			descs = append(descs, addDesc(encodeKeyPackage(&kp.KeyPackage)))
		}
		x, _, c, err := d.commitAndMerge(g.StateId, 0, &pb.CommitRequest{ByValue: descs, ForcePath: true})
		if err != nil {
			return 0, 0, fmt.Errorf("bulk add: %w", err)
		}
		y, err := d.join(ytx, c.Welcome)
		return x, y, err
	}
	// Our member of a synthetic full group adds X and Y.
	m, err := fullGroup(cs, n-2)
	if err != nil {
		return 0, 0, err
	}
	var adds []*message.Proposal
	for _, b := range [][]byte{xkp, ykp} {
		msg, err := message.ParseMLSMessage(b)
		if err != nil || msg.KeyPackage == nil {
			return 0, 0, fmt.Errorf("driver's key package: %v", err)
		}
		adds = append(adds, group.AddProposal(msg.KeyPackage))
	}
	pc, err := m.Commit(group.CommitOptions{Proposals: adds, ForcePath: true})
	if err != nil {
		return 0, 0, err
	}
	if x, err = d.join(xtx, pc.Welcome); err != nil {
		return 0, 0, err
	}
	if y, err = d.join(ytx, pc.Welcome); err != nil {
		return 0, 0, err
	}
	if x, y, _, err = d.commitAndMerge(x, y, &pb.CommitRequest{ForcePath: true}); err != nil {
		return 0, 0, err
	}
	y, x, _, err = d.commitAndMerge(y, x, &pb.CommitRequest{ForcePath: true})
	return x, y, err
}

// run sets the group up and runs the workloads, each timed around its RPC.
func (d *driver) run(n int, full bool, reps int) (results, error) {
	x, y, err := d.setup(n, full)
	if err != nil {
		return nil, fmt.Errorf("setup: %w", err)
	}
	overhead, err := d.overhead(x)
	if err != nil {
		return nil, err
	}
	if verbose {
		fmt.Fprintf(os.Stderr, "  rpc round trip %v\n", overhead)
	}
	t := timer{}
	for r := range reps {
		tx, kp, err := d.keyPackage(fmt.Sprintf("joiner-%d", r))
		if err != nil {
			return nil, err
		}
		var c *pb.CommitResponse
		if err := t.time("add_commit", func() (err error) {
			c, err = d.rpc.Commit(d.ctx, &pb.CommitRequest{StateId: x, ByValue: []*pb.ProposalDescription{addDesc(kp)}})
			return err
		}); err != nil {
			return nil, err
		}
		if x, err = d.mergePending(x); err != nil {
			return nil, err
		}
		if y, err = d.handle(y, c.Commit); err != nil {
			return nil, err
		}
		var joined uint32
		if err := t.time("join_welcome", func() (err error) { joined, err = d.join(tx, c.Welcome); return err }); err != nil {
			return nil, err
		}
		d.rpc.Free(d.ctx, &pb.FreeRequest{StateId: joined})
		if err := t.time("create_commit", func() (err error) {
			c, err = d.rpc.Commit(d.ctx, &pb.CommitRequest{StateId: x, ForcePath: true})
			return err
		}); err != nil {
			return nil, err
		}
		if x, err = d.mergePending(x); err != nil {
			return nil, err
		}
		if err := t.time("process_commit", func() (err error) { y, err = d.handle(y, c.Commit); return err }); err != nil {
			return nil, err
		}
	}
	d.rpc.Free(d.ctx, &pb.FreeRequest{StateId: x})
	d.rpc.Free(d.ctx, &pb.FreeRequest{StateId: y})
	return t.medians(overhead), nil
}
