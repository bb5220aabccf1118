package runner

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/mls-appservice/mls-appservice/interop/mlsclientpb"
)

// maxMessage is the largest gRPC message a Client sends or takes.
const maxMessage = 256 << 20

// Client is one MLSClient server under test.
type Client struct {
	Name   string
	suites map[uint32]bool
	rpc    pb.MLSClientClient
	conn   *grpc.ClientConn
}

// Dial connects to an MLSClient server at addr (host:port) and asks for its
// name and cipher suites.
func Dial(ctx context.Context, addr string) (*Client, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		// A Welcome of a 10,000-member group with its ratchet tree is
		// larger than gRPC's default 4 MiB.
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessage), grpc.MaxCallSendMsgSize(maxMessage)))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	c := &Client{rpc: pb.NewMLSClientClient(conn), conn: conn, suites: map[uint32]bool{}}
	name, err := c.rpc.Name(ctx, &pb.NameRequest{}, grpc.WaitForReady(true))
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("name of %s: %w", addr, err)
	}
	c.Name = name.GetName()
	suites, err := c.rpc.SupportedCiphersuites(ctx, &pb.SupportedCiphersuitesRequest{})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("cipher suites of %s: %w", c.Name, err)
	}
	for _, s := range suites.GetCiphersuites() {
		c.suites[s] = true
	}
	return c, nil
}

// Supports reports whether the client announced the cipher suite.
func (c *Client) Supports(suite uint16) bool { return c.suites[uint32(suite)] }

// RPC returns the client's MLSClient stub, for callers that drive a
// server themselves (the comparison benchmark).
func (c *Client) RPC() pb.MLSClientClient { return c.rpc }

// Close releases the connection.
func (c *Client) Close() error { return c.conn.Close() }
