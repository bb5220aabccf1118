// Command mls-interop-client serves the MLS interop harness's MLSClient
// gRPC service (interop/proto/mls_client.proto) backed by our RFC 9420
// implementation, so that the harness's runner or interop/runner can test
// it against other implementations.
//
// Usage: mls-interop-client [-addr 127.0.0.1] [-port 50051]. Port 0 picks a
// free one; the chosen port is printed as "listening <port>" on stdout
// once the server accepts connections.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"strconv"

	"google.golang.org/grpc"

	"github.com/mls-appservice/mls-appservice/interop/client"
	"github.com/mls-appservice/mls-appservice/interop/mlsclientpb"
)

func main() {
	addr := flag.String("addr", "127.0.0.1", "address to listen on")
	port := flag.Int("port", 50051, "TCP port (0: any free port)")
	flag.Parse()

	lis, err := net.Listen("tcp", net.JoinHostPort(*addr, strconv.Itoa(*port)))
	if err != nil {
		log.Fatalf("mls-interop-client: %v", err)
	}
	srv := grpc.NewServer()
	mlsclientpb.RegisterMLSClientServer(srv, client.NewServer())
	fmt.Printf("listening %d\n", lis.Addr().(*net.TCPAddr).Port)
	if err := srv.Serve(lis); err != nil {
		log.Fatalf("mls-interop-client: %v", err)
	}
}
