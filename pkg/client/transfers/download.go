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

package transfers

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
)

// Progress hears how a transfer goes; the plugin's progress bar is one.
type Progress interface {
	// Start gives the size (-1 when unknown) and what an earlier run did.
	Start(total, done int64)
	// Add counts bytes that moved.
	Add(n int)
}

type noProgress struct{}

func (noProgress) Start(int64, int64) {}
func (noProgress) Add(int)            {}

// Result says what a transfer did.
type Result struct {
	// Record is the WukongFileTransfer of the transfer.
	Record string
	// Size of the file, and Moved: the bytes this run sent or received (less
	// than Size after a resume).
	Size, Moved int64
	// SHA256 of the whole file, when the transfer computed it.
	SHA256 string
}

// DownloadOptions tune DownloadFile.
type DownloadOptions struct {
	// Resume continues an earlier, interrupted download into the same
	// destination from its partial file.
	Resume   bool
	Progress Progress
}

// PartSuffix names the partial file of a download beside its destination;
// StateSuffix (after it) the record of what is already in it.
const (
	PartSuffix  = ".wukong-part"
	StateSuffix = ".json"
)

// downloadState is what a download keeps beside its partial file, so that
// a later run (--resume) fetches only what is missing.
type downloadState struct {
	Namespace string               `json:"namespace"`
	Wukong    string               `json:"wukong"`
	Disk      string               `json:"disk,omitempty"`
	Format    string               `json:"format,omitempty"` // of a disk export
	Path      string               `json:"path"`
	Size      int64                `json:"size"`
	ETag      string               `json:"etag"`
	Record    string               `json:"record"`
	Done      []v1alpha1.ByteRange `json:"done"`
}

