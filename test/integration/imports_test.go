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

// Package integration holds checks over the whole module that need no
// control plane; the integration tests themselves are its subpackages.
package integration

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

const module = "github.com/novasphere/wukong"

// importRule forbids packages under any of from (import paths; a path
// covers its subpackages) to import anything under to, tests included,
// unless the importer is under one of except.
type importRule struct {
	from, to, except []string
	why              string
}

// importRules are the directions imports must not take.
var importRules = []importRule{{
	from:   []string{module},
	to:     []string{module + "/test"},
	except: []string{module + "/test"},
	why:    "test/ is test harness (control plane, guests, stand-ins): production packages and their unit tests never depend on it",
}}

// listedPackage is what `go list -json` says of a package that matters here.
type listedPackage struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
}

// TestImportDirections checks every package of the module, and its tests,
// against importRules.
func TestImportDirections(t *testing.T) {
	pkgs := listPackages(t)
	if len(pkgs) < 10 {
		t.Fatalf("go list found %d packages; expected the whole module", len(pkgs))
	}
	for _, r := range importRules {
		for _, p := range pkgs {
			if !underAny(p.ImportPath, r.from) || underAny(p.ImportPath, r.except) {
				continue
			}
			for _, imp := range concat(p.Imports, p.TestImports, p.XTestImports) {
				if underAny(imp, r.to) {
					t.Errorf("%s imports %s: %s", p.ImportPath, imp, r.why)
				}
			}
		}
	}
}

// listPackages runs `go list -json ./...` at the module root.
func listPackages(t *testing.T) []listedPackage {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	_, file, _, _ := runtime.Caller(0)
	cmd := exec.Command(goBin, "list", "-e", "-json=ImportPath,Imports,TestImports,XTestImports", "./...")
	cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var pkgs []listedPackage
	for dec := json.NewDecoder(bytes.NewReader(out)); ; {
		var p listedPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decoding go list's output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func underAny(path string, prefixes []string) bool {
	for _, p := range prefixes {
		if path == p || strings.HasPrefix(path, p+"/") {
			return true
		}
	}
	return false
}

func concat(lists ...[]string) []string {
	var all []string
	for _, l := range lists {
		all = append(all, l...)
	}
	return all
}
