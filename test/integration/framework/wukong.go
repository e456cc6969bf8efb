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
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/rest"
)

const (
	// WukongGroupVersion is what wukong-apiserver serves through the aggregator.
	WukongGroupVersion = wukongGroup + "/" + wukongVersion
	// APIServiceName names the APIService that registers wukong-apiserver.
	APIServiceName = wukongVersion + "." + wukongGroup

	wukongGroup       = "vm.novasphere.dev"
	wukongVersion     = "v1alpha1"
	wukongNamespace   = "wukong-system"
	wukongServiceName = "wukong-apiserver"

	// wukongEtcdPrefix keeps wukong-apiserver's keys apart from
	// kube-apiserver's in the shared etcd.
	wukongEtcdPrefix = "/registry/" + wukongGroup

	// restartedAtAnnotation is bumped on every (re)start. Changing the
	// APIService makes the aggregator re-check availability at once instead
	// of after its failure back-off, which grows to 30 s.
	restartedAtAnnotation = "test.wukong.novasphere.dev/started-at"
)

// WukongAPIServerURL is wukong-apiserver's own https URL, bypassing the
// aggregator; its certificate is signed by WukongCAPEM. It is empty until
// wukong-apiserver first started and stays the same across restarts.
func (cp *ControlPlane) WukongAPIServerURL() string {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if cp.wukongPort == 0 {
		return ""
	}
	return fmt.Sprintf("https://127.0.0.1:%d", cp.wukongPort)
}

// StartWukongAPIServer starts wukong-apiserver (building it if needed),
// registers it with kube-apiserver and waits until the APIService is
// Available and discovery lists the group. A restart reuses the first start's
// port and flags.
func (cp *ControlPlane) StartWukongAPIServer(ctx context.Context) error {
	cp.wukongLifecycle.Lock()
	defer cp.wukongLifecycle.Unlock()

	if cp.stopped {
		return errStopped
	}
	if cp.kubeAPIServer == nil || cp.kubeAPIServer.exited() {
		return errors.New("kube-apiserver is not running")
	}
	if w := cp.currentWukong(); w != nil && !w.exited() {
		return errors.New("wukong-apiserver is already running")
	}
	began := time.Now()
	if cp.Binaries.WukongAPIServer == "" {
		bin, err := ensureWukongAPIServer(ctx, cp.root, cp.opts.Log)
		if err != nil {
			return err
		}
		cp.Binaries.WukongAPIServer = bin
	}
	// The timeout is for starting, not for a cold build, which takes minutes.
	ctx, cancel := cp.withStartTimeout(ctx)
	defer cancel()

	var p *process
	var err error
	if cp.wukongArgs != nil {
		// A restart must keep the port: the Service and APIService name it.
		p, err = cp.runWukong(ctx, cp.wukongPort, cp.wukongArgs)
	} else {
		err = startWithRetry(func() error {
			port, err := freePort()
			if err != nil {
				return err
			}
			args := cp.wukongAPIServerArgs(port)
			if p, err = cp.runWukong(ctx, port, args); err != nil {
				return err
			}
			cp.mu.Lock()
			cp.wukongPort, cp.wukongArgs = port, args
			cp.mu.Unlock()
			return nil
		})
	}
	if err != nil {
		return err
	}
	cp.logf("wukong-apiserver ready at %s (%s)", cp.WukongAPIServerURL(), time.Since(began).Round(time.Millisecond))
	cp.mu.Lock()
	first := len(cp.served) == 0
	cp.mu.Unlock()
	if cp.opts.Replicas > 1 && first {
		if err := cp.startServedReplicas(ctx, cp.wukongPort, cp.wukongArgs); err != nil {
			p.stop()
			return err
		}
	}

	if err := cp.registerWukong(ctx); err != nil {
		p.stop()
		return fmt.Errorf("registering wukong-apiserver: %w", err)
	}
	err = p.waitReady(ctx, "APIService "+APIServiceName+" to be Available", cp.checkWukongAvailable)
	if err != nil {
		p.stop()
		return err
	}
	cp.logf("APIService %s available (%s)", APIServiceName, time.Since(began).Round(time.Millisecond))
	return nil
}

