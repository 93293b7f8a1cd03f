// Package lab runs ocpv-dr's two-site lab on one machine: for each site a real
// etcd, kube-apiserver and kube-controller-manager, the CRDs the product needs
// and an "NFS host" (sshd + rsync on its own loopback address with its own
// export root), plus one S3 endpoint (versitygw). `make lab-up` (labctl) and
// the Go tests (Main/Get) start the same lab through this package.
package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Site is one side of the lab: a cluster and its NFS host.
type Site struct {
	Name         string `json:"name"`
	APIServerURL string `json:"apiServerURL"`
	Kubeconfig   string `json:"kubeconfig"`
	Token        string `json:"-"`
	NFSHost      string `json:"nfsHost"`
	SSHPort      int    `json:"sshPort"`
	ExportRoot   string `json:"exportRoot"`
	// Reflink is true when ExportRoot is an XFS filesystem with reflink
	// (the lab runs as root with xfsprogs), so captures are point-in-time.
	Reflink bool `json:"reflink"`

	apiIP string
}

// RESTConfig returns a client configuration for the site's API server.
func (s *Site) RESTConfig() (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", s.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig %s: %w", s.Kubeconfig, err)
	}
	cfg.QPS, cfg.Burst = 200, 400
	return cfg, nil
}

// Lab is a running (or recorded) lab.
type Lab struct {
	Dir         string `json:"dir"`
	Block       string `json:"block"`
	Primary     Site   `json:"primary"`
	DR          Site   `json:"dr"`
	S3Endpoint  string `json:"s3Endpoint"`
	S3Bucket    string `json:"s3Bucket"`
	S3AccessKey string `json:"-"`
	S3SecretKey string `json:"-"`
	SSHKey      string `json:"sshKey"`
	KnownHosts  string `json:"knownHosts"`
	Inventory   string `json:"inventory"`
	EnvFile     string `json:"envFile"`
	LogDir      string `json:"logDir"`

	procs *procSet
}

// Options control where and how the lab starts.
type Options struct {
	// Dir holds all the lab's state: keys, data, logs, env and inventory.
	Dir string
	// Block is the first three octets of the loopback /24 the lab uses,
	// e.g. "127.0.0". Empty picks a free random block.
	Block string
	// BinDir holds kube-apiserver, kube-controller-manager, lab-etcd and
	// versitygw. Empty means <repo>/.cache/bin (built on demand).
	BinDir string
	// Detach starts the processes in their own session so that they outlive
	// the caller (labctl). Otherwise they die with the calling process.
	Detach bool
	// Logf receives progress lines; nil discards them.
	Logf func(format string, args ...any)
}

// Addresses within the block.
const (
	hostPrimaryAPI = "21"
	hostDRAPI      = "22"
	hostS3         = "30"
	hostPrimaryNFS = "11"
	hostDRNFS      = "12"
	apiPort        = 6443
	sshPort        = 2222
	s3Port         = 7070
	bucketName     = "oadp-backups"
	// frontProxyClient is the CN of the aggregation layer's client certificate.
	frontProxyClient = "front-proxy-client"
)

const stateFile = "lab.json"

// Start brings the whole lab up and returns once every part answers. On
// failure it stops what it started and returns an error that carries the
// failing part's log tail.
func Start(ctx context.Context, opts Options) (_ *Lab, err error) {
	if opts.Dir == "" {
		return nil, errors.New("lab: Options.Dir is required")
	}
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if err := checkHostTools(); err != nil {
		return nil, err
	}
	bin, err := ensureBinaries(opts.BinDir, logf)
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("lab dir: %w", err)
	}
	block := opts.Block
	if block == "" {
		if block, err = pickBlock(); err != nil {
			return nil, err
		}
	}
	l := newLayout(dir, block)
	if err := os.MkdirAll(l.LogDir, 0o755); err != nil {
		return nil, fmt.Errorf("lab dir: %w", err)
	}
	l.procs = newProcSet(filepath.Join(dir, "pids"), opts.Detach)
	defer func() {
		if err != nil {
			_ = l.procs.stopAll(10 * time.Second)
			_ = l.unmountExports()
		}
	}()

	sec, err := writeSecrets(l)
	if err != nil {
		return nil, err
	}
	l.Primary.Token, l.DR.Token = sec.token, sec.token
	l.S3AccessKey, l.S3SecretKey = sec.s3Access, sec.s3Secret

	logf("lab: starting in %s on %s.0/24", dir, block)
	for _, s := range []*Site{&l.Primary, &l.DR} {
		if err := l.prepareExportRoot(s, logf); err != nil {
			return nil, err
		}
		if err := l.startEtcd(bin, s); err != nil {
			return nil, err
		}
		if err := l.startSSHD(s); err != nil {
			return nil, err
		}
	}
	if err := l.startS3(bin); err != nil {
		return nil, err
	}
	for _, s := range []*Site{&l.Primary, &l.DR} {
		if err := l.waitEtcd(ctx, s); err != nil {
			return nil, err
		}
		if err := l.startAPIServer(bin, s); err != nil {
			return nil, err
		}
	}
	for _, s := range []*Site{&l.Primary, &l.DR} {
		if err := l.waitAPIServer(ctx, s); err != nil {
			return nil, err
		}
		if err := l.startControllerManager(bin, s); err != nil {
			return nil, err
		}
		if err := l.installCRDs(ctx, s); err != nil {
			return nil, err
		}
	}
	for _, s := range []*Site{&l.Primary, &l.DR} {
		if err := l.waitSSH(ctx, s); err != nil {
			return nil, err
		}
	}
	if err := l.waitS3(ctx); err != nil {
		return nil, err
	}
	if err := l.writeEnv(); err != nil {
		return nil, err
	}
	if err := l.writeInventory(); err != nil {
		return nil, err
	}
	if err := l.save(); err != nil {
		return nil, err
	}
	logf("lab: ready; env in %s, inventory in %s", l.EnvFile, l.Inventory)
	return l, nil
}

