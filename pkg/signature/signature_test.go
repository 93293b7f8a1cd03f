package signature

import (
	"errors"
	"testing"
)

// Vectors computed with `openssl dgst -<alg> -hmac lab-secret` over the body.
func TestSignVectors(t *testing.T) {
	body := []byte("The quick brown fox")
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"sha256 hex with prefix (EDA default shape)", Config{Secret: []byte("lab-secret"), Prefix: "sha256="}, "sha256=5acfdfaf8ea59b5d9713f754581ef2d836cd6fa4cbe4a4518b352b31aca295b0"},
		{"sha512 hex", Config{Secret: []byte("lab-secret"), Algorithm: "sha512"}, "6a1885391d4d7eb702ee565d2c3c8897e148e5fab91e062c419b2e3cccf3e59cbca5cf05e202099763a22af3ede9dff342ca71f93dabd2c48136be5b04994b0d"},
		{"sha1 hex", Config{Secret: []byte("lab-secret"), Algorithm: "sha1", Prefix: "sha1="}, "sha1=a98cf431731ca6154ee57edd8629542b8af1e51b"},
		{"sha256 base64", Config{Secret: []byte("lab-secret"), Encoding: "base64"}, "Ws/fr46lm12XE/dUWB7y2DbNb6TL5KRRizUrMayilbA="},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.cfg.Sign(body); got != tt.want {
				t.Fatalf("Sign = %s, want %s", got, tt.want)
			}
			if err := tt.cfg.Verify(tt.want, body); err != nil {
				t.Fatalf("Verify(own vector) = %v", err)
			}
		})
	}
}

func TestVerifyErrors(t *testing.T) {
	cfg := Config{Secret: []byte("lab-secret"), Prefix: "sha256="}
	body := []byte("The quick brown fox")
	good := cfg.Sign(body)
	tests := []struct {
		name   string
		header string
		body   []byte
		want   error
	}{
		{"missing", "", body, ErrMissing},
		{"tampered body", good, []byte("The quick brown fox!"), ErrMismatch},
		{"not hex", "sha256=zzzz", body, ErrMismatch},
		{"wrong secret", Config{Secret: []byte("other"), Prefix: "sha256="}.Sign(body), body, ErrMismatch},
		{"upper-case hex accepted", "sha256=5ACFDFAF8EA59B5D9713F754581EF2D836CD6FA4CBE4A4518B352B31ACA295B0", body, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := cfg.Verify(tt.header, tt.body); !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		cfg Config
		ok  bool
	}{
		{Config{Secret: []byte("s")}, true},
		{Config{}, false},
		{Config{Secret: []byte("s"), Algorithm: "md5"}, false},
		{Config{Secret: []byte("s"), Encoding: "base32"}, false},
	}
	for _, tt := range tests {
		if err := tt.cfg.Validate(); (err == nil) != tt.ok {
			t.Errorf("Validate(%+v) = %v, want ok=%v", tt.cfg, err, tt.ok)
		}
	}
	if got := (Config{}).HeaderName(); got != DefaultHeader {
		t.Errorf("default header %q", got)
	}
}
