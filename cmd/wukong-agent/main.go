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

// Command wukong-agent serves files of the directories it is given over
// HTTPS with a bearer token: the file agent of method http (run in the
// guest, installed by cloud-init) and of method pvc (run in a helper pod on
// the data volume). See docs/agent.md.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"

	"github.com/novasphere/wukong/pkg/transfer/agent"
	"github.com/novasphere/wukong/pkg/version"
)

// Config is the agent's configuration file (YAML or JSON); flags given on
// the command line win over it.
type Config struct {
	Listen          string       `json:"listen,omitempty"`
	Roots           []agent.Root `json:"roots,omitempty"`
	TokenFile       string       `json:"tokenFile,omitempty"`
	TLSCertFile     string       `json:"tlsCertFile,omitempty"`
	TLSKeyFile      string       `json:"tlsKeyFile,omitempty"`
	IdleTimeout     string       `json:"idleTimeout,omitempty"`
	ShutdownTimeout string       `json:"shutdownTimeout,omitempty"`
	Limits          struct {
		MaxFileSize           int64 `json:"maxFileSize,omitempty"`
		MaxListEntries        int   `json:"maxListEntries,omitempty"`
		MaxArchiveEntries     int64 `json:"maxArchiveEntries,omitempty"`
		MaxArchiveHeaderBytes int64 `json:"maxArchiveHeaderBytes,omitempty"`
	} `json:"limits,omitempty"`
}

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "wukong-agent:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := pflag.NewFlagSet("wukong-agent", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfgFile  = fs.String("config", "", "configuration file (YAML or JSON, see docs/agent.md); flags win over it")
		showVer  = fs.Bool("version", false, "print the version and exit")
		listen   = fs.String("listen", "", "address to listen on (default :8080)")
		roots    = fs.StringArray("root", nil, "directory to serve, as GUESTPATH or GUESTPATH=LOCALDIR; repeat for more (required)")
		_        = fs.String("token-file", "", "file holding the bearer token (required; re-read when it changes)")
		_        = fs.String("tls-cert-file", "", "the agent's TLS certificate, PEM (required; re-read when it changes)")
		_        = fs.String("tls-key-file", "", "the certificate's private key, PEM (required)")
		idle     = fs.Duration("idle-timeout", 0, "cut a request in which no byte moved for so long (default 2m)")
		shutdown = fs.Duration("shutdown-timeout", 0, "on SIGTERM, how long requests in flight may finish (default 30s)")
		maxFile  = fs.Int64("max-file-size", 0, "the agent's own cap on one file or archive, bytes (0: none)")
		maxList  = fs.Int("max-list-entries", 0, "the agent's own cap on one listing (default 100000)")
		maxTar   = fs.Int64("max-archive-entries", 0, "the agent's own cap on a tar's entries (default 1000000)")
		maxHdr   = fs.Int64("max-archive-header-bytes", 0, "the agent's own cap on a tar's names and PAX records (default 64Mi)")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVer {
		fmt.Fprintln(stdout, "wukong-agent", version.Get())
		return nil
	}
	var cfg Config
	if *cfgFile != "" {
		b, err := os.ReadFile(*cfgFile)
		if err != nil {
			return err
		}
		if err := yaml.UnmarshalStrict(b, &cfg); err != nil {
			return fmt.Errorf("%s: %w", *cfgFile, err)
		}
	}
	set := func(name string) bool { return fs.Changed(name) }
	if set("listen") || cfg.Listen == "" {
		cfg.Listen = *listen
	}
	if cfg.Listen == "" {
		cfg.Listen = ":8080"
	}
	if set("root") {
		cfg.Roots = nil
		for _, r := range *roots {
			root, err := agent.ParseRoot(r)
			if err != nil {
				return err
			}
			cfg.Roots = append(cfg.Roots, root)
		}
	}
	for name, dst := range map[string]*string{"token-file": &cfg.TokenFile, "tls-cert-file": &cfg.TLSCertFile, "tls-key-file": &cfg.TLSKeyFile} {
		if v, _ := fs.GetString(name); set(name) || *dst == "" {
			*dst = v
		}
	}
	if cfg.TokenFile == "" || cfg.TLSCertFile == "" || cfg.TLSKeyFile == "" {
		return errors.New("--token-file, --tls-cert-file and --tls-key-file are required: the agent serves only HTTPS with a token")
	}
	idleT, err := duration(*idle, set("idle-timeout"), cfg.IdleTimeout, 2*time.Minute)
	if err != nil {
		return err
	}
	shutdownT, err := duration(*shutdown, set("shutdown-timeout"), cfg.ShutdownTimeout, 30*time.Second)
	if err != nil {
		return err
	}
	limits := agent.Limits{
		MaxFileSize:           pick(*maxFile, set("max-file-size"), cfg.Limits.MaxFileSize, 0),
		MaxListEntries:        pick(*maxList, set("max-list-entries"), cfg.Limits.MaxListEntries, 100000),
		MaxArchiveEntries:     pick(*maxTar, set("max-archive-entries"), cfg.Limits.MaxArchiveEntries, 1000000),
		MaxArchiveHeaderBytes: pick(*maxHdr, set("max-archive-header-bytes"), cfg.Limits.MaxArchiveHeaderBytes, 64<<20),
	}

	log := slog.New(slog.NewTextHandler(stderr, nil))
	rs, err := agent.OpenRoots(cfg.Roots)
	if err != nil {
		return err
	}
	defer rs.Close()
	tok := &watchedFile{path: cfg.TokenFile}
	if _, err := tok.get(); err != nil {
		return fmt.Errorf("the token: %w", err)
	}
	keys := &keyPair{cert: watchedFile{path: cfg.TLSCertFile}, key: watchedFile{path: cfg.TLSKeyFile}}
	if _, err := keys.get(nil); err != nil {
		return fmt.Errorf("the TLS certificate: %w", err)
	}
	h := agent.NewHandler(rs, tok.token, agent.HandlerOptions{
		Limits: limits, IdleTimeout: idleT, Version: version.Get().Version, Log: log,
	})
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       idleT,
		MaxHeaderBytes:    64 << 10,
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: keys.get},
		// HTTP/1.1 only: a stream's deadlines are its connection's.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ErrorLog:     slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- srv.ServeTLS(ln, "", "") }()
	log.Info("Serving", "address", ln.Addr().String(), "roots", rs.Paths(), "version", version.Get().String())
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	log.Info("Shutting down", "timeout", shutdownT)
	sctx, cancel := context.WithTimeout(context.Background(), shutdownT)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		// Streams still running past the timeout are cut.
		srv.Close()
	}
	return nil
}

