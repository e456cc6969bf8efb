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
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// call sends one request straight to the handler, with the token.
func call(t *testing.T, h http.Handler, method, path string, q url.Values, body io.Reader, hdr http.Header) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path+"?"+q.Encode(), body)
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// TestWireFormat pins what docs/agent.md promises on the wire, apart from
// the client: statuses, headers, JSON shapes.
func TestWireFormat(t *testing.T) {
	f := newFixture(t, Limits{})
	h := f.h
	must(t, os.WriteFile(filepath.Join(f.data, "f"), []byte("0123456789"), 0o644))
	p := func(path string, kv ...string) url.Values {
		q := url.Values{"path": {path}}
		for i := 0; i+1 < len(kv); i += 2 {
			q.Set(kv[i], kv[i+1])
		}
		return q
	}

	rec := call(t, h, http.MethodGet, PathFile, p("/data/f"), nil, http.Header{"Range": {"bytes=2-4"}})
	if rec.Code != http.StatusPartialContent || rec.Body.String() != "234" || rec.Header().Get("Content-Range") != "bytes 2-4/10" {
		t.Errorf("range: %d %q %v", rec.Code, rec.Body.String(), rec.Header())
	}
	if rec := call(t, h, http.MethodGet, PathFile, p("/data/f"), nil, http.Header{"Range": {"bytes=20-"}}); rec.Code != http.StatusRequestedRangeNotSatisfiable {
		t.Errorf("a range past the end: %d", rec.Code)
	}
	if rec := call(t, h, http.MethodGet, PathFile, p("/data/f"), nil, nil); rec.Code != http.StatusOK || rec.Body.String() != "0123456789" {
		t.Errorf("whole: %d %q", rec.Code, rec.Body.String())
	}

	rec = call(t, h, http.MethodPut, PathFile, p("/data/new", "size", "3", "mode", "0640"), strings.NewReader("abc"), nil)
	var up UploadResponse
	if rec.Code != http.StatusCreated || json.Unmarshal(rec.Body.Bytes(), &up) != nil || !up.Created || up.Bytes != 3 {
		t.Errorf("create: %d %s", rec.Code, rec.Body.String())
	}
	if rec := call(t, h, http.MethodPut, PathFile, p("/data/new"), strings.NewReader("abcd"), nil); rec.Code != http.StatusOK {
		t.Errorf("replace: %d %s", rec.Code, rec.Body.String())
	}

	for name, tc := range map[string]struct {
		method, path string
		q            url.Values
		status       int
		reason       string
	}{
		"bad boolean":       {http.MethodPut, PathFile, p("/data/x", "createParents", "yes"), 400, ReasonBadRequest},
		"bad mode":          {http.MethodPut, PathFile, p("/data/x", "mode", "rwx"), 400, ReasonBadRequest},
		"bad sha256":        {http.MethodPut, PathFile, p("/data/x", "sha256", "ABC"), 400, ReasonBadRequest},
		"negative offset":   {http.MethodPut, PathChunk, p("/data/x", "id", "a", "offset", "-1", "max", "1"), 400, ReasonBadRequest},
		"chunk without max": {http.MethodPut, PathChunk, p("/data/x", "id", "a"), 400, ReasonBadRequest},
		"no path":           {http.MethodGet, PathStat, url.Values{}, 400, ReasonBadRequest},
		"missing":           {http.MethodGet, PathStat, p("/data/none"), 404, ReasonNotFound},
		"outside":           {http.MethodGet, PathStat, p("/etc"), 403, ReasonOutsideRoots},
		"read a dir":        {http.MethodGet, PathFile, p("/data"), 409, ReasonIsDirectory},
		"delete a root":     {http.MethodDelete, PathFile, p("/data", "recursive", "true"), 400, ReasonRemoveRoot},
	} {
		rec := call(t, h, tc.method, tc.path, tc.q, strings.NewReader(""), nil)
		var e Error
		if rec.Code != tc.status || json.Unmarshal(rec.Body.Bytes(), &e) != nil || e.Reason != tc.reason || e.Status != tc.status || e.Message == "" {
			t.Errorf("%s: %d %s, want %d %s", name, rec.Code, rec.Body.String(), tc.status, tc.reason)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s: Content-Type %q", name, ct)
		}
	}

	rec = call(t, h, http.MethodGet, PathTar, p("/data/sub"), nil, nil)
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/x-tar" || rec.Result().Trailer.Get(StatsTrailer) == "" {
		t.Errorf("tar: %d %v trailer %v", rec.Code, rec.Header(), rec.Result().Trailer)
	}
	if rec := call(t, h, http.MethodDelete, PathFile, p("/data/new"), nil, nil); rec.Code != http.StatusNoContent {
		t.Errorf("delete: %d", rec.Code)
	}
	if rec := call(t, h, http.MethodDelete, PathFile, p("/data/new", "missingOK", "true"), nil, nil); rec.Code != http.StatusNoContent {
		t.Errorf("remove of nothing: %d", rec.Code)
	}
	if rec := call(t, h, http.MethodPost, PathFile, p("/data/new"), nil, nil); rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("an unknown method: %d", rec.Code)
	}
	req := httptest.NewRequest(http.MethodGet, PathHealthz, nil)
	hrec := httptest.NewRecorder()
	h.ServeHTTP(hrec, req)
	if hrec.Code != http.StatusOK || hrec.Body.String() != "ok\n" {
		t.Errorf("healthz: %d %q", hrec.Code, hrec.Body.String())
	}
}