func newLayout(dir, block string) *Lab {
	ip := func(h string) string { return block + "." + h }
	site := func(name, apiHost, nfsHost string) Site {
		return Site{
			Name:         name,
			APIServerURL: fmt.Sprintf("https://%s:%d", ip(apiHost), apiPort),
			Kubeconfig:   filepath.Join(dir, name, "kubeconfig"),
			NFSHost:      ip(nfsHost),
			SSHPort:      sshPort,
			ExportRoot:   filepath.Join(dir, name, "export"),
			apiIP:        ip(apiHost),
		}
	}
	return &Lab{
		Dir:        dir,
		Block:      block,
		Primary:    site("primary", hostPrimaryAPI, hostPrimaryNFS),
		DR:         site("dr", hostDRAPI, hostDRNFS),
		S3Endpoint: fmt.Sprintf("http://%s:%d", ip(hostS3), s3Port),
		S3Bucket:   bucketName,
		SSHKey:     filepath.Join(dir, "ssh", "id_ed25519"),
		KnownHosts: filepath.Join(dir, "ssh", "known_hosts"),
		Inventory:  filepath.Join(dir, "inventory.ini"),
		EnvFile:    filepath.Join(dir, "env"),
		LogDir:     filepath.Join(dir, "logs"),
	}
}

// Stop stops every process the lab started (by recorded PID).
func (l *Lab) Stop() error {
	if l.procs == nil {
		l.procs = newProcSet(filepath.Join(l.Dir, "pids"), true)
	}
	return errors.Join(l.procs.stopAll(15*time.Second), l.unmountExports())
}

// Load reads a lab recorded in dir by Start.
func Load(dir string) (*Lab, error) {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return nil, fmt.Errorf("read lab state: %w", err)
	}
	l := &Lab{}
	if err := json.Unmarshal(b, l); err != nil {
		return nil, fmt.Errorf("parse lab state: %w", err)
	}
	sec, err := readSecrets(l.Dir)
	if err != nil {
		return nil, err
	}
	l.Primary.Token, l.DR.Token = sec.token, sec.token
	l.S3AccessKey, l.S3SecretKey = sec.s3Access, sec.s3Secret
	l.Primary.apiIP = strings.TrimSuffix(strings.TrimPrefix(l.Primary.APIServerURL, "https://"), fmt.Sprintf(":%d", apiPort))
	l.DR.apiIP = strings.TrimSuffix(strings.TrimPrefix(l.DR.APIServerURL, "https://"), fmt.Sprintf(":%d", apiPort))
	l.procs = newProcSet(filepath.Join(l.Dir, "pids"), true)
	return l, nil
}

func (l *Lab) save() error {
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return fmt.Errorf("encode lab state: %w", err)
	}
	return writeFile(filepath.Join(l.Dir, stateFile), b, 0o644)
}

// Check verifies that every part of a running lab answers.
func (l *Lab) Check(ctx context.Context) error {
	var errs []error
	for _, s := range []*Site{&l.Primary, &l.DR} {
		if err := probeAPIServer(ctx, s); err != nil {
			errs = append(errs, fmt.Errorf("%s kube-apiserver: %w", s.Name, err))
		}
		if err := dialOnce(fmt.Sprintf("%s:%d", s.NFSHost, s.SSHPort)); err != nil {
			errs = append(errs, fmt.Errorf("%s sshd: %w", s.Name, err))
		}
	}
	if err := dialOnce(strings.TrimPrefix(l.S3Endpoint, "http://")); err != nil {
		errs = append(errs, fmt.Errorf("s3: %w", err))
	}
	if alive, dead := l.procs.status(); len(dead) > 0 {
		errs = append(errs, fmt.Errorf("processes not running: %s (running: %s)", strings.Join(dead, ", "), strings.Join(alive, ", ")))
	}
	return errors.Join(errs...)
}

func writeFile(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("mkdir for %s: %w", path, err)
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
