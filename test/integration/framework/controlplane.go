/*
Copyright The Wukong Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package framework

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"k8s.io/client-go/rest"
)

// EnvKeepWorkDir, set to 1, keeps a temporary work dir after Stop for
// debugging: certificates, kubeconfigs, etcd data and every log.
const EnvKeepWorkDir = "WUKONG_KEEP_WORKDIR"

// defaultStartTimeout bounds each wait for a component (the caller's context
// may end it sooner). A start on 2 cores takes seconds; a hang should not
// take the whole `go test` timeout.
const defaultStartTimeout = 2 * time.Minute

// Options configure a control plane. The zero value starts the full stack in
// a temporary directory.
type Options struct {
	// WorkDir holds certificates, kubeconfigs, etcd data and logs. Empty means
	// a new temporary directory, removed by Stop. A directory given here is
	// created if needed and never removed.
	WorkDir string

	// KubeAPIServerArgs are appended to kube-apiserver's flags, e.g.
	// "--request-timeout=5s". A flag given twice takes the later value.
	KubeAPIServerArgs []string

	// WukongAPIServerArgs are appended to wukong-apiserver's flags.
	WukongAPIServerArgs []string

	// WukongAPIServerEnv is added to wukong-apiserver's environment
	// ("NAME=value"), e.g. what the Deployment sets from the downward API.
	WukongAPIServerEnv []string

	// Controller runs wukong-apiserver's VM controller (leader-elected, with
	// short lease times). Off by default: other tests own the Wukongs' status.
	Controller bool

	// PushLoopbackDenied runs wukong-apiserver with its default egress
	// policy, as deployed, under which pushes to loopback are refused. By
	// default the tests' push targets, which all listen on loopback, are
	// allowed: --push-allowed-cidrs=127.0.0.0/8,::1/128.
	PushLoopbackDenied bool

	// Replicas, when 2 or more, runs that many wukong-apiservers behind the
	// APIService, all from the same binary on the same etcd with the same
	// flags, and kube-apiserver routing each request to one of them
	// (replicas.go). 0 or 1: one, reached through an ExternalName Service.
	Replicas int

	// SkipWukongAPIServer starts etcd and kube-apiserver only;
	// StartWukongAPIServer can start it later.
	SkipWukongAPIServer bool

	// BeforeWukongAPIServer, if set, runs once kube-apiserver is ready and
	// before wukong-apiserver starts: the place to install what the server
	// expects to find, such as the KubeVirt and CDI CRDs.
	BeforeWukongAPIServer func(ctx context.Context, cp *ControlPlane) error

	// StartTimeout bounds each wait for a component to become ready (not
	// the builds). Zero means two minutes.
	StartTimeout time.Duration

	// Log receives progress lines (what starts, how long it took, build
	// output). Nil discards them.
	Log io.Writer
}

// ControlPlane is a running etcd, kube-apiserver and, unless skipped,
// wukong-apiserver behind its APIService. Its methods are safe for
// concurrent use by parallel tests.
type ControlPlane struct {
	// WorkDir is where certificates, kubeconfigs, etcd data and logs live.
	WorkDir string
	// Binaries are the executables in use.
	Binaries Binaries
	// EtcdURL is etcd's client URL: https on loopback, and etcd wants a
	// client certificate signed by EtcdCAPEM (see EtcdTLSConfig).
	EtcdURL string
	// EtcdCAPEM signs etcd's serving certificate and its clients'.
	EtcdCAPEM []byte
	// KubeAPIServerURL is kube-apiserver's https URL.
	KubeAPIServerURL string
	// ClusterCAPEM signs kube-apiserver's serving certificate and every
	// user's client certificate.
	ClusterCAPEM []byte
	// WukongCAPEM signs wukong-apiserver's serving certificate; it is the
	// APIService caBundle.
	WukongCAPEM []byte
	// Admin is a system:masters user.
	Admin *User

	opts        Options
	root        string
	tempWorkDir bool
	pki         *pki
	logDir      string

	etcd          *process
	kubeAPIServer *process

	// wukongLifecycle serialises starting and stopping wukong-apiserver;
	// it is held for seconds, so it is not mu.
	wukongLifecycle sync.Mutex
	wukongArgs      []string // set by the first start, reused by restarts
	stopped         bool

	// mu guards the fields read while a start is in progress.
	mu         sync.Mutex
	wukong     *process
	replicas   []*process // more wukong-apiservers (StartWukongReplica)
	served     []*process // replicas 1.. behind the APIService (Options.Replicas)
	wukongPort int
	userFiles  map[string]int

	keepWorkDir bool // set by the test helpers when a test failed
	stopOnce    sync.Once
	stopErr     error
}

// Start builds the binaries if needed, generates the PKI, and starts etcd,
// kube-apiserver and (unless opts.SkipWukongAPIServer) wukong-apiserver,
// returning once the APIService is Available and discovery serves the group.
// On error everything started so far is stopped again; the work dir stays
// when the error points at a log in it.
func Start(ctx context.Context, opts Options) (*ControlPlane, error) {
	cp := &ControlPlane{opts: opts, userFiles: map[string]int{}}
	if err := cp.start(ctx); err != nil {
		if cp.etcd != nil {
			// The error points at logs: keep them (not etcd's data).
			cp.keepWorkDir = true
		}
		_ = cp.Stop()
		return nil, err
	}
	return cp, nil
}

func (cp *ControlPlane) start(ctx context.Context) error {
	began := time.Now()
	var err error
	if cp.root, err = RepoRoot(); err != nil {
		return err
	}
	if err := cp.prepareWorkDir(); err != nil {
		return err
	}
	if cp.Binaries, err = ensureTools(ctx, cp.root, cp.opts.Log); err != nil {
		return err
	}
	if !cp.opts.SkipWukongAPIServer {
		// Before anything starts: a compile error should not cost a cluster start.
		if cp.Binaries.WukongAPIServer, err = ensureWukongAPIServer(ctx, cp.root, cp.opts.Log); err != nil {
			return err
		}
	}
	cp.logf("binaries ready (%s)", time.Since(began).Round(time.Millisecond))

	if cp.pki, err = newPKI(filepath.Join(cp.WorkDir, "pki")); err != nil {
		return fmt.Errorf("generating certificates: %w", err)
	}
	cp.ClusterCAPEM = cp.pki.clusterCA.CertPEM
	cp.WukongCAPEM = cp.pki.wukongCA.CertPEM
	cp.EtcdCAPEM = cp.pki.etcdCA.CertPEM

	if err := cp.startEtcd(ctx); err != nil {
		return err
	}
	if err := cp.startKubeAPIServer(ctx); err != nil {
		return err
	}
	if err := cp.AggregateClusterRoles(ctx); err != nil {
		return err
	}
	if cp.opts.BeforeWukongAPIServer != nil {
		if err := cp.opts.BeforeWukongAPIServer(ctx, cp); err != nil {
			return fmt.Errorf("preparing the cluster for wukong-apiserver: %w", err)
		}
	}
	if !cp.opts.SkipWukongAPIServer {
		if err := cp.StartWukongAPIServer(ctx); err != nil {
			return err
		}
	}
	cp.logf("control plane ready in %s (work dir %s)", time.Since(began).Round(time.Millisecond), cp.WorkDir)
	return nil
}

func (cp *ControlPlane) prepareWorkDir() error {
	if cp.opts.WorkDir == "" {
		dir, err := os.MkdirTemp("", "wukong-controlplane-")
		if err != nil {
			return err
		}
		cp.WorkDir, cp.tempWorkDir = dir, true
	} else {
		dir, err := filepath.Abs(cp.opts.WorkDir)
		if err != nil {
			return err
		}
		cp.WorkDir = dir
	}
	cp.logDir = filepath.Join(cp.WorkDir, "logs")
	for _, dir := range []string{cp.logDir, filepath.Join(cp.WorkDir, "users")} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// Stop stops every process the control plane started, wukong-apiserver first
// and etcd last, and removes a temporary work dir unless WUKONG_KEEP_WORKDIR=1.
// It is safe to call more than once.
func (cp *ControlPlane) Stop() error {
	cp.stopOnce.Do(func() {
		cp.wukongLifecycle.Lock()
		cp.stopped = true
		if w := cp.currentWukong(); w != nil {
			w.stop()
		}
		cp.mu.Lock()
		for _, r := range cp.replicas {
			r.stop()
		}
		cp.mu.Unlock()
		cp.wukongLifecycle.Unlock()
		for _, p := range []*process{cp.kubeAPIServer, cp.etcd} {
			if p != nil {
				p.stop()
			}
		}
		if !cp.tempWorkDir {
			return
		}
		switch {
		case os.Getenv(EnvKeepWorkDir) == "1":
			cp.logf("keeping work dir %s", cp.WorkDir)
		case cp.keepWorkDir:
			cp.stopErr = os.RemoveAll(filepath.Join(cp.WorkDir, "etcd"))
		default:
			cp.stopErr = os.RemoveAll(cp.WorkDir)
		}
	})
	return cp.stopErr
}

// LogPath returns the log file of a component: "etcd", "kube-apiserver" or
// "wukong-apiserver".
func (cp *ControlPlane) LogPath(component string) string {
	return filepath.Join(cp.logDir, component+".log")
}

func (cp *ControlPlane) logf(format string, args ...any) {
	if cp.opts.Log != nil {
		fmt.Fprintf(cp.opts.Log, "[controlplane] "+format+"\n", args...)
	}
}

// withStartTimeout applies Options.StartTimeout unless ctx ends sooner.
func (cp *ControlPlane) withStartTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	timeout := cp.opts.StartTimeout
	if timeout <= 0 {
		timeout = defaultStartTimeout
	}
	return context.WithTimeout(ctx, timeout)
}

// startWithRetry runs start, retrying with fresh ports when a port picked by
// freePort was taken by someone else in the meantime.
func startWithRetry(start func() error) error {
	const attempts = 3
	var err error
	for range attempts {
		if err = start(); err == nil || !addressInUse(err) {
			return err
		}
	}
	return err
}

func (cp *ControlPlane) startEtcd(ctx context.Context) error {
	ctx, cancel := cp.withStartTimeout(ctx)
	defer cancel()
	began := time.Now()
	tlsConfig, err := cp.EtcdTLSConfig()
	if err != nil {
		return err
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig}}
	defer client.CloseIdleConnections()
	err = startWithRetry(func() error {
		clientPort, err := freePort()
		if err != nil {
			return err
		}
		peerPort, err := freePort()
		if err != nil {
			return err
		}
		dataDir := filepath.Join(cp.WorkDir, "etcd")
		// A failed attempt may have left a member directory behind for other ports.
		if err := os.RemoveAll(dataDir); err != nil {
			return err
		}
		clientURL := fmt.Sprintf("https://127.0.0.1:%d", clientPort)
		// The one member never dials a peer; its peer URL is plain on loopback.
		peerURL := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
		p, err := startProcess("etcd", cp.LogPath("etcd"), cp.Binaries.Etcd,
			"--name=wukong",
			"--data-dir="+dataDir,
			"--listen-client-urls="+clientURL,
			"--advertise-client-urls="+clientURL,
			"--listen-peer-urls="+peerURL,
			"--initial-advertise-peer-urls="+peerURL,
			"--initial-cluster=wukong="+peerURL,
			// TLS and client certificates, as the shipped StatefulSet: only
			// kube-apiserver and wukong-apiserver, whose certificates the
			// etcd CA signed, may read or write.
			"--cert-file="+cp.pki.etcdCertFile,
			"--key-file="+cp.pki.etcdKeyFile,
			"--trusted-ca-file="+cp.pki.etcdCAFile,
			"--client-cert-auth=true",
			// Durability is worthless for a throwaway cluster; fsync is most of
			// etcd's latency on a small VM.
			"--unsafe-no-fsync=true",
		)
		if err != nil {
			return err
		}
		err = p.waitReady(ctx, "health", func(ctx context.Context) error {
			return getOK(ctx, client, clientURL+"/health")
		})
		if err != nil {
			p.stop()
			return err
		}
		cp.etcd, cp.EtcdURL = p, clientURL
		return nil
	})
	if err != nil {
		return err
	}
	cp.logf("etcd ready at %s (%s)", cp.EtcdURL, time.Since(began).Round(time.Millisecond))
	return nil
}

func (cp *ControlPlane) startKubeAPIServer(ctx context.Context) error {
	ctx, cancel := cp.withStartTimeout(ctx)
	defer cancel()
	began := time.Now()
	p := cp.pki
	err := startWithRetry(func() error {
		port, err := freePort()
		if err != nil {
			return err
		}
		url := fmt.Sprintf("https://127.0.0.1:%d", port)
		// The admin identity is needed to probe /readyz, and it names the URL.
		adminKubeconfig := filepath.Join(cp.WorkDir, "users", "admin.kubeconfig")
		if cp.Admin, err = cp.newUser(url, "admin", []string{"system:masters"}, adminKubeconfig); err != nil {
			return err
		}
		args := []string{
			// The same etcd as wukong-apiserver, under kube-apiserver's
			// default prefix /registry; its own client certificate.
			"--etcd-servers=" + cp.EtcdURL,
			"--etcd-cafile=" + p.etcdCAFile,
			"--etcd-certfile=" + p.kubeEtcdClientCertFile,
			"--etcd-keyfile=" + p.kubeEtcdClientKeyFile,
			"--bind-address=127.0.0.1",
			"--advertise-address=127.0.0.1",
			fmt.Sprintf("--secure-port=%d", port),
			"--tls-cert-file=" + p.kubeAPIServerCertFile,
			"--tls-private-key-file=" + p.kubeAPIServerKeyFile,
			"--client-ca-file=" + p.clusterCAFile,
			"--authorization-mode=Node,RBAC",
			"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
			"--service-account-key-file=" + p.serviceAccountPublicKeyFile,
			"--service-account-signing-key-file=" + p.serviceAccountSigningKeyFile,
			"--service-cluster-ip-range=10.0.0.0/24",
			// The front-proxy set: how the aggregator proves to wukong-apiserver
			// who the user is.
			"--requestheader-client-ca-file=" + p.frontProxyCAFile,
			"--requestheader-allowed-names=" + frontProxyClientName,
			"--requestheader-username-headers=X-Remote-User",
			"--requestheader-group-headers=X-Remote-Group",
			"--requestheader-extra-headers-prefix=X-Remote-Extra-",
			"--proxy-client-cert-file=" + p.frontProxyClientCertFile,
			"--proxy-client-key-file=" + p.frontProxyClientKeyFile,
			// Endpoints cannot hold loopback addresses, so the aggregator reaches
			// wukong-apiserver through an ExternalName Service instead.
			"--enable-aggregator-routing=false",
			// Otherwise it logs an error every 10 s about its loopback endpoint.
			"--endpoint-reconciler-type=none",
			// No controller-manager creates service-account tokens here.
			"--disable-admission-plugins=ServiceAccount",
		}
		if cp.opts.Replicas > 1 {
			// Route to an endpoint per request, so that requests spread
			// over the replicas (replicas.go).
			args = append(args, "--enable-aggregator-routing=true")
		}
		proc, err := startProcess("kube-apiserver", cp.LogPath("kube-apiserver"), cp.Binaries.KubeAPIServer,
			append(args, cp.opts.KubeAPIServerArgs...)...)
		if err != nil {
			return err
		}
		client, err := rest.HTTPClientFor(cp.Admin.Config)
		if err != nil {
			proc.stop()
			return err
		}
		// /readyz includes the RBAC bootstrap hook: once it passes, the
		// default roles exist and authorization answers as it will later.
		err = proc.waitReady(ctx, "/readyz", func(ctx context.Context) error {
			return getOK(ctx, client, url+"/readyz")
		})
		if err != nil {
			proc.stop()
			return err
		}
		cp.kubeAPIServer, cp.KubeAPIServerURL = proc, url
		return nil
	})
	if err != nil {
		return err
	}
	cp.logf("kube-apiserver ready at %s (%s)", cp.KubeAPIServerURL, time.Since(began).Round(time.Millisecond))
	return nil
}

// EtcdTLSConfig trusts etcd's CA and presents a client certificate etcd
// accepts (wukong-apiserver's), for tests that read etcd directly.
func (cp *ControlPlane) EtcdTLSConfig() (*tls.Config, error) {
	cert, err := cp.pki.wukongEtcdClient.TLSCertificate()
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(cp.pki.etcdCA.CertPEM)
	return &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// getOK GETs url and wants a 200.
func getOK(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	return nil
}

// errStopped is returned when a component is used after Stop.
var errStopped = errors.New("control plane stopped")
