package etcdx_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/picketmon/picket/etcdx"
)

// writeCert writes a certificate and key signed by parent (self-signed when parent is
// nil) to dir/name.pem and dir/name-key.pem.
func writeCert(t *testing.T, dir, name string, tmpl *x509.Certificate, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+"-key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func TestClientTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts its own etcd member")
	}
	checkGoroutines(t)
	dir := t.TempDir()
	now := time.Now()
	ca, caKey := writeCert(t, dir, "ca", &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "picket test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}, nil, nil)
	writeCert(t, dir, "server", &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "server"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}, ca, caKey)
	writeCert(t, dir, "client", &x509.Certificate{
		SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "client"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, ca, caKey)
	p := func(name string) string { return filepath.Join(dir, name) }

	logger, _ := testLogger(t, slog.LevelDebug)
	cfg, err := memberConfig(filepath.Join(dir, "etcd"), logger)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ListenClientURLs[0] = strings.Replace(cfg.ListenClientURLs[0], "http://", "https://", 1)
	cfg.ClientTLS = etcdx.TLSFiles{CertFile: p("server.pem"), KeyFile: p("server-key.pem"), TrustedCAFile: p("ca.pem"), ClientCertAuth: true}
	e, err := etcdx.StartEmbedded(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	if got := e.ClientURLs(); len(got) != 1 || !strings.HasPrefix(got[0], "https://127.0.0.1:") {
		t.Fatalf("ClientURLs = %q", got)
	}

	c, err := etcdx.NewClient(etcdx.ClientConfig{Endpoints: e.ClientURLs(),
		CertFile: p("client.pem"), KeyFile: p("client-key.pem"), TrustedCAFile: p("ca.pem")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := etcdx.NewStore(c).Put(t.Context(), etcdx.Key("tls"), []byte("ok")); err != nil {
		t.Fatalf("Put over mutual TLS: %v", err)
	}

	// Without a client certificate the member refuses the client.
	anon, err := etcdx.NewClient(etcdx.ClientConfig{Endpoints: e.ClientURLs(), TrustedCAFile: p("ca.pem")})
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	if _, err := etcdx.NewStore(anon).Get(ctx, etcdx.Key("tls")); err == nil {
		t.Fatal("Get without a client certificate succeeded")
	}
}
