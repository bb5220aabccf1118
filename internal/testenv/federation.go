package testenv

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
)

// FederationOptions configures the two homeservers of a federation.
type FederationOptions struct {
	A, B SynapseOptions
}

// Federation is two private Synapses that federate with each other over
// loopback, as SyTest runs them (DESIGN §7), with a switch on the link.
//
// Each server name is localhost:<port>, where <port> is a TCP proxy in the
// test process that forwards to the homeserver's real TLS federation
// listener. Partition closes every proxied connection and refuses new
// ones, in both directions; Heal lets them through again. A proxy rather
// than stopping a process: during a partition both homeservers keep
// running, so clients and appservices go on creating events on both sides,
// which is what a fork is; and a server name stays bound to the proxy's
// port, which the test holds, across Restart.
//
// After Heal, a transaction that a homeserver was retrying when the link
// broke goes through within about a second (the federation retry settings
// are shortened, see renderSynapseConfig), and a destination it had
// marked down is woken by Heal itself.
type Federation struct {
	A, B    *Homeserver
	proxies []*linkSwitch
}

// StartFederation starts two federating Synapses in parallel and waits
// until both answer. Both are stopped when the test ends.
func StartFederation(t testing.TB, opts FederationOptions) *Federation {
	t.Helper()
	f := &Federation{}
	servers := make([]*Homeserver, 0, 2)
	for _, o := range []SynapseOptions{opts.A, opts.B} {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		proxy, err := newLinkSwitch("127.0.0.1:" + strconv.Itoa(port))
		if err != nil {
			t.Fatal(err)
		}
		// Registered before the homeserver's cleanup, so it runs after it:
		// the homeserver shuts down with its link still up.
		t.Cleanup(proxy.close)
		f.proxies = append(f.proxies, proxy)
		servers = append(servers, newHomeserver(t, o, &federationListener{port: port, proxy: proxy}))
	}
	f.A, f.B = servers[0], servers[1]

	var g errgroup.Group
	took := make([]time.Duration, len(servers))
	for i, h := range servers {
		g.Go(func() (err error) {
			if took[i], err = h.start(t.Context()); err != nil {
				return err
			}
			// Heal needs it; registering now keeps Heal quick.
			_, err = h.admin(t.Context())
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	for i, h := range servers {
		t.Logf("%s answered after %v", h, took[i].Round(time.Millisecond))
	}
	return f
}

// Partition cuts federation between the homeservers: open connections
// are reset and new ones refused, both ways, until Heal.
func (f *Federation) Partition() {
	for _, p := range f.proxies {
		p.setOpen(false)
	}
}

// Heal lets federation traffic through again and tells each homeserver
// that the other is back, as a request from it would (admin API
// reset_connection): Synapse then retries at once, also a destination
// it had marked down during the partition, which it would otherwise
// retry only on new traffic or its one-minute sweep.
func (f *Federation) Heal(t testing.TB) {
	t.Helper()
	for _, p := range f.proxies {
		p.setOpen(true)
	}
	for _, link := range [][2]*Homeserver{{f.A, f.B}, {f.B, f.A}} {
		if err := link[0].resetConnection(t.Context(), link[1].ServerName()); err != nil {
			t.Fatalf("heal: %s: %v", link[0], err)
		}
	}
}

// resetConnection clears the homeserver's backoff for destination and
// wakes its queue for it.
func (h *Homeserver) resetConnection(ctx context.Context, destination string) error {
	token, err := h.admin(ctx)
	if err != nil {
		return err
	}
	path := "/_synapse/admin/v1/federation/destinations/" + url.PathEscape(destination) + "/reset_connection"
	err = h.call(ctx, http.MethodPost, path, token, struct{}{}, &struct{}{})
	// 400: not backing off from it; 404: never talked to it. Nothing to wake.
	var se *statusError
	if errors.As(err, &se) && (se.status == http.StatusBadRequest || se.status == http.StatusNotFound) {
		return nil
	}
	return err
}

// federationListener is a homeserver's TLS federation listener and the
// switch in front of it that owns its server name's port.
type federationListener struct {
	port  int // Synapse's own listener
	proxy *linkSwitch
}

const (
	certFile = "federation.crt"
	keyFile  = "federation.key"
)

func (f *federationListener) serverName() string {
	return "localhost:" + strconv.Itoa(f.proxy.port())
}

// writeCertificate writes a self-signed certificate for localhost and its
// key into dir. Peers do not check it (federation_verify_certificates:
// false), but Synapse needs one for a TLS listener.
func (f *federationListener) writeCertificate(dir string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate TLS key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return fmt.Errorf("generate certificate serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("create TLS certificate: %w", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode TLS key: %w", err)
	}
	files := map[string]*pem.Block{
		certFile: {Type: "CERTIFICATE", Bytes: der},
		keyFile:  {Type: "PRIVATE KEY", Bytes: pkcs8},
	}
	for name, block := range files {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return nil
}
