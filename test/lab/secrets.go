package lab

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

type secrets struct {
	Token    string `json:"token"`
	S3Access string `json:"s3AccessKey"`
	S3Secret string `json:"s3SecretKey"`

	token, s3Access, s3Secret string
}

func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return hex.EncodeToString(b)
}

// writeSecrets creates the lab's credentials: API token, S3 keys, the
// service-account signing key, a CA with serving certificates for both API
// servers, host keys for both NFS hosts and the lab's SSH key.
func writeSecrets(l *Lab) (*secrets, error) {
	s := &secrets{Token: randHex(16), S3Access: "lab" + randHex(6), S3Secret: randHex(20)}
	b, _ := json.Marshal(s)
	if err := writeFile(filepath.Join(l.Dir, "secrets.json"), b, 0o600); err != nil {
		return nil, err
	}
	s.token, s.s3Access, s.s3Secret = s.Token, s.S3Access, s.S3Secret

	pki := filepath.Join(l.Dir, "pki")
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("service-account key: %w", err)
	}
	if err := writePEM(filepath.Join(pki, "sa.key"), "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(saKey)); err != nil {
		return nil, err
	}
	caKey, caCert, err := newCA()
	if err != nil {
		return nil, err
	}
	if err := writePEM(filepath.Join(pki, "ca.crt"), "CERTIFICATE", caCert.Raw); err != nil {
		return nil, err
	}
	// The aggregation layer's client certificate: each kube-apiserver proxies
	// aggregated APIs (the simulated subresources.kubevirt.io) with it.
	if err := newProxyClientCert(caKey, caCert, filepath.Join(pki, "front-proxy-client")); err != nil {
		return nil, err
	}
	for _, site := range []*Site{&l.Primary, &l.DR} {
		if err := newServingCert(caKey, caCert, site.apiIP, filepath.Join(pki, site.Name)); err != nil {
			return nil, err
		}
		tokens := fmt.Sprintf("%s,admin,admin,system:masters\n", s.Token)
		if err := writeFile(filepath.Join(l.Dir, site.Name, "tokens.csv"), []byte(tokens), 0o600); err != nil {
			return nil, err
		}
		if err := writeKubeconfig(site, filepath.Join(pki, "ca.crt"), s.Token); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(filepath.Dir(l.SSHKey), 0o700); err != nil {
		return nil, fmt.Errorf("ssh dir: %w", err)
	}
	if err := sshKeygen(l.SSHKey, "ocpv-dr-lab"); err != nil {
		return nil, err
	}
	var known strings.Builder
	for _, site := range []*Site{&l.Primary, &l.DR} {
		hk := filepath.Join(l.Dir, site.Name, "ssh_host_ed25519_key")
		if err := sshKeygen(hk, site.Name+"-nfs"); err != nil {
			return nil, err
		}
		pub, err := os.ReadFile(hk + ".pub")
		if err != nil {
			return nil, fmt.Errorf("read host key: %w", err)
		}
		f := strings.Fields(string(pub))
		fmt.Fprintf(&known, "[%s]:%d %s %s\n", site.NFSHost, site.SSHPort, f[0], f[1])
	}
	if err := writeFile(l.KnownHosts, []byte(known.String()), 0o644); err != nil {
		return nil, err
	}
	return s, nil
}

func readSecrets(dir string) (*secrets, error) {
	b, err := os.ReadFile(filepath.Join(dir, "secrets.json"))
	if err != nil {
		return nil, fmt.Errorf("read lab secrets: %w", err)
	}
	s := &secrets{}
	if err := json.Unmarshal(b, s); err != nil {
		return nil, fmt.Errorf("parse lab secrets: %w", err)
	}
	s.token, s.s3Access, s.s3Secret = s.Token, s.S3Access, s.S3Secret
	return s, nil
}

func sshKeygen(path, comment string) error {
	_ = os.Remove(path)
	_ = os.Remove(path + ".pub")
	out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ssh-keygen %s: %w: %s", path, err, out)
	}
	return nil
}

func writePEM(path, typ string, der []byte) error {
	return writeFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}

func newCA() (*ecdsa.PrivateKey, *x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "ocpv-dr lab CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(10 * 365 * 24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("CA cert: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("CA cert: %w", err)
	}
	return key, cert, nil
}

func newServingCert(caKey *ecdsa.PrivateKey, ca *x509.Certificate, ip, prefix string) error {
	return newLeafCert(caKey, ca, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP(ip), net.ParseIP("10.0.0.1")},
		DNSNames:    []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
	}, prefix+"-serving")
}

func newProxyClientCert(caKey *ecdsa.PrivateKey, ca *x509.Certificate, prefix string) error {
	return newLeafCert(caKey, ca, &x509.Certificate{
		Subject:     pkix.Name{CommonName: frontProxyClient},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, prefix)
}

// newLeafCert signs tmpl (subject, usages, names) with the lab CA and writes
// prefix.crt and prefix.key.
func newLeafCert(caKey *ecdsa.PrivateKey, ca *x509.Certificate, tmpl *x509.Certificate, prefix string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("%s key: %w", prefix, err)
	}
	tmpl.SerialNumber, _ = rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(10 * 365 * 24 * time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("%s cert: %w", prefix, err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fmt.Errorf("%s key: %w", prefix, err)
	}
	if err := writePEM(prefix+".crt", "CERTIFICATE", der); err != nil {
		return err
	}
	return writePEM(prefix+".key", "EC PRIVATE KEY", kb)
}

func writeKubeconfig(s *Site, caFile, token string) error {
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: %[1]s
  cluster:
    server: %[2]s
    certificate-authority: %[3]s
users:
- name: admin
  user:
    token: %[4]s
contexts:
- name: %[1]s
  context:
    cluster: %[1]s
    user: admin
    namespace: default
current-context: %[1]s
`, s.Name, s.APIServerURL, caFile, token)
	return writeFile(s.Kubeconfig, []byte(kc), 0o600)
}
