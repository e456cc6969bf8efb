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

package files

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"os"
	"path"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// summer is an Observer that keeps the sha256, as a transfer record does.
type summer struct{ h hash.Hash }

func (s *summer) Write(p []byte) (int, error) { return s.h.Write(p) }
func (s *summer) SHA256() string              { return hex.EncodeToString(s.h.Sum(nil)) }

// TestUploadSummingObserver: with an Observer that keeps the sum, Upload
// hashes the body once, through it, and still refuses a wrong sha256
// without leaving anything under the target name.
func TestUploadSummingObserver(t *testing.T) {
	c := hostSFTP(t)
	dir := t.TempDir()
	body := bytes.Repeat([]byte("wukong "), 50_000)
	sum := sha256.Sum256(body)
	good := hex.EncodeToString(sum[:])

	obs := &summer{h: sha256.New()}
	res, err := Upload(context.Background(), c, path.Join(dir, "ok"), bytes.NewReader(body), UploadOptions{Size: int64(len(body)), SHA256: good, Observer: obs})
	require.NoError(t, err)
	assert.Equal(t, good, res.SHA256)
	assert.Equal(t, good, obs.SHA256())

	_, err = Upload(context.Background(), c, path.Join(dir, "bad"), bytes.NewReader(body),
		UploadOptions{Size: int64(len(body)), SHA256: "00" + good[2:], Observer: &summer{h: sha256.New()}})
	require.ErrorIs(t, err, ErrChecksumMismatch)
	_, err = os.Stat(path.Join(dir, "bad"))
	assert.True(t, errors.Is(err, os.ErrNotExist), "nothing under the target name: %v", err)
}

// TestCommitAsksTheGuest: a chunked upload's commit takes the guest's sum
// when it gives one (so a wrong one fails the commit, nothing under the
// target), and reads the file back when the guest cannot hash it.
func TestCommitAsksTheGuest(t *testing.T) {
	c := hostSFTP(t)
	dir := t.TempDir()
	body := bytes.Repeat([]byte("chunk "), 10_000)
	sum := sha256.Sum256(body)
	good := hex.EncodeToString(sum[:])
	commit := func(target string, hash GuestHasher) (string, error) {
		fs := New(c).WithGuestHasher(hash)
		_, err := fs.WriteChunk(context.Background(), target, "uid", 0, int64(len(body)), false, bytes.NewReader(body), nil)
		require.NoError(t, err)
		return fs.CommitChunks(context.Background(), target, "uid", CommitOptions{Size: int64(len(body)), SHA256: good})
	}
	asked := 0
	got, err := commit(path.Join(dir, "guest"), func(context.Context, string) (string, error) { asked++; return good, nil })
	require.NoError(t, err)
	assert.Equal(t, good, got)
	assert.Equal(t, 1, asked)

	_, err = commit(path.Join(dir, "lies"), func(context.Context, string) (string, error) { return "00" + good[2:], nil })
	require.ErrorIs(t, err, ErrChecksumMismatch)
	_, err = os.Stat(path.Join(dir, "lies"))
	assert.True(t, errors.Is(err, os.ErrNotExist), "nothing under the target name: %v", err)

	got, err = commit(path.Join(dir, "readback"), func(context.Context, string) (string, error) { return "", errGuestHash })
	require.NoError(t, err)
	assert.Equal(t, good, got)
}

func TestParseSHA256Sum(t *testing.T) {
	const h = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	for out, ok := range map[string]bool{
		h + " *file\n":                  true,
		`\` + h + ` *two\nlines` + "\n": true,
		h + "  file\n":                  true,
		"":                              false,
		"welcome!\n" + h + " *file\n":   false,
		h + " *a\n" + h + " *b\n":       false,
		"zz" + h[2:] + " *file\n":       false,
		h[:60] + " *file\n":             false,
	} {
		got, err := parseSHA256Sum([]byte(out))
		if ok {
			assert.NoError(t, err, out)
			assert.Equal(t, h, got, out)
		} else {
			assert.Error(t, err, out)
		}
	}
	assert.Equal(t, `'it'\''s'`, ShellQuote("it's"))
}

// TestCommitTakenOver: a commit begun again after its first server stopped
// finds the file already renamed into place by that server, and takes it
// for done when it is what was uploaded; anything else fails.
func TestCommitTakenOver(t *testing.T) {
	c := hostSFTP(t)
	dir := t.TempDir()
	body := bytes.Repeat([]byte("chunk "), 10_000)
	sum := sha256.Sum256(body)
	good := hex.EncodeToString(sum[:])
	fs := New(c)
	target := path.Join(dir, "f")
	_, err := fs.WriteChunk(context.Background(), target, "uid", 0, int64(len(body)), false, bytes.NewReader(body), nil)
	require.NoError(t, err)
	opts := CommitOptions{Size: int64(len(body)), SHA256: good}
	got, err := fs.CommitChunks(context.Background(), target, "uid", opts) // the first server's
	require.NoError(t, err)
	require.Equal(t, good, got)

	opts.TakenOver = true
	got, err = fs.CommitChunks(context.Background(), target, "uid", opts)
	require.NoError(t, err, "the first server had renamed it")
	assert.Equal(t, good, got)

	require.NoError(t, os.WriteFile(target, []byte("something else"), 0o644))
	_, err = fs.CommitChunks(context.Background(), target, "uid", opts)
	assert.ErrorContains(t, err, "is not what was uploaded")

	opts.TakenOver = false
	_, err = fs.CommitChunks(context.Background(), target, "uid", opts)
	assert.Error(t, err, "without a takeover, a missing collected file is a failure")
}
