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

package agent

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/novasphere/wukong/pkg/transfer/archive"
	"github.com/novasphere/wukong/pkg/transfer/files"
)

// Limits are the agent's own caps; a request's (wukong-apiserver's) apply
// too, and the lower wins. 0: none.
type Limits struct {
	MaxFileSize           int64
	MaxListEntries        int
	MaxArchiveEntries     int64
	MaxArchiveHeaderBytes int64
}

// Handler serves the agent's API over Roots.
type Handler struct {
	roots *Roots
	// token returns the bearer token clients must send; it is asked on
	// every request, so that a rotated token file takes effect at once.
	token   func() ([]byte, error)
	limits  Limits
	idle    time.Duration
	version string
	log     *slog.Logger
	mux     *http.ServeMux
}

// HandlerOptions configure a Handler.
type HandlerOptions struct {
	Limits Limits
	// IdleTimeout cuts a request whose body or response moved no byte for
	// so long (0: never).
	IdleTimeout time.Duration
	Version     string
	Log         *slog.Logger
}

// NewHandler serves roots to clients that send the token.
func NewHandler(roots *Roots, token func() ([]byte, error), o HandlerOptions) *Handler {
	h := &Handler{roots: roots, token: token, limits: o.Limits, idle: o.IdleTimeout, version: o.Version, log: o.Log}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathHealthz, func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	auth := func(pattern string, fn func(w http.ResponseWriter, r *http.Request) error) {
		mux.Handle(pattern, h.authorized(fn))
	}
	auth("GET "+PathVersion, h.getVersion)
	auth("GET "+PathStat, h.getStat)
	auth("GET "+PathFile, h.getFile)
	auth("PUT "+PathFile, h.putFile)
	auth("DELETE "+PathFile, h.deleteFile)
	auth("PUT "+PathChunk, h.putChunk)
	auth("POST "+PathCommit, h.postCommit)
	auth("GET "+PathList, h.getList)
	auth("GET "+PathTar, h.getTar)
	auth("PUT "+PathTar, h.putTar)
	auth("GET "+PathSHA256, h.getSHA256)
	auth("GET "+PathStatFS, h.getStatFS)
	auth("POST "+PathSweep, h.postSweep)
	h.mux = mux
	return h
}

// ServeHTTP checks the bearer token in constant time before anything else
// (even which endpoints exist), and answers a missing or wrong one 401 with
// nothing more: no hint of what was wrong. Only the health check is open.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != PathHealthz && !h.tokenOK(r.Header.Get("Authorization")) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="wukong-agent"`)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	h.mux.ServeHTTP(w, r)
}

// authorized serves fn, an endpoint behind the token, with idle deadlines
// on its streams, and answers its error.
func (h *Handler) authorized(fn func(w http.ResponseWriter, r *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.idle > 0 {
			rc := http.NewResponseController(w)
			r.Body = &idleBody{rc: rc, r: r.Body, idle: h.idle}
			w = &idleWriter{ResponseWriter: w, rc: rc, idle: h.idle}
		}
		if err := fn(w, r); err != nil {
			h.fail(w, r, err)
		}
	})
}

func (h *Handler) tokenOK(header string) bool {
	got, ok := strings.CutPrefix(header, "Bearer ")
	if !ok || got == "" {
		return false
	}
	want, err := h.token()
	if err != nil || len(want) == 0 {
		h.log.Error("Reading the token", "err", err)
		return false
	}
	// Compared as hashes, so that not even the length leaks through time.
	a, b := sha256.Sum256([]byte(got)), sha256.Sum256(want)
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// fail answers err as an Error; it is logged with the operation and path
// (never the token, nor the query: it may hold a sha256 and nothing else,
// but the rule is simpler kept whole).
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	e := ErrorFor(err)
	h.log.Info("Request failed", "method", r.Method, "op", r.URL.Path, "path", r.URL.Query().Get("path"), "status", e.Status, "reason", e.Reason, "err", e.Message)
	writeJSON(w, e.Status, e)
}