// DownloadFile copies the remote regular file described by info into the
// local file dest. Files larger than one chunk move as parallel ranged
// requests tied to one record, each verified by the sha256 digest the server
// sends after its bytes; the file appears under dest only when complete.
func (c *Client) DownloadFile(ctx context.Context, remote string, info *v1alpha1.FileInfo, dest string, opts DownloadOptions) (*Result, error) {
	if opts.Progress == nil {
		opts.Progress = noProgress{}
	}
	if info.Size <= c.ChunkSize {
		return c.downloadWhole(ctx, remote, dest, opts.Progress)
	}
	part := dest + PartSuffix
	st := &downloadState{Namespace: c.Namespace, Wukong: c.Wukong, Disk: c.Disk, Path: remote, Size: info.Size}
	if c.Disk != "" {
		st.Format = c.format()
	}
	if opts.Resume {
		if old, err := loadState(part + StateSuffix); err == nil && old.Namespace == st.Namespace && old.Wukong == st.Wukong && old.Disk == st.Disk &&
			sameFormat(old.Format, st.Format) && old.Path == remote && old.Size == info.Size {
			st = old
		}
	}
	flags := os.O_RDWR | os.O_CREATE
	if len(st.Done) == 0 {
		flags |= os.O_TRUNC
	}
	f, err := os.OpenFile(part, flags, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := f.Truncate(info.Size); err != nil {
		return nil, err
	}
	if st.Record == "" || !c.recordOpen(ctx, st.Record) {
		rec, err := c.records.Create(ctx, &v1alpha1.WukongFileTransfer{
			ObjectMeta: metav1.ObjectMeta{GenerateName: c.recordPrefix(v1alpha1.OperationDownload)},
			Spec:       c.spec(v1alpha1.OperationDownload, remote),
		}, metav1.CreateOptions{})
		if apierrors.IsForbidden(err) && len(st.Done) == 0 {
			// Chunks need a record the client opens (create on
			// wukongfiletransfers); a reader without it gets the file as
			// one WebSocket stream, whose record the server keeps.
			f.Close()
			return c.streamToFile(ctx, remote, dest, opts.Progress)
		}
		if err != nil {
			return nil, fmt.Errorf("opening the transfer: %w", err)
		}
		st.Record = rec.Name
	}
	done := Covered(st.Done, info.Size)
	opts.Progress.Start(info.Size, done)
	var (
		mu    sync.Mutex
		moved int64
		sums  = map[Chunk]string{} // what arrived in this run, to compare with the server's
	)
	file := &serialWriterAt{f: f}
	fetch := func(ctx context.Context, ch Chunk) error {
		etag, sum, err := c.getChunk(ctx, remote, st.Record, ch, file, opts.Progress)
		if err != nil {
			return err
		}
		startWriteback(f, ch.Offset, ch.Length)
		mu.Lock()
		defer mu.Unlock()
		sums[ch] = sum
		if st.ETag == "" {
			st.ETag = etag
		} else if etag != st.ETag {
			return local(fmt.Errorf("%s changed in the VM while it was copied (ETag %s, then %s): copy it again without --resume", remote, st.ETag, etag))
		}
		st.Done = append(st.Done, v1alpha1.ByteRange{Offset: ch.Offset, Length: ch.Length})
		moved += ch.Length
		return local(saveState(part+StateSuffix, st))
	}
	err = c.runChunks(ctx, Missing(st.Done, info.Size, c.ChunkSize), fetch)
	for round := 0; err == nil; round++ {
		var bad []Chunk
		if bad, err = c.verifyRanges(ctx, st.Record, sums); len(bad) == 0 {
			break
		}
		// Not done after all: fetched again now, a few times, or by a
		// resume.
		st.Done = slices.DeleteFunc(st.Done, func(r v1alpha1.ByteRange) bool { return slices.Contains(bad, Chunk{r.Offset, r.Length}) })
		_ = saveState(part+StateSuffix, st)
		if round >= 2 || !errors.Is(err, errCut) {
			break
		}
		c.notify(fmt.Sprintf("%v; fetching %d range(s) again", err, len(bad)))
		for _, ch := range bad {
			delete(sums, ch)
		}
		err = c.runChunks(ctx, bad, fetch)
	}
	if err != nil {
		return nil, fmt.Errorf("%w (%d of %d bytes are in %s; run again with --resume to fetch only the rest)", err, Covered(st.Done, info.Size), info.Size, part)
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	if err := os.Rename(part, dest); err != nil {
		return nil, err
	}
	_ = os.Remove(part + StateSuffix)
	return &Result{Record: st.Record, Size: info.Size, Moved: moved}, nil
}

// recordOpen says whether a chunked transfer's record still takes chunks.
func (c *Client) recordOpen(ctx context.Context, name string) bool {
	rec, err := c.records.Get(ctx, name, metav1.GetOptions{})
	return err == nil && !ended(rec)
}

// getChunk fetches one range into f and returns the file's ETag and the
// range's hex sha256.
func (c *Client) getChunk(ctx context.Context, remote, record string, ch Chunk, f io.WriterAt, p Progress) (string, string, error) {
	q := c.query(remote, "transfer", record, "offset", strconv.FormatInt(ch.Offset, 10), "length", strconv.FormatInt(ch.Length, 10))
	resp, err := c.do(ctx, http.MethodGet, q, nil, 0)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || resp.ContentLength != ch.Length {
		return "", "", fmt.Errorf("asked for bytes %d-%d, got %s with %d bytes", ch.Offset, ch.Offset+ch.Length-1, resp.Status, resp.ContentLength)
	}
	h := sha256.New()
	// The body arrives a TLS record (16 KiB) at a time; gathering it into
	// 1 MiB file writes takes most of the plugin's system calls away.
	out := bufio.NewWriterSize(localWriter{io.NewOffsetWriter(f, ch.Offset)}, 1<<20)
	n, err := io.CopyBuffer(io.MultiWriter(out, h, progressWriter{p}), c.paced(ctx, resp.Body), make([]byte, 256<<10))
	if err == nil {
		err = out.Flush()
	}
	if err != nil {
		return "", "", err
	}
	if n != ch.Length {
		return "", "", fmt.Errorf("%w: %d of %d bytes", errCut, n, ch.Length)
	}
	return resp.Header.Get("ETag"), hex.EncodeToString(h.Sum(nil)), nil
}

// DigestWait is how long a download waits for the server to record the
// sha256 of a range it sent (it records it just after the bytes, so a
// digest missing for long is one a dying replica never wrote) before
// fetching the range again. Well inside the server's
// --transfer-stale-after (1m): meanwhile nothing moves the record, and a
// record ended as stale takes no more ranges. Tests shorten it.
var DigestWait = 10 * time.Second

// verifyRanges compares the sha256 of every range that arrived with the one
// the server recorded as it read the range from the VM, then ends the
// record. The server records a range just after sending it, so the last
// ones may take a moment to appear.
func (c *Client) verifyRanges(ctx context.Context, record string, sums map[Chunk]string) ([]Chunk, error) {
	var (
		rec     *v1alpha1.WukongFileTransfer
		missing []Chunk
	)
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, DigestWait, true, func(ctx context.Context) (bool, error) {
		r, err := c.records.Get(ctx, record, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		rec, missing = r, nil
		have := map[Chunk]bool{}
		for _, d := range r.Status.RangeDigests {
			have[Chunk{d.Offset, d.Length}] = true
		}
		for ch := range sums {
			if !have[ch] {
				missing = append(missing, ch)
			}
		}
		return len(missing) == 0, nil
	})
	switch {
	case err != nil && ctx.Err() == nil && rec != nil && !ended(rec):
		// A replica that died between sending a range and recording it
		// left no sha256 to check the range against: it is fetched again.
		sort.Slice(missing, func(i, j int) bool { return missing[i].Offset < missing[j].Offset })
		return missing, fmt.Errorf("%w: transfer %s lists no sha256 of bytes %d-%d (and %d more ranges)", errCut, record,
			missing[0].Offset, missing[0].Offset+missing[0].Length-1, len(missing)-1)
	case err != nil:
		return nil, fmt.Errorf("transfer %s does not list the sha256 of every range sent: %w", record, err)
	}
	var bad []Chunk
	for _, d := range rec.Status.RangeDigests {
		if sum, ok := sums[Chunk{d.Offset, d.Length}]; ok && sum != d.SHA256 {
			bad = append(bad, Chunk{d.Offset, d.Length})
			err = fmt.Errorf("%w: bytes %d-%d arrived with sha256 %s, the server read %s", errCut, d.Offset, d.Offset+d.Length-1, sum, d.SHA256)
		}
	}
	if err != nil || ended(rec) {
		return bad, err
	}
	resp, err := c.do(ctx, http.MethodGet, c.query(rec.Spec.RemotePath, "transfer", record, "commit", "true"), nil, 0)
	if err != nil {
		return nil, fmt.Errorf("ending transfer %s: %w", record, err)
	}
	return nil, resp.Body.Close()
}

// downloadWhole fetches a small file in one request; the server's record of
// it carries the sha256 of what it read, compared with what arrived.
func (c *Client) downloadWhole(ctx context.Context, remote, dest string, p Progress) (*Result, error) {
	var res *Result
	err := c.retry(ctx, func() error {
		resp, err := c.do(ctx, http.MethodGet, c.query(remote), nil, 0)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		p.Start(resp.ContentLength, 0)
		record := resp.Header.Get(v1alpha1.TransferHeader)
		n, sum, err := writePart(dest, func(w io.Writer) error {
			n, err := io.Copy(io.MultiWriter(w, progressWriter{p}), c.paced(ctx, resp.Body))
			if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
				err = fmt.Errorf("%w: %d of %d bytes", errCut, n, resp.ContentLength)
			}
			return err
		}, func(sum string) error { return c.checkRecordSum(ctx, record, sum) })
		res = &Result{Record: record, Size: n, Moved: n, SHA256: sum}
		return err
	})
	return res, err
}

// streamToFile downloads remote over a WebSocket into dest and checks the
// sha256 the server's record ends with.
func (c *Client) streamToFile(ctx context.Context, remote, dest string, p Progress) (*Result, error) {
	return c.streamInto(dest, func(w io.Writer) (*v1alpha1.WukongFileTransfer, error) {
		return c.StreamDownload(ctx, remote, w, StreamOptions{Progress: p})
	})
}

// streamInto writes what stream sends into dest's partial file and renames
// it over dest once its sha256 matches the one the server's record ends with.
func (c *Client) streamInto(dest string, stream func(io.Writer) (*v1alpha1.WukongFileTransfer, error)) (*Result, error) {
	var rec *v1alpha1.WukongFileTransfer
	n, sum, err := writePart(dest, func(w io.Writer) (err error) {
		rec, err = stream(w)
		return err
	}, func(sum string) error { return sameSum(rec, sum) })
	if err != nil {
		return nil, err
	}
	res := &Result{Size: n, Moved: n, SHA256: sum}
	if rec != nil {
		res.Record = rec.Name
	}
	return res, nil
}

// writePart writes what fill copies into dest's partial file, hashing it,
// and renames the file over dest only once verify accepted the sha256; on
// any failure the partial file goes.
func writePart(dest string, fill func(io.Writer) error, verify func(sum string) error) (int64, string, error) {
	part := dest + PartSuffix
	f, err := os.Create(part)
	if err != nil {
		return 0, "", local(err)
	}
	h, cw := sha256.New(), &countWriter{}
	err = fill(io.MultiWriter(localWriter{f}, h, cw))
	if cerr := f.Close(); err == nil {
		err = local(cerr)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if err == nil {
		err = verify(sum)
	}
	if err == nil {
		err = local(os.Rename(part, dest))
	}
	if err != nil {
		_ = os.Remove(part)
	}
	return cw.n, sum, err
}

type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return len(p), nil
}

// sameSum compares what arrived with the sha256 the server recorded.
func sameSum(rec *v1alpha1.WukongFileTransfer, sum string) error {
	if rec != nil && rec.Status.SHA256 != "" && rec.Status.SHA256 != sum {
		return fmt.Errorf("%w: received sha256 %s, the server sent %s", errCut, sum, rec.Status.SHA256)
	}
	return nil
}

// checkRecordSum compares sum with the sha256 the server recorded for the
// stream in record.
func (c *Client) checkRecordSum(ctx context.Context, record, sum string) error {
	if record == "" {
		return nil // no record (the server does not keep them): nothing to compare
	}
	rec, err := c.WaitEnded(ctx, record)
	if err != nil {
		return err
	}
	if rec.Status.Phase != v1alpha1.FileTransferPhaseSucceeded {
		return fmt.Errorf("the server ended transfer %s %s: %s", record, rec.Status.Phase, rec.Status.Message)
	}
	return sameSum(rec, sum)
}

func loadState(p string) (*downloadState, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	var st downloadState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// saveState replaces the state file atomically: a crash leaves the old or
// the new one, never half of one.
func saveState(p string, st *downloadState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

// localWriter marks write failures as local, so they are not retried.
// serialWriterAt writes to f one WriteAt at a time. The kernel serialises
// writes to one file anyway (the inode's lock), and waiters on that lock
// spin while its holder runs: with --parallel chunks on few cores, a
// download spent most of its CPU spinning there (2.2 of 3 CPU-seconds per
// GiB in a profile). A Go mutex parks them instead.
type serialWriterAt struct {
	mu sync.Mutex
	f  io.WriterAt
}

func (w *serialWriterAt) WriteAt(p []byte, off int64) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.f.WriteAt(p, off)
}

type localWriter struct{ w io.Writer }

func (l localWriter) Write(p []byte) (int, error) {
	n, err := l.w.Write(p)
	return n, local(err)
}

type progressWriter struct{ p Progress }

func (w progressWriter) Write(b []byte) (int, error) {
	w.p.Add(len(b))
	return len(b), nil
}

// paced limits r to c.Limiter's rate, if one is set.
func (c *Client) paced(ctx context.Context, r io.Reader) io.Reader {
	if c.Limiter == nil {
		return r
	}
	return &pacedReader{ctx: ctx, r: r, l: c.Limiter}
}

type pacedReader struct {
	ctx context.Context
	r   io.Reader
	l   Limiter
}

func (p *pacedReader) Read(b []byte) (int, error) {
	if burst := p.l.Burst(); len(b) > burst {
		b = b[:burst]
	}
	n, err := p.r.Read(b)
	if n > 0 {
		if werr := p.l.WaitN(p.ctx, n); werr != nil && err == nil {
			err = werr
		}
	}
	return n, err
}
