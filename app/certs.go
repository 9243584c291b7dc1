package app

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
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

const certsDescription = `Create a certificate authority and, per node, one certificate for its API, agent gateway
and etcd (client and peer ports, usable both as server and as client certificate), with
the node's DNS names and IP addresses as subject alternative names; plus client
certificates for agents and the CLI (etcd client-certificate auth, mutual TLS).

Files go to --out: ca.pem and ca-key.pem, NODE.pem and NODE-key.pem, CLIENT.pem and
CLIENT-key.pem. Keys are written with mode 0600, certificates 0644, the directory 0700.
An existing CA in --out is reused, so nodes can be added later; existing node and client
certificates are kept unless --force is given.

A cluster configured with these files, as the printed backend.yml lines show, has mutual
TLS between etcd peers, TLS with client-certificate auth on etcd's client port, and TLS
on the API and the agent gateway.`

type certNode struct {
	name  string
	dns   []string
	ips   []net.IP
	hosts []string
}

var hostnameRE = regexp.MustCompile(`^[A-Za-z0-9*]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$`)

// parseCertNode reads NAME=HOST[,HOST…]; a bare NAME uses the name as its DNS name.
func parseCertNode(s string) (certNode, error) {
	name, hosts, _ := strings.Cut(s, "=")
	name = strings.TrimSpace(name)
	if name == "" || strings.ContainsAny(name, "/ \\") {
		return certNode{}, fmt.Errorf("--node %q: want NAME=HOST[,HOST…], e.g. backend-1=10.0.0.1,backend-1.example.com", s)
	}
	n := certNode{name: name}
	list := splitList(hosts)
	if len(list) == 0 {
		list = []string{name}
	}
	for _, h := range list {
		if ip := net.ParseIP(strings.Trim(h, "[]")); ip != nil {
			n.ips = append(n.ips, ip)
		} else if hostnameRE.MatchString(h) {
			n.dns = append(n.dns, h)
		} else {
			return certNode{}, fmt.Errorf("--node %q: %q is neither an IP address nor a DNS name", s, h)
		}
		n.hosts = append(n.hosts, h)
	}
	return n, nil
}

func runCerts(_ context.Context, env *Env, args []string) error {
	var (
		out            string
		nodes, clients []string
		days, caDays   int
		force          bool
	)
	fs := newModeFlags("certs", "certs --node NAME=HOST[,HOST…] … [flags]", certsDescription, env)
	fs.StringVar(&out, "out", "certs", "directory to write the CA, keys and certificates to")
	fs.StringArrayVar(&nodes, "node", nil, "a server: NAME=HOST[,HOST…] with its IPs and DNS names, e.g. --node backend-1=10.0.0.1,backend-1.example.com (repeat per node)")
	fs.StringArrayVar(&clients, "client", []string{"agent", "cli"}, "a client certificate to create, by name (repeat; default agent and cli)")
	fs.IntVar(&days, "days", 825, "validity of node and client certificates in days")
	fs.IntVar(&caDays, "ca-days", 3650, "validity of a new CA in days")
	fs.BoolVar(&force, "force", false, "replace existing node and client certificates")
	if err := parseModeFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected argument %q; name nodes with --node NAME=HOST (see 'picket certs --help')", fs.Arg(0))
	}
	if len(nodes) == 0 && len(clients) == 0 {
		return usageErrorf("give at least one --node NAME=HOST[,HOST…] (see 'picket certs --help')")
	}
	var parsed []certNode
	for _, s := range nodes {
		n, err := parseCertNode(s)
		if err != nil {
			return usageErrorf("%v", err)
		}
		parsed = append(parsed, n)
	}
	if err := os.MkdirAll(out, 0o700); err != nil {
		return err
	}
	_ = os.Chmod(out, 0o700)

	caCert, caKey, created, err := loadOrCreateCA(out, caDays)
	if err != nil {
		return err
	}
	if created {
		fmt.Fprintf(env.Stdout, "created CA        %s (valid until %s)\n", filepath.Join(out, "ca.pem"), caCert.NotAfter.Format("2006-01-02"))
	} else {
		fmt.Fprintf(env.Stdout, "reusing CA        %s\n", filepath.Join(out, "ca.pem"))
	}
	validity := time.Duration(days) * 24 * time.Hour
	for _, n := range parsed {
		tmpl := &x509.Certificate{
			Subject:     pkix.Name{CommonName: n.name, Organization: []string{"Picket"}},
			DNSNames:    n.dns,
			IPAddresses: n.ips,
			KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		}
		path, wrote, err := issue(out, n.name, tmpl, caCert, caKey, validity, force)
		if err != nil {
			return err
		}
		verb := "node cert"
		if !wrote {
			verb = "kept node cert"
		}
		fmt.Fprintf(env.Stdout, "%-17s %s (%s)\n", verb, path, strings.Join(n.hosts, ", "))
	}
	for _, c := range clients {
		if c == "" || strings.ContainsAny(c, "/ \\") {
			return usageErrorf("--client %q: want a plain name such as agent", c)
		}
		tmpl := &x509.Certificate{
			Subject:     pkix.Name{CommonName: c, Organization: []string{"Picket"}},
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}
		path, wrote, err := issue(out, c, tmpl, caCert, caKey, validity, force)
		if err != nil {
			return err
		}
		verb := "client cert"
		if !wrote {
			verb = "kept client cert"
		}
		fmt.Fprintf(env.Stdout, "%-17s %s\n", verb, path)
	}
	if len(parsed) > 0 {
		abs, _ := filepath.Abs(out)
		n := parsed[0]
		host := n.hosts[0]
		if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
			host = "[" + host + "]"
		}
		fmt.Fprintf(env.Stdout, `
backend.yml of %[1]s (likewise for the others):

  cert-file: "%[2]s/%[1]s.pem"
  key-file: "%[2]s/%[1]s-key.pem"
  trusted-ca-file: "%[2]s/ca.pem"
  api-url: "https://%[3]s:8080"
  etcd-cert-file: "%[2]s/%[1]s.pem"
  etcd-key-file: "%[2]s/%[1]s-key.pem"
  etcd-trusted-ca-file: "%[2]s/ca.pem"
  etcd-client-cert-auth: true
  etcd-peer-cert-file: "%[2]s/%[1]s.pem"
  etcd-peer-key-file: "%[2]s/%[1]s-key.pem"
  etcd-peer-trusted-ca-file: "%[2]s/ca.pem"
  etcd-peer-client-cert-auth: true
  etcd-listen-client-urls: "https://%[3]s:2379"
  etcd-advertise-client-urls: "https://%[3]s:2379"
  etcd-listen-peer-urls: "https://%[3]s:2380"
  etcd-initial-advertise-peer-urls: "https://%[3]s:2380"

agents: backend-url wss://…:8081 and trusted-ca-file %[2]s/ca.pem;
CLI: picket login --api-url https://%[3]s:8080 --trusted-ca-file %[2]s/ca.pem
`, n.name, abs, host)
	}
	return nil
}