// StopWukongAPIServer stops wukong-apiserver and leaves its registration in
// place, so requests through kube-apiserver fail as when the server is down.
func (cp *ControlPlane) StopWukongAPIServer() {
	cp.wukongLifecycle.Lock()
	defer cp.wukongLifecycle.Unlock()
	if w := cp.currentWukong(); w != nil {
		w.stop()
	}
}

// RestartWukongAPIServer stops wukong-apiserver and starts it again with the
// same port and flags, returning once the APIService is Available again.
func (cp *ControlPlane) RestartWukongAPIServer(ctx context.Context) error {
	cp.StopWukongAPIServer()
	return cp.StartWukongAPIServer(ctx)
}

func (cp *ControlPlane) currentWukong() *process {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return cp.wukong
}

func (cp *ControlPlane) wukongAPIServerArgs(port int) []string {
	admin := cp.Admin.KubeconfigPath
	args := []string{
		"--etcd-servers=" + cp.EtcdURL,
		"--etcd-prefix=" + wukongEtcdPrefix,
		"--etcd-cafile=" + cp.pki.etcdCAFile,
		"--etcd-certfile=" + cp.pki.wukongEtcdClientCertFile,
		"--etcd-keyfile=" + cp.pki.wukongEtcdClientKeyFile,
		fmt.Sprintf("--secure-port=%d", port),
		"--bind-address=127.0.0.1",
		"--tls-cert-file=" + cp.pki.wukongCertFile,
		"--tls-private-key-file=" + cp.pki.wukongKeyFile,
		"--kubeconfig=" + admin,
		// Delegated authentication and authorization: wukong-apiserver reads
		// the client and front-proxy CAs from kube-system and asks
		// kube-apiserver's RBAC through SubjectAccessReviews.
		"--authentication-kubeconfig=" + admin,
		"--authorization-kubeconfig=" + admin,
	}
	if !cp.opts.PushLoopbackDenied {
		args = append(args, "--push-allowed-cidrs=127.0.0.0/8,::1/128")
	}
	// The Lease is held with or without the controllers (the record
	// collector runs in its holder).
	args = append(args, "--leader-elect-resource-namespace=default",
		"--leader-elect-lease-duration=4s", "--leader-elect-renew-deadline=3s", "--leader-elect-retry-period=500ms")
	args = append(args, fmt.Sprintf("--controller=%t", cp.opts.Controller))
	return append(args, cp.opts.WukongAPIServerArgs...)
}

// StartWukongReplica starts one more wukong-apiserver on the same etcd, not
// behind the APIService: a second replica, for leader election. Stop it with
// the returned function (it is also stopped with the control plane).
func (cp *ControlPlane) StartWukongReplica(ctx context.Context) (pid int, stop func(), err error) {
	port, err := freePort()
	if err != nil {
		return 0, nil, err
	}
	cp.mu.Lock()
	n := len(cp.replicas) + 2
	cp.mu.Unlock()
	p, err := cp.runWukongAs(ctx, fmt.Sprintf("wukong-apiserver-%d", n), port, cp.wukongAPIServerArgs(port), func(p *process) {
		cp.mu.Lock()
		cp.replicas = append(cp.replicas, p)
		cp.mu.Unlock()
	})
	if err != nil {
		return 0, nil, err
	}
	return p.cmd.Process.Pid, p.stop, nil
}

// runWukong starts the process and waits for its own /readyz, before it is
// registered: an APIService that fails its first checks is re-checked with a
// growing back-off.
func (cp *ControlPlane) runWukong(ctx context.Context, port int, args []string) (*process, error) {
	return cp.runWukongAs(ctx, "wukong-apiserver", port, args, func(p *process) {
		cp.mu.Lock()
		cp.wukong = p
		cp.mu.Unlock()
	})
}

