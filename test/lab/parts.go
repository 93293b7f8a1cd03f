package lab

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"
)

//go:embed crds/*.yaml
var crdFS embed.FS

func (l *Lab) startEtcd(bin string, s *Site) error {
	data := filepath.Join(l.Dir, s.Name, "etcd")
	if err := os.MkdirAll(data, 0o700); err != nil {
		return fmt.Errorf("etcd dir: %w", err)
	}
	return l.procs.start(s.Name+"-etcd", filepath.Join(l.LogDir, s.Name+"-etcd.log"), nil,
		filepath.Join(bin, "lab-etcd"), "--data-dir", data,
		"--listen-client", "http://"+s.apiIP+":2379", "--listen-peer", "http://"+s.apiIP+":2380")
}

func (l *Lab) waitEtcd(ctx context.Context, s *Site) error {
	return l.waitFor(ctx, s.Name+"-etcd", 60*time.Second, func() error {
		resp, err := http.Get("http://" + s.apiIP + ":2379/health")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("health %d", resp.StatusCode)
		}
		return nil
	})
}

func (l *Lab) startAPIServer(bin string, s *Site) error {
	pki := filepath.Join(l.Dir, "pki")
	return l.procs.start(s.Name+"-kube-apiserver", filepath.Join(l.LogDir, s.Name+"-kube-apiserver.log"), nil,
		filepath.Join(bin, "kube-apiserver"),
		"--etcd-servers=http://"+s.apiIP+":2379",
		"--bind-address="+s.apiIP, "--endpoint-reconciler-type=none",
		fmt.Sprintf("--secure-port=%d", apiPort),
		"--cert-dir="+filepath.Join(l.Dir, s.Name, "certs"),
		"--tls-cert-file="+filepath.Join(pki, s.Name+"-serving.crt"),
		"--tls-private-key-file="+filepath.Join(pki, s.Name+"-serving.key"),
		"--token-auth-file="+filepath.Join(l.Dir, s.Name, "tokens.csv"),
		"--service-account-key-file="+filepath.Join(pki, "sa.key"),
		"--service-account-signing-key-file="+filepath.Join(pki, "sa.key"),
		"--service-account-issuer=https://kubernetes.default.svc",
		"--authorization-mode=RBAC",
		// The aggregation layer, for the simulated subresources.kubevirt.io
		// API (freeze/unfreeze) registered as an APIService.
		"--requestheader-client-ca-file="+filepath.Join(pki, "ca.crt"),
		"--requestheader-allowed-names="+frontProxyClient,
		"--requestheader-username-headers=X-Remote-User",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file="+filepath.Join(pki, "front-proxy-client.crt"),
		"--proxy-client-key-file="+filepath.Join(pki, "front-proxy-client.key"),
		"--service-cluster-ip-range=10.0.0.0/24",
		"--allow-privileged=true",
		"--profiling=false",
		"--v=1",
	)
}

func (l *Lab) httpClient() (*http.Client, error) {
	ca, err := os.ReadFile(filepath.Join(l.Dir, "pki", "ca.crt"))
	if err != nil {
		return nil, fmt.Errorf("read lab CA: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}, nil
}

func probeAPIServer(ctx context.Context, s *Site) error {
	cfg, err := s.RESTConfig()
	if err != nil {
		return err
	}
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	_, err = dc.Resource(schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}).Get(ctx, "default", metav1.GetOptions{})
	return err
}

func (l *Lab) waitAPIServer(ctx context.Context, s *Site) error {
	hc, err := l.httpClient()
	if err != nil {
		return err
	}
	return l.waitFor(ctx, s.Name+"-kube-apiserver", 120*time.Second, func() error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.APIServerURL+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+s.Token)
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		// The default namespace appears once the bootstrap controllers ran.
		return probeAPIServer(ctx, s)
	})
}

func (l *Lab) startControllerManager(bin string, s *Site) error {
	return l.procs.start(s.Name+"-kube-controller-manager", filepath.Join(l.LogDir, s.Name+"-kube-controller-manager.log"), nil,
		filepath.Join(bin, "kube-controller-manager"),
		"--kubeconfig="+s.Kubeconfig,
		"--authentication-kubeconfig="+s.Kubeconfig,
		"--authorization-kubeconfig="+s.Kubeconfig,
		"--service-account-private-key-file="+filepath.Join(l.Dir, "pki", "sa.key"),
		"--root-ca-file="+filepath.Join(l.Dir, "pki", "ca.crt"),
		"--leader-elect=false",
		"--secure-port=0",
		"--controllers=*",
		"--use-service-account-credentials=false",
		"--v=1",
	)
}