// loadOrCreateCA reuses dir/ca.pem and dir/ca-key.pem, or creates them.
func loadOrCreateCA(dir string, days int) (*x509.Certificate, *ecdsa.PrivateKey, bool, error) {
	certPath, keyPath := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	certPEM, cerr := os.ReadFile(certPath)
	keyPEM, kerr := os.ReadFile(keyPath)
	switch {
	case cerr == nil && kerr == nil:
		cb, _ := pem.Decode(certPEM)
		kb, _ := pem.Decode(keyPEM)
		if cb == nil || kb == nil {
			return nil, nil, false, fmt.Errorf("%s or %s is not PEM", certPath, keyPath)
		}
		cert, err := x509.ParseCertificate(cb.Bytes)
		if err != nil {
			return nil, nil, false, fmt.Errorf("%s: %w", certPath, err)
		}
		key, err := x509.ParseECPrivateKey(kb.Bytes)
		if err != nil {
			return nil, nil, false, fmt.Errorf("%s: %w (picket certs reuses only the EC keys it creates)", keyPath, err)
		}
		return cert, key, false, nil
	case errors.Is(cerr, fs.ErrNotExist) && errors.Is(kerr, fs.ErrNotExist):
	case cerr != nil && !errors.Is(cerr, fs.ErrNotExist):
		return nil, nil, false, cerr
	case kerr != nil && !errors.Is(kerr, fs.ErrNotExist):
		return nil, nil, false, kerr
	default:
		return nil, nil, false, fmt.Errorf("%s and %s must both exist or neither", certPath, keyPath)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, false, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "Picket CA", Organization: []string{"Picket"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Duration(days) * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, false, err
	}
	cert, _ := x509.ParseCertificate(der)
	if err := writePEMs(certPath, keyPath, der, key); err != nil {
		return nil, nil, false, err
	}
	return cert, key, true, nil
}

// issue signs tmpl for name with the CA into dir/name.pem and dir/name-key.pem, unless
// they exist and force is not set.
func issue(dir, name string, tmpl *x509.Certificate, ca *x509.Certificate, caKey *ecdsa.PrivateKey, validity time.Duration, force bool) (string, bool, error) {
	certPath, keyPath := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	if _, err := os.Stat(certPath); err == nil && !force {
		return certPath, false, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", false, err
	}
	tmpl.SerialNumber = serial()
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(validity)
	if tmpl.NotAfter.After(ca.NotAfter) {
		tmpl.NotAfter = ca.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return "", false, fmt.Errorf("sign %s: %w", name, err)
	}
	return certPath, true, writePEMs(certPath, keyPath, der, key)
}

// writePEMs writes a certificate (0644) and its key (0600), the key first, each
// replaced atomically.
func writePEMs(certPath, keyPath string, der []byte, key *ecdsa.PrivateKey) error {
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return err
	}
	return writeFileAtomic(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}