func duration(flag time.Duration, fromFlag bool, file string, def time.Duration) (time.Duration, error) {
	switch {
	case fromFlag:
		return flag, nil
	case file != "":
		d, err := time.ParseDuration(file)
		if err != nil {
			return 0, fmt.Errorf("config: %w", err)
		}
		return d, nil
	}
	return def, nil
}

func pick[T int | int64](flag T, fromFlag bool, file, def T) T {
	switch {
	case fromFlag:
		return flag
	case file != 0:
		return file
	}
	return def
}

// watchedFile is a file read again when its size or time changes, so that
// cloud-init or a controller may rotate it without restarting the agent.
type watchedFile struct {
	path string
	mu   sync.Mutex
	mod  time.Time
	size int64
	data []byte
}

func (w *watchedFile) get() ([]byte, error) {
	fi, err := os.Stat(w.path)
	if err != nil {
		return nil, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.data == nil || !fi.ModTime().Equal(w.mod) || fi.Size() != w.size {
		b, err := os.ReadFile(w.path)
		if err != nil {
			return nil, err
		}
		w.data, w.mod, w.size = b, fi.ModTime(), fi.Size()
	}
	return w.data, nil
}

// token is the file's content without surrounding whitespace (a newline a
// shell or cloud-init left).
func (w *watchedFile) token() ([]byte, error) {
	b, err := w.get()
	if err != nil {
		return nil, err
	}
	return bytes.TrimSpace(b), nil
}

// keyPair is the serving certificate, reloaded when either file changes.
type keyPair struct {
	cert, key watchedFile
	mu        sync.Mutex
	c, k      []byte
	pair      *tls.Certificate
}

func (kp *keyPair) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c, err := kp.cert.get()
	if err != nil {
		return nil, err
	}
	k, err := kp.key.get()
	if err != nil {
		return nil, err
	}
	kp.mu.Lock()
	defer kp.mu.Unlock()
	if kp.pair == nil || string(c) != string(kp.c) || string(k) != string(kp.k) {
		pair, err := tls.X509KeyPair(c, k)
		if err != nil {
			if kp.pair != nil {
				return kp.pair, nil // half-rotated: keep serving the old pair
			}
			return nil, err
		}
		kp.c, kp.k, kp.pair = c, k, &pair
	}
	return kp.pair, nil
}