// InstallCRDs (re)applies the lab's CRDs and StorageClass on a site and
// waits until the CRDs are established (tests that remove a CRD use it).
func (l *Lab) InstallCRDs(ctx context.Context, s *Site) error { return l.installCRDs(ctx, s) }

// installCRDs applies the lab's CRDs and StorageClass and waits until the
// CRDs are established.
func (l *Lab) installCRDs(ctx context.Context, s *Site) error {
	cfg, err := s.RESTConfig()
	if err != nil {
		return err
	}
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	files, err := fs.Glob(crdFS, "crds/*.yaml")
	if err != nil {
		return fmt.Errorf("list CRDs: %w", err)
	}
	crdGVR := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	scGVR := schema.GroupVersionResource{Group: "storage.k8s.io", Version: "v1", Resource: "storageclasses"}
	var crds []string
	for _, f := range files {
		b, err := crdFS.ReadFile(f)
		if err != nil {
			return fmt.Errorf("read %s: %w", f, err)
		}
		obj := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(b, &obj.Object); err != nil {
			return fmt.Errorf("parse %s: %w", f, err)
		}
		gvr := crdGVR
		if obj.GetKind() == "StorageClass" {
			gvr = scGVR
		} else {
			crds = append(crds, obj.GetName())
		}
		if _, err := dc.Resource(gvr).Create(ctx, obj, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("%s: create %s: %w", s.Name, obj.GetName(), err)
		}
	}
	return l.waitFor(ctx, s.Name+"-kube-apiserver", 60*time.Second, func() error {
		for _, name := range crds {
			u, err := dc.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
			ok := false
			for _, c := range conds {
				m, _ := c.(map[string]any)
				if m["type"] == "Established" && m["status"] == "True" {
					ok = true
				}
			}
			if !ok {
				return fmt.Errorf("CRD %s not established", name)
			}
		}
		return nil
	})
}

func (l *Lab) startSSHD(s *Site) error {
	hostDir := filepath.Join(l.Dir, s.Name)
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return fmt.Errorf("sshd privilege separation dir: %w", err)
	}
	pub, err := os.ReadFile(l.SSHKey + ".pub")
	if err != nil {
		return fmt.Errorf("read lab key: %w", err)
	}
	auth := filepath.Join(hostDir, "authorized_keys")
	if err := writeFile(auth, pub, 0o600); err != nil {
		return err
	}
	conf := fmt.Sprintf(`ListenAddress %s:%d
HostKey %s
AuthorizedKeysFile %s
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
PidFile %s
Subsystem sftp internal-sftp
AcceptEnv LANG LC_*
MaxStartups 100:30:200
MaxSessions 100
`, s.NFSHost, s.SSHPort, filepath.Join(hostDir, "ssh_host_ed25519_key"), auth, filepath.Join(hostDir, "sshd.pid"))
	cfgFile := filepath.Join(hostDir, "sshd_config")
	if err := writeFile(cfgFile, []byte(conf), 0o600); err != nil {
		return err
	}
	return l.procs.start(s.Name+"-sshd", filepath.Join(l.LogDir, s.Name+"-sshd.log"), nil,
		"/usr/sbin/sshd", "-D", "-e", "-f", cfgFile)
}

func (l *Lab) waitSSH(ctx context.Context, s *Site) error {
	return l.waitFor(ctx, s.Name+"-sshd", 30*time.Second, func() error {
		out, err := exec.CommandContext(ctx, "ssh", l.SSHArgs(s, "true")...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w: %s", err, bytes.TrimSpace(out))
		}
		return nil
	})
}

// SSHArgs returns the ssh arguments (without "ssh") that run cmd as root on
// the site's NFS host with the lab key and pinned host keys.
func (l *Lab) SSHArgs(s *Site, cmd ...string) []string {
	args := []string{"-i", l.SSHKey, "-p", fmt.Sprint(s.SSHPort),
		"-o", "UserKnownHostsFile=" + l.KnownHosts, "-o", "StrictHostKeyChecking=yes",
		"-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "root@" + s.NFSHost}
	return append(args, cmd...)
}

func (l *Lab) startS3(bin string) error {
	data := filepath.Join(l.Dir, "s3")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return fmt.Errorf("s3 dir: %w", err)
	}
	env := []string{"ROOT_ACCESS_KEY=" + l.S3AccessKey, "ROOT_SECRET_KEY=" + l.S3SecretKey}
	return l.procs.start("s3-versitygw", filepath.Join(l.LogDir, "s3-versitygw.log"), env,
		filepath.Join(bin, "versitygw"), "--port", strings.TrimPrefix(l.S3Endpoint, "http://"), "posix", data)
}

