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

package version

import (
	"runtime"
	"strings"
	"testing"
)

func TestLinkTimeValuesWin(t *testing.T) {
	defer func(v, c, d string) { version, commit, buildDate = v, c, d }(version, commit, buildDate)
	version, commit, buildDate = "v1.2.3", "abc123", "2026-12-01T00:00:00Z"
	i := Get()
	if i.Version != "v1.2.3" || i.Commit != "abc123" || i.BuildDate != "2026-12-01T00:00:00Z" || i.GoVersion != runtime.Version() {
		t.Fatalf("Get() = %+v", i)
	}
	for _, want := range []string{"v1.2.3", "abc123", "2026-12-01T00:00:00Z", runtime.Version(), runtime.GOOS + "/" + runtime.GOARCH} {
		if !strings.Contains(i.String(), want) {
			t.Errorf("%q lacks %q", i.String(), want)
		}
	}
}

func TestDefaultsNameADevBuild(t *testing.T) {
	defer func(v, c, d string) { version, commit, buildDate = v, c, d }(version, commit, buildDate)
	version, commit, buildDate = "", "", ""
	i := Get()
	if i.Version != "v0.0.0-dev" || i.Commit == "" || i.BuildDate == "" {
		t.Fatalf("Get() = %+v", i)
	}
}
