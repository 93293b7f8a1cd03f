// Package signature signs and verifies webhook bodies with an HMAC, in the
// format ansible.eda.webhook checks: a header (X-Hub-Signature-256 by
// default) holding an optional prefix ("sha256=") and the digest in hex or
// base64.
package signature

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // offered for compatibility with GitHub-style sha1 signatures
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"
)

// Errors returned by Verify: a missing signature is a 400 under EDA, a wrong
// one a 401.
var (
	ErrMissing  = errors.New("signature header missing")
	ErrMismatch = errors.New("signature does not match")
)

// DefaultHeader is the header ansible.eda.webhook reads by default.
const DefaultHeader = "X-Hub-Signature-256"

// Config describes one HMAC scheme.
type Config struct {
	Secret    []byte
	Algorithm string // sha256 (default), sha1, sha512
	Header    string // default X-Hub-Signature-256
	Prefix    string // e.g. "sha256="; empty for none
	Encoding  string // hex (default) or base64
}

// Validate lists the problems with c.
func (c Config) Validate() error {
	var errs []error
	if len(c.Secret) == 0 {
		errs = append(errs, errors.New("HMAC secret is empty"))
	}
	if _, err := c.newHash(); err != nil {
		errs = append(errs, err)
	}
	switch c.Encoding {
	case "", "hex", "base64":
	default:
		errs = append(errs, fmt.Errorf("HMAC encoding %q: want hex or base64", c.Encoding))
	}
	return errors.Join(errs...)
}

// HeaderName returns the header that carries the signature.
func (c Config) HeaderName() string {
	if c.Header == "" {
		return DefaultHeader
	}
	return c.Header
}

func (c Config) newHash() (func() hash.Hash, error) {
	switch strings.ToLower(c.Algorithm) {
	case "", "sha256":
		return sha256.New, nil
	case "sha512":
		return sha512.New, nil
	case "sha1":
		return sha1.New, nil
	default:
		return nil, fmt.Errorf("HMAC algorithm %q: want sha256, sha512 or sha1", c.Algorithm)
	}
}

func (c Config) digest(body []byte) ([]byte, error) {
	h, err := c.newHash()
	if err != nil {
		return nil, err
	}
	m := hmac.New(h, c.Secret)
	m.Write(body)
	return m.Sum(nil), nil
}

func (c Config) encode(b []byte) string {
	if c.Encoding == "base64" {
		return base64.StdEncoding.EncodeToString(b)
	}
	return hex.EncodeToString(b)
}

// Sign returns the full header value for body, prefix included.
func (c Config) Sign(body []byte) string {
	d, err := c.digest(body)
	if err != nil {
		// An invalid algorithm is rejected by Validate at start-up.
		return ""
	}
	return c.Prefix + c.encode(d)
}

// Verify checks headerValue against body in constant time.
func (c Config) Verify(headerValue string, body []byte) error {
	if headerValue == "" {
		return ErrMissing
	}
	want, err := c.digest(body)
	if err != nil {
		return err
	}
	got := strings.TrimPrefix(strings.TrimSpace(headerValue), c.Prefix)
	var raw []byte
	if c.Encoding == "base64" {
		raw, err = base64.StdEncoding.DecodeString(got)
	} else {
		raw, err = hex.DecodeString(strings.ToLower(got))
	}
	if err != nil || !hmac.Equal(raw, want) {
		return ErrMismatch
	}
	return nil
}