func writeJSON(w http.ResponseWriter, code int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	return json.NewEncoder(w).Encode(v)
}

// query reads the request's parameters, remembering the first bad one.
type query struct {
	v   map[string][]string
	err error
}

func params(r *http.Request) *query { return &query{v: r.URL.Query()} }

func (q *query) str(k string) string {
	if v := q.v[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func (q *query) bool(k string) bool {
	s := q.str(k)
	if s == "" {
		return false
	}
	b, err := strconv.ParseBool(s)
	if err != nil && q.err == nil {
		q.err = fmt.Errorf("%w: %s=%q is not a boolean", ErrBadRequest, k, s)
	}
	return b
}

// int64 reads a non-negative integer; def when absent.
func (q *query) int64(k string, def int64) int64 {
	s := q.str(k)
	if s == "" {
		return def
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if (err != nil || n < 0) && q.err == nil {
		q.err = fmt.Errorf("%w: %s=%q is not a non-negative integer", ErrBadRequest, k, s)
	}
	return n
}

func (q *query) mode(k string) *os.FileMode {
	s := q.str(k)
	if s == "" {
		return nil
	}
	n, err := strconv.ParseUint(s, 8, 32)
	if (err != nil || n > 0o7777) && q.err == nil {
		q.err = fmt.Errorf("%w: %s=%q is not an octal file mode", ErrBadRequest, k, s)
	}
	// Setuid, setgid and sticky bits are not given to uploads, as with tar.
	m := os.FileMode(n) & os.ModePerm
	return &m
}

var sha256RE = regexp.MustCompile(`^[0-9a-f]{64}$`)

func (q *query) sha256(k string) string {
	s := q.str(k)
	if s != "" && !sha256RE.MatchString(s) && q.err == nil {
		q.err = fmt.Errorf("%w: %s must be 64 lower-case hex digits", ErrBadRequest, k)
	}
	return s
}

// tmpRE: the suffix of an upload's temporary file, chosen by the client so
// that it can name the file to remove when the agent died mid-upload.
var tmpRE = regexp.MustCompile(`^[0-9a-f]{12}$`)

// tmpSuffix is the request's tmp parameter, or a random suffix.
func (q *query) tmpSuffix(k string) string {
	s := q.str(k)
	if s == "" {
		return randomSuffix()
	}
	if !tmpRE.MatchString(s) && q.err == nil {
		q.err = fmt.Errorf("%w: %s must be 12 lower-case hex digits", ErrBadRequest, k)
	}
	return s
}

// idRE: a chunked upload's id is the record's UID; it becomes part of a
// file name, so it may not carry a separator or a dot-dot.
var idRE = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)

// target resolves the request's path.
func (h *Handler) target(q *query) (guest string, m *mount, rel string, err error) {
	guest = q.str("path")
	if q.err != nil {
		return "", nil, "", q.err
	}
	m, rel, err = h.roots.resolve(guest)
	return guest, m, rel, err
}

// lower is the lower non-zero of two caps.
func lower[T int | int64](a, b T) T {
	switch {
	case a == 0:
		return b
	case b == 0 || a < b:
		return a
	}
	return b
}

func (h *Handler) getVersion(w http.ResponseWriter, _ *http.Request) error {
	return writeJSON(w, http.StatusOK, VersionResponse{Version: h.version, Roots: h.roots.Paths()})
}

func infoOf(fi os.FileInfo) FileInfo {
	return FileInfo{Name: fi.Name(), Size: fi.Size(), Mode: fi.Mode(), ModTime: fi.ModTime()}
}

func (h *Handler) getStat(w http.ResponseWriter, r *http.Request) error {
	guest, m, rel, err := h.target(params(r))
	if err != nil {
		return err
	}
	fi, err := m.root.Stat(rel)
	if err != nil {
		return guestErr("stat", guest, err)
	}
	info := infoOf(fi)
	info.Name = path.Base(path.Clean(guest))
	return writeJSON(w, http.StatusOK, info)
}

// getFile serves a file, with a Range (http.ServeContent: single and
// multiple ranges, If-Range, 416).
func (h *Handler) getFile(w http.ResponseWriter, r *http.Request) error {
	guest, m, rel, err := h.target(params(r))
	if err != nil {
		return err
	}
	f, err := m.open(rel)
	if err != nil {
		return guestErr("open", guest, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return guestErr("stat", guest, err)
	}
	switch {
	case fi.IsDir():
		return fmt.Errorf("%s: %w", guest, files.ErrIsDirectory)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%w: %s is not a regular file", ErrBadRequest, guest)
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, "", fi.ModTime(), f)
	return nil
}

// putFile writes the body to path atomically: a temporary file beside it,
// synced, renamed over it (or hard-linked, for noClobber, which refuses an
// existing target), the directory synced. Nothing is left on failure.
func (h *Handler) putFile(w http.ResponseWriter, r *http.Request) error {
	q := params(r)
	mode := q.mode("mode")
	createParents, noClobber := q.bool("createParents"), q.bool("noClobber")
	want := q.sha256("sha256")
	suffix := q.tmpSuffix("tmp")
	size := int64(-1)
	if q.str("size") != "" {
		size = q.int64("size", -1)
	}
	maxBytes := lower(q.int64("maxBytes", 0), h.limits.MaxFileSize)
	guest, m, rel, err := h.target(q)
	if err != nil {
		return err
	}
	if maxBytes > 0 && size > maxBytes {
		return fmt.Errorf("%w: %d bytes announced, the limit is %d", files.ErrTooLarge, size, maxBytes)
	}
	existing, err := m.root.Lstat(rel)
	switch {
	case err == nil && existing.IsDir():
		return fmt.Errorf("%s: %w", guest, files.ErrIsDirectory)
	case err == nil && noClobber:
		return fmt.Errorf("%s: %w", guest, files.ErrExists)
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return guestErr("lstat", guest, err)
	case err != nil:
		existing = nil
	}
	dir := path.Dir(rel)
	if err := ensureDir(m, path.Dir(guest), dir, createParents); err != nil {
		return err
	}
	if mode == nil {
		m := os.FileMode(0o644)
		if existing != nil && existing.Mode().IsRegular() {
			m = existing.Mode().Perm()
		}
		mode = &m
	}
	tmp := path.Join(dir, files.TempName(files.TempPrefix+suffix+"-", path.Base(rel)))
	f, err := m.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return guestErr("create", guest, err)
	}
	res, err := writeBody(r.Context(), f, r.Body, size, maxBytes, want)
	if err == nil {
		err = f.Chmod(*mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = place(m, tmp, rel, noClobber)
	}
	if err != nil {
		m.root.Remove(tmp)
		return guestErr("upload", guest, err)
	}
	syncDir(m, dir)
	res.Created = existing == nil
	code := http.StatusOK
	if res.Created {
		code = http.StatusCreated
	}
	return writeJSON(w, code, res)
}

// ensureDir makes sure dir (in m) is a directory, creating it when asked.
func ensureDir(m *mount, guestDir, dir string, create bool) error {
	fi, err := m.root.Stat(dir)
	switch {
	case err == nil && !fi.IsDir():
		return fmt.Errorf("%s: %w", guestDir, files.ErrNotDirectory)
	case err == nil:
		return nil
	case !errors.Is(err, os.ErrNotExist):
		return guestErr("stat", guestDir, err)
	case !create:
		return fmt.Errorf("%s: %w (set createParents=true to create it)", guestDir, files.ErrNoParent)
	}
	return guestErr("mkdir", guestDir, m.root.MkdirAll(dir, 0o755))
}

// place moves tmp to target: rename replaces atomically; a hard link
// refuses an existing target atomically.
func place(m *mount, tmp, target string, noClobber bool) error {
	if !noClobber {
		return m.root.Rename(tmp, target)
	}
	if err := m.root.Link(tmp, target); err != nil {
		if _, serr := m.root.Lstat(target); serr == nil {
			return files.ErrExists
		}
		return err
	}
	return m.root.Remove(tmp)
}

// syncDir makes a rename in dir durable; best effort.
func syncDir(m *mount, dir string) {
	if d, err := m.root.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// writeBody copies body into f, at most the lower of size and maxBytes
// (more is files.ErrTooLarge, fewer than size files.ErrShortBody), hashing
// on the way and checking want.
func writeBody(ctx context.Context, f *os.File, body io.Reader, size, maxBytes int64, want string) (UploadResponse, error) {
	h := sha256.New()
	limit := int64(-1)
	if maxBytes > 0 {
		limit = maxBytes
	}
	if size >= 0 && (limit < 0 || size < limit) {
		limit = size
	}
	src := io.Reader(ctxReader{ctx, body})
	if limit >= 0 {
		src = io.LimitReader(src, limit)
	}
	n, err := io.CopyBuffer(f, io.TeeReader(src, h), make([]byte, 256<<10))
	if err != nil {
		return UploadResponse{}, err
	}
	if limit >= 0 && n == limit && (size < 0 || size > limit) {
		// Exactly at the limit: anything more in the body is over it.
		var one [1]byte
		if m, _ := io.ReadFull(body, one[:]); m > 0 {
			return UploadResponse{}, fmt.Errorf("%w: the limit is %d bytes", files.ErrTooLarge, maxBytes)
		}
	}
	if size >= 0 && n != size {
		return UploadResponse{}, fmt.Errorf("%w: %d of %d bytes", files.ErrShortBody, n, size)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if want != "" && sum != want {
		return UploadResponse{}, fmt.Errorf("%w: the body's sha256 is %s, expected %s", files.ErrChecksumMismatch, sum, want)
	}
	return UploadResponse{Bytes: n, SHA256: sum}, nil
}

func (h *Handler) deleteFile(w http.ResponseWriter, r *http.Request) error {
	q := params(r)
	recursive, missingOK := q.bool("recursive"), q.bool("missingOK")
	guest, m, rel, err := h.target(q)
	if err != nil {
		return err
	}
	if rel == "." {
		return fmt.Errorf("%s: %w: it is one of the agent's roots", guest, files.ErrRemoveRoot)
	}
	fi, err := m.root.Lstat(rel)
	switch {
	case errors.Is(err, os.ErrNotExist) && missingOK:
		w.WriteHeader(http.StatusNoContent)
		return nil
	case err != nil:
		return guestErr("lstat", guest, err)
	case fi.IsDir() && recursive:
		err = m.root.RemoveAll(rel)
	default:
		// A file, a link (never what it points at) or an empty directory.
		err = m.root.Remove(rel)
	}
	if err != nil {
		return guestErr("remove", guest, err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// putChunk writes one chunk of upload id at offset into
// files.ChunkTempName(path, id), so that wukong-apiserver names the same
// file whichever method wrote it.
func (h *Handler) putChunk(w http.ResponseWriter, r *http.Request) error {
	q := params(r)
	id := q.str("id")
	offset := q.int64("offset", 0)
	max := q.int64("max", -1)
	createParents := q.bool("createParents")
	guest, m, rel, err := h.target(q)
	if err != nil {
		return err
	}
	if !idRE.MatchString(id) {
		return fmt.Errorf("%w: id must be 1 to 64 letters, digits and dashes", ErrBadRequest)
	}
	if max < 0 {
		return fmt.Errorf("%w: max (the bytes the chunk may hold) is required", ErrBadRequest)
	}
	if h.limits.MaxFileSize > 0 && offset+max > h.limits.MaxFileSize {
		return fmt.Errorf("%w: the transfer runs to %d bytes, the agent's limit is %d", files.ErrTooLarge, offset+max, h.limits.MaxFileSize)
	}
	if rel == "." {
		return fmt.Errorf("%s: %w", guest, files.ErrIsDirectory)
	}
	dir := path.Dir(rel)
	if createParents {
		if err := m.root.MkdirAll(dir, 0o755); err != nil {
			return guestErr("mkdir", path.Dir(guest), err)
		}
	}
	tmp := files.ChunkTempName(rel, id)
	f, err := m.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return guestErr("open", guest, err)
	}
	n, err := writeChunk(r.Context(), f, offset, max, r.Body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return guestErr("write", guest, err)
	}
	return writeJSON(w, http.StatusOK, ChunkResponse{Bytes: n})
}

func writeChunk(ctx context.Context, f *os.File, offset, max int64, body io.Reader) (int64, error) {
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return 0, err
	}
	n, err := io.CopyBuffer(f, io.LimitReader(ctxReader{ctx, body}, max), make([]byte, 256<<10))
	if err != nil {
		return n, err
	}
	if n == max {
		var one [1]byte
		if m, _ := io.ReadFull(body, one[:]); m > 0 {
			return n, fmt.Errorf("%w: the chunk runs past the transfer's expected size", files.ErrTooLarge)
		}
	}
	return n, f.Sync()
}

// postCommit checks the collected chunks of id (size, and sha256 when
// given, read back) and renames them over path.
func (h *Handler) postCommit(w http.ResponseWriter, r *http.Request) error {
	q := params(r)
	id := q.str("id")
	size := q.int64("size", -1)
	want := q.sha256("sha256")
	mode := q.mode("mode")
	noClobber := q.bool("noClobber")
	guest, m, rel, err := h.target(q)
	if err != nil {
		return err
	}
	if !idRE.MatchString(id) || size < 0 {
		return fmt.Errorf("%w: id and size are required", ErrBadRequest)
	}
	if rel == "." {
		return fmt.Errorf("%s: %w", guest, files.ErrIsDirectory)
	}
	tmp := files.ChunkTempName(rel, id)
	sum, err := h.commit(r.Context(), m, tmp, rel, size, want, mode, noClobber)
	if err != nil {
		m.root.Remove(tmp)
		return guestErr("commit", guest, err)
	}
	syncDir(m, path.Dir(rel))
	return writeJSON(w, http.StatusOK, CommitResponse{SHA256: sum})
}

func (h *Handler) commit(ctx context.Context, m *mount, tmp, rel string, size int64, want string, mode *os.FileMode, noClobber bool) (string, error) {
	f, err := m.open(tmp)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var (
		n   int64
		sum string
	)
	if want != "" {
		hh := sha256.New()
		if n, err = io.CopyBuffer(hh, ctxReader{ctx, f}, make([]byte, 256<<10)); err != nil {
			return "", err
		}
		sum = hex.EncodeToString(hh.Sum(nil))
	} else {
		fi, err := f.Stat()
		if err != nil {
			return "", err
		}
		n = fi.Size()
	}
	switch {
	case n != size:
		return "", fmt.Errorf("%w: the collected file has %d bytes, expected %d", files.ErrShortBody, n, size)
	case want != "" && sum != want:
		return "", fmt.Errorf("%w: the uploaded bytes' sha256 is %s, expected %s", files.ErrChecksumMismatch, sum, want)
	}
	if mode == nil {
		md := os.FileMode(0o644)
		if fi, err := m.root.Stat(rel); err == nil && fi.Mode().IsRegular() {
			md = fi.Mode().Perm()
		}
		mode = &md
	}
	// On the open file, not by name: nothing can swap a link in between.
	if err := f.Chmod(*mode); err != nil {
		return "", err
	}
	return sum, place(m, tmp, rel, noClobber)
}

// getList answers the entries of a directory, sorted, with link targets; a
// directory of more than the cap is refused (files.ErrTooManyEntries) after
// holding no more than the cap.
func (h *Handler) getList(w http.ResponseWriter, r *http.Request) error {
	q := params(r)
	max := lower(int(q.int64("max", 0)), h.limits.MaxListEntries)
	guest, m, rel, err := h.target(q)
	if err != nil {
		return err
	}
	infos, err := m.readDir(r.Context(), guest, rel, max)
	if errors.Is(err, files.ErrTooManyEntries) {
		return fmt.Errorf("%w; one listing returns at most %d: list its subdirectories, or download it as a tar (archive=tar)", err, max)
	}
	if err != nil {
		return err
	}
	sort.Slice(infos, func(i, j int) bool { return infos[i].Name() < infos[j].Name() })
	out := ListResponse{Path: guest, Entries: make([]FileInfo, 0, len(infos))}
	for _, fi := range infos {
		e := infoOf(fi)
		if fi.Mode()&os.ModeSymlink != 0 {
			// A dangling or unreadable link still lists.
			e.LinkTarget, _ = m.root.Readlink(path.Join(rel, fi.Name()))
		}
		out.Entries = append(out.Entries, e)
	}
	return writeJSON(w, http.StatusOK, out)
}

// getTar writes the tree at path as a tar (gzip=true: tar.gz). The answer
// starts with the archive's first byte, so that a tree refused at its top
// is still an Error; a failure later is told in ErrorTrailer, and the tar
// lacks its end marker.
func (h *Handler) getTar(w http.ResponseWriter, r *http.Request) error {
	q := params(r)
	opts := archive.WriteOptions{Gzip: q.bool("gzip"), MaxEntries: lower(q.int64("maxEntries", 0), h.limits.MaxArchiveEntries)}
	guest, _, _, err := h.target(q)
	if err != nil {
		return err
	}
	ct := "application/x-tar"
	if opts.Gzip {
		ct = "application/gzip"
	}
	w.Header().Set("Trailer", ErrorTrailer+", "+StatsTrailer)
	sw := &startWriter{w: w, ct: ct}
	stats, err := archive.Write(r.Context(), rootFS{rs: h.roots, maxDir: int(opts.MaxEntries)}, guest, sw, opts)
	if err != nil && !sw.started {
		w.Header().Del("Trailer")
		return err
	}
	sw.start()
	if err != nil {
		e := ErrorFor(err)
		h.log.Info("Tar failed after it started", "path", guest, "reason", e.Reason, "err", e.Message)
		b, _ := json.Marshal(e)
		w.Header().Set(ErrorTrailer, string(b))
		return nil
	}
	b, _ := json.Marshal(stats)
	w.Header().Set(StatsTrailer, string(b))
	return nil
}

// startWriter answers 200 with the first write (or start).
type startWriter struct {
	w       http.ResponseWriter
	ct      string
	started bool
}

func (s *startWriter) start() {
	if !s.started {
		s.started = true
		s.w.Header().Set("Content-Type", s.ct)
		s.w.WriteHeader(http.StatusOK)
	}
}

func (s *startWriter) Write(p []byte) (int, error) {
	s.start()
	return s.w.Write(p)
}

// putTar extracts the body under the directory path (archive.Extract: all
// or nothing, hostile archives refused).
func (h *Handler) putTar(w http.ResponseWriter, r *http.Request) error {
	q := params(r)
	opts := archive.ExtractOptions{
		Gzip:           q.bool("gzip"),
		NoClobber:      q.bool("noClobber"),
		MaxBytes:       lower(q.int64("maxBytes", 0), h.limits.MaxFileSize),
		MaxEntries:     lower(q.int64("maxEntries", 0), h.limits.MaxArchiveEntries),
		MaxHeaderBytes: lower(q.int64("maxHeaderBytes", 0), h.limits.MaxArchiveHeaderBytes),
	}
	createParents := q.bool("createParents")
	guest, m, rel, err := h.target(q)
	if err != nil {
		return err
	}
	if createParents {
		if err := m.root.MkdirAll(rel, 0o755); err != nil {
			return guestErr("mkdir", guest, err)
		}
	}
	fi, err := m.root.Stat(rel)
	if err != nil {
		return guestErr("stat", guest, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s: %w: a tar is extracted under a directory", guest, files.ErrNotDirectory)
	}
	stats, err := archive.Extract(r.Context(), rootFS{rs: h.roots}, guest, r.Body, opts)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, stats)
}

func (h *Handler) getSHA256(w http.ResponseWriter, r *http.Request) error {
	guest, m, rel, err := h.target(params(r))
	if err != nil {
		return err
	}
	f, err := m.open(rel)
	if err != nil {
		return guestErr("open", guest, err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return guestErr("stat", guest, err)
	} else if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: %w", guest, files.ErrIsDirectory)
	}
	hh := sha256.New()
	n, err := io.CopyBuffer(hh, ctxReader{r.Context(), f}, make([]byte, 256<<10))
	if err != nil {
		return guestErr("read", guest, err)
	}
	return writeJSON(w, http.StatusOK, HashResponse{Size: n, SHA256: hex.EncodeToString(hh.Sum(nil))})
}

func (h *Handler) getStatFS(w http.ResponseWriter, r *http.Request) error {
	guest, m, rel, err := h.target(params(r))
	if err != nil {
		return err
	}
	f, err := m.open(rel)
	if err != nil {
		return guestErr("open", guest, err)
	}
	defer f.Close()
	st, err := statFS(f)
	if err != nil {
		return guestErr("statfs", guest, err)
	}
	return writeJSON(w, http.StatusOK, st)
}

// postSweep removes old temporary upload files from the directories asked
// (files.Sweep's rules: exact temporary names only, files.IsStaleTemp),
// skipping those outside the roots or missing.
func (h *Handler) postSweep(w http.ResponseWriter, r *http.Request) error {
	var req SweepRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		return fmt.Errorf("%w: the body is not a sweep request: %v", ErrBadRequest, err)
	}
	removed, err := h.sweep(r.Context(), req)
	if err != nil {
		return err
	}
	if removed == nil {
		removed = []string{}
	}
	return writeJSON(w, http.StatusOK, SweepResponse{Removed: removed})
}

func (h *Handler) sweep(ctx context.Context, req SweepRequest) ([]string, error) {
	var removed []string
	budget := req.MaxEntries
	queue := append([]files.SweepRoot(nil), req.Roots...)
	seen := map[string]bool{}
	for len(queue) > 0 {
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		it := queue[0]
		queue = queue[1:]
		if seen[it.Dir] {
			continue
		}
		seen[it.Dir] = true
		m, rel, err := h.roots.resolve(it.Dir)
		if err != nil {
			continue
		}
		infos, err := m.readDir(ctx, it.Dir, rel, max(budget, 0))
		if err != nil {
			if errors.Is(err, files.ErrTooManyEntries) {
				return removed, nil // the budget is spent
			}
			continue
		}
		if req.MaxEntries > 0 {
			if budget -= len(infos); budget < 0 {
				return removed, nil
			}
		}
		for _, fi := range infos {
			p := path.Join(it.Dir, fi.Name())
			if fi.IsDir() {
				if it.Recursive {
					queue = append(queue, files.SweepRoot{Dir: p, Recursive: true})
				}
				continue
			}
			if !files.IsStaleTemp(fi, req.OlderThan) {
				continue
			}
			if err := m.root.Remove(path.Join(rel, fi.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
				return removed, guestErr("remove", p, err)
			}
			removed = append(removed, p)
		}
	}
	return removed, nil
}

func randomSuffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ctxReader fails reads once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// idleBody gives every read of a request body idle to complete, and lifts
// the deadline at the end of the body: a deadline left behind would cut the
// connection while the handler works on (a commit's sha256).
type idleBody struct {
	rc   *http.ResponseController
	r    io.ReadCloser
	idle time.Duration
}

func (b *idleBody) Read(p []byte) (int, error) {
	_ = b.rc.SetReadDeadline(time.Now().Add(b.idle))
	n, err := b.r.Read(p)
	if err != nil {
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

func (b *idleBody) Close() error { return b.r.Close() }

// idleWriter gives every write of a response idle to complete.
type idleWriter struct {
	http.ResponseWriter
	rc   *http.ResponseController
	idle time.Duration
}

func (w *idleWriter) Write(p []byte) (int, error) {
	_ = w.rc.SetWriteDeadline(time.Now().Add(w.idle))
	return w.ResponseWriter.Write(p)
}

func (w *idleWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