// runWukongAs starts a wukong-apiserver logging to name's log, hands it to
// track, and waits for its /readyz.
func (cp *ControlPlane) runWukongAs(ctx context.Context, name string, port int, args []string, track func(*process)) (*process, error) {
	env, err := shippedEnv(cp.opts.WukongAPIServerEnv)
	if err != nil {
		return nil, err
	}
	p, err := startProcessEnv(name, cp.LogPath(name), cp.Binaries.WukongAPIServer, env, args...)
	if err != nil {
		return nil, err
	}
	track(p)

	// The admin certificate is accepted once wukong-apiserver has read the
	// client CA from kube-apiserver, and /readyz is always allowed.
	client, err := cp.wukongAdminClient()
	if err != nil {
		p.stop()
		return nil, err
	}
	url := fmt.Sprintf("https://127.0.0.1:%d/readyz", port)
	if err := p.waitReady(ctx, "/readyz", func(ctx context.Context) error { return getOK(ctx, client, url) }); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

// registerWukong routes vm.novasphere.dev to wukong-apiserver (see
// registerAPIService); StartWukongAPIServer waits for it, watching the process.
func (cp *ControlPlane) registerWukong(ctx context.Context) error {
	cp.mu.Lock()
	port := int32(cp.wukongPort)
	cp.mu.Unlock()
	if cp.opts.Replicas > 1 {
		return cp.registerReplicas(ctx, port)
	}
	return cp.registerAPIService(ctx, wukongGroup, wukongVersion, wukongNamespace, wukongServiceName, port, cp.pki.wukongCA.CertPEM)
}

// checkWukongAvailable wants the APIService Available and the group in
// discovery.
func (cp *ControlPlane) checkWukongAvailable(ctx context.Context) error {
	return cp.checkAPIServiceAvailable(ctx, wukongGroup, wukongVersion)
}

// WukongAPIServerPID is the pid of the running wukong-apiserver, or 0; the
// benchmarks read its memory from /proc.
func (cp *ControlPlane) WukongAPIServerPID() int {
	if p := cp.currentWukong(); p != nil && p.cmd.Process != nil && !p.exited() {
		return p.cmd.Process.Pid
	}
	return 0
}

// KubeAPIServerPID is the pid of the running kube-apiserver, or 0; the
// benchmarks read its CPU time from /proc.
func (cp *ControlPlane) KubeAPIServerPID() int {
	if p := cp.kubeAPIServer; p != nil && p.cmd.Process != nil && !p.exited() {
		return p.cmd.Process.Pid
	}
	return 0
}

// WukongMetric sums the samples of a metric on wukong-apiserver's /metrics
// whose line starts with prefix (a name, or a name and labels), read as the
// admin.
func (cp *ControlPlane) WukongMetric(ctx context.Context, prefix string) (float64, error) {
	client, err := cp.wukongAdminClient()
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cp.WukongAPIServerURL()+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	var sum float64
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum, nil
}

// wukongAdminClient talks to wukong-apiserver directly (not through
// kube-apiserver) as the admin, trusting its serving CA.
func (cp *ControlPlane) wukongAdminClient() (*http.Client, error) {
	return rest.HTTPClientFor(&rest.Config{TLSClientConfig: rest.TLSClientConfig{
		CAData: cp.pki.wukongCA.CertPEM, CertData: cp.Admin.Config.CertData, KeyData: cp.Admin.Config.KeyData,
	}})
}

// StartCPUProfiles starts CPU profiles of wukong-apiserver and kube-apiserver
// (their /debug/pprof/profile, read as the admin) for seconds; the returned
// function waits for them and writes them to dir as <name>-wukong.pprof and
// <name>-kube-apiserver.pprof. For finding where a benchmark's CPU goes.
func (cp *ControlPlane) StartCPUProfiles(ctx context.Context, dir, name string, seconds int) (wait func() error) {
	wukong, err := cp.wukongAdminClient()
	if err != nil {
		return func() error { return err }
	}
	kube, err := rest.HTTPClientFor(cp.Admin.Config)
	if err != nil {
		return func() error { return err }
	}
	errs := make(chan error, 2)
	for _, p := range []struct {
		client *http.Client
		base   string
		file   string
	}{{wukong, cp.WukongAPIServerURL(), name + "-wukong.pprof"}, {kube, cp.Admin.Config.Host, name + "-kube-apiserver.pprof"}} {
		go func() {
			errs <- func() error {
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", p.base, seconds), nil)
				if err != nil {
					return err
				}
				resp, err := p.client.Do(req)
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					return fmt.Errorf("%s: %s", req.URL, resp.Status)
				}
				b, err := io.ReadAll(resp.Body)
				if err != nil {
					return err
				}
				return os.WriteFile(filepath.Join(dir, p.file), b, 0o644)
			}()
		}()
	}
	return func() error { return errors.Join(<-errs, <-errs) }
}
