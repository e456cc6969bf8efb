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

package validation

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/novasphere/wukong/pkg/apis/vm"
)

func TestValidateCloudInitFiles(t *testing.T) {
	secret := &vm.CloudInitFileSource{SecretKeyRef: &vm.KeyReference{Name: "app-secrets", Key: "token"}}
	cm := &vm.CloudInitFileSource{ConfigMapKeyRef: &vm.KeyReference{Name: "app-config", Key: "app.yaml"}}
	many := make([]vm.CloudInitFile, MaxCloudInitFiles+1)
	for i := range many {
		many[i] = vm.CloudInitFile{Path: "/etc/f" + strings.Repeat("x", i)}
	}
	for _, tc := range []struct {
		name  string
		files []vm.CloudInitFile
		field string // "" when valid
		msg   string
	}{
		{"inline text", []vm.CloudInitFile{{Path: "/etc/app/config.yaml", Content: "a: 1\n", Permissions: "0644", Owner: "app:app"}}, "", ""},
		{"from a Secret and a ConfigMap", []vm.CloudInitFile{{Path: "/etc/a", ContentFrom: secret, Permissions: "600", Owner: "root"}, {Path: "/etc/b", ContentFrom: cm}}, "", ""},
		{"empty file", []vm.CloudInitFile{{Path: "/etc/empty"}}, "", ""},
		{"setuid bits", []vm.CloudInitFile{{Path: "/usr/local/bin/x", Content: "#!/bin/sh\n", Permissions: "4755"}}, "", ""},
		{"relative path", []vm.CloudInitFile{{Path: "etc/a", Content: "x"}}, "spec.cloudInit.files[0].path", "absolute"},
		{"unclean path", []vm.CloudInitFile{{Path: "/etc/../a", Content: "x"}}, "spec.cloudInit.files[0].path", "clean"},
		{"root", []vm.CloudInitFile{{Path: "/", Content: "x"}}, "spec.cloudInit.files[0].path", "not /"},
		{"no path", []vm.CloudInitFile{{Content: "x"}}, "spec.cloudInit.files[0].path", "absolute path"},
		{"duplicate", []vm.CloudInitFile{{Path: "/etc/a", Content: "x"}, {Path: "/etc/a", Content: "y"}}, "spec.cloudInit.files[1].path", "Duplicate"},
		{"both contents", []vm.CloudInitFile{{Path: "/etc/a", Content: "x", ContentFrom: secret}}, "spec.cloudInit.files[0]", "not both"},
		{"both refs", []vm.CloudInitFile{{Path: "/etc/a", ContentFrom: &vm.CloudInitFileSource{SecretKeyRef: secret.SecretKeyRef, ConfigMapKeyRef: cm.ConfigMapKeyRef}}},
			"spec.cloudInit.files[0].contentFrom", "exactly one"},
		{"no ref", []vm.CloudInitFile{{Path: "/etc/a", ContentFrom: &vm.CloudInitFileSource{}}}, "spec.cloudInit.files[0].contentFrom", "exactly one"},
		{"no key", []vm.CloudInitFile{{Path: "/etc/a", ContentFrom: &vm.CloudInitFileSource{SecretKeyRef: &vm.KeyReference{Name: "s"}}}},
			"spec.cloudInit.files[0].contentFrom.secretKeyRef.key", "Required"},
		{"bad key", []vm.CloudInitFile{{Path: "/etc/a", ContentFrom: &vm.CloudInitFileSource{ConfigMapKeyRef: &vm.KeyReference{Name: "c", Key: "a/b"}}}},
			"spec.cloudInit.files[0].contentFrom.configMapKeyRef.key", "valid config key"},
		{"bad name", []vm.CloudInitFile{{Path: "/etc/a", ContentFrom: &vm.CloudInitFileSource{SecretKeyRef: &vm.KeyReference{Name: "Not_A_Name", Key: "k"}}}},
			"spec.cloudInit.files[0].contentFrom.secretKeyRef.name", "RFC 1123"},
		{"permissions not octal", []vm.CloudInitFile{{Path: "/etc/a", Permissions: "0844"}}, "spec.cloudInit.files[0].permissions", "0000 to 7777"},
		{"permissions too large", []vm.CloudInitFile{{Path: "/etc/a", Permissions: "17777"}}, "spec.cloudInit.files[0].permissions", "0000 to 7777"},
		{"permissions symbolic", []vm.CloudInitFile{{Path: "/etc/a", Permissions: "rw-r--r--"}}, "spec.cloudInit.files[0].permissions", "0000 to 7777"},
		{"owner with YAML", []vm.CloudInitFile{{Path: "/etc/a", Owner: "root\n- x"}}, "spec.cloudInit.files[0].owner", "user:group"},
		{"owner with empty group", []vm.CloudInitFile{{Path: "/etc/a", Owner: "app:"}}, "spec.cloudInit.files[0].owner", "user:group"},
		{"too many", many, "spec.cloudInit.files", "must have at most 64 items"},
		{"too much inline", []vm.CloudInitFile{{Path: "/etc/a", Content: strings.Repeat("x", 200<<10)}, {Path: "/etc/b", Content: strings.Repeat("x", 57<<10)}},
			"spec.cloudInit.files", "at most 262144 (256 KiB)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := validWukong()
			w.Spec.CloudInit = &vm.CloudInitSpec{Files: tc.files}
			errs := ValidateWukong(w)
			if tc.field == "" {
				assert.Empty(t, errs)
				return
			}
			require.NotEmpty(t, errs)
			found := false
			for _, e := range errs {
				if e.Field == tc.field && strings.Contains(e.Error(), tc.msg) {
					found = true
				}
			}
			assert.True(t, found, "want %s: %q, got %v", tc.field, tc.msg, errs)
		})
	}
}