// S3Client returns a client for the lab's S3 endpoint.
func (l *Lab) S3Client() (*minio.Client, error) {
	c, err := minio.New(strings.TrimPrefix(l.S3Endpoint, "http://"), &minio.Options{
		Creds:  credentials.NewStaticV4(l.S3AccessKey, l.S3SecretKey, ""),
		Secure: false,
		Region: "us-east-1",
	})
	if err != nil {
		return nil, fmt.Errorf("s3 client: %w", err)
	}
	return c, nil
}

func (l *Lab) waitS3(ctx context.Context) error {
	c, err := l.S3Client()
	if err != nil {
		return err
	}
	return l.waitFor(ctx, "s3-versitygw", 30*time.Second, func() error {
		ok, err := c.BucketExists(ctx, l.S3Bucket)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		return c.MakeBucket(ctx, l.S3Bucket, minio.MakeBucketOptions{Region: "us-east-1"})
	})
}

// waitFor polls check until it succeeds, the part's process exits, or the
// timeout passes; errors carry the part's log tail.
func (l *Lab) waitFor(ctx context.Context, part string, timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		if last = check(); last == nil {
			return nil
		}
		if l.procs.exitedEarly(part) {
			return fmt.Errorf("lab: %s exited: %w\n%s", part, last, l.LogTail(part, 30))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("lab: %s not ready after %s: %w\n%s", part, timeout, last, l.LogTail(part, 30))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lab: waiting for %s: %w", part, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// LogTail returns the last n lines of a part's log.
func (l *Lab) LogTail(part string, n int) string {
	f, err := os.Open(filepath.Join(l.LogDir, part+".log"))
	if err != nil {
		return fmt.Sprintf("(no log for %s: %v)", part, err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return fmt.Sprintf("--- last %d lines of %s ---\n%s", len(lines), part+".log", strings.Join(lines, "\n"))
}

func dialOnce(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

// pickBlock finds a 127.x.y.0/24 block whose lab ports are all free.
func pickBlock() (string, error) {
	for i := 0; i < 50; i++ {
		block := fmt.Sprintf("127.%d.%d", 100+rand.IntN(150), 1+rand.IntN(250))
		free := true
		for _, hp := range []string{hostPrimaryAPI + ":6443", hostDRAPI + ":6443", hostPrimaryAPI + ":2379", hostDRAPI + ":2379", hostS3 + ":7070", hostPrimaryNFS + ":2222", hostDRNFS + ":2222"} {
			ln, err := net.Listen("tcp", block+"."+hp)
			if err != nil {
				free = false
				break
			}
			_ = ln.Close()
		}
		if free {
			return block, nil
		}
	}
	return "", errors.New("lab: no free loopback block found")
}

// checkHostTools makes sure the Debian programs the lab runs are installed.
func checkHostTools() error {
	var missing []string
	for p, pkg := range map[string]string{"/usr/sbin/sshd": "openssh-server", "ssh": "openssh-client", "ssh-keygen": "openssh-client", "rsync": "rsync"} {
		if _, err := exec.LookPath(p); err != nil {
			missing = append(missing, pkg)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("lab: missing Debian packages %v: run `make deps` (or apt-get install them)", missing)
	}
	return nil
}

// RepoRoot finds the repository root from the working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("getwd: %w", err)
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(b, []byte("module github.com/ocpv-dr/ocpv-dr\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("lab: repository root (go.mod of github.com/ocpv-dr/ocpv-dr) not found above the working directory")
		}
		dir = parent
	}
}

// ensureBinaries returns the directory with the lab's binaries, building
// them (cached, under a lock shared by parallel test binaries) when missing.
func ensureBinaries(binDir string, logf func(string, ...any)) (string, error) {
	if binDir == "" {
		binDir = os.Getenv("OCPDR_TOOLS_BIN")
	}
	root := ""
	if binDir == "" {
		var err error
		if root, err = RepoRoot(); err != nil {
			return "", err
		}
		binDir = filepath.Join(root, ".cache", "bin")
	}
	need := []string{"kube-apiserver", "kube-controller-manager", "lab-etcd", "versitygw"}
	missing := func() bool {
		for _, b := range need {
			if _, err := os.Stat(filepath.Join(binDir, b)); err != nil {
				return true
			}
		}
		return false
	}
	if !missing() {
		return binDir, nil
	}
	if root == "" {
		return "", fmt.Errorf("lab: binaries %v missing in %s", need, binDir)
	}
	logf("lab: building the lab's tools into %s (first time: several minutes)", binDir)
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return "", fmt.Errorf("bin dir: %w", err)
	}
	cmd := exec.Command("flock", filepath.Join(binDir, ".build.lock"), "bash", filepath.Join(root, "test", "lab", "build-tools.sh"))
	cmd.Env = append(os.Environ(), "CACHE_DIR="+filepath.Dir(binDir))
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("lab: building tools: %w\n%s", err, out)
	}
	return binDir, nil
}
