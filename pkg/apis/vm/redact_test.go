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

package vm

import (
	"strings"
	"testing"
)

// secrets are the values hidden in the URLs below; none may survive.
var secrets = []string{"s3cr3t", "AKIAEXAMPLE", "sigvalue", "credvalue", "tokvalue", "fragtoken", "bareval", "p/ss"}

func TestRedactURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"https://host.example/disk.img", "https://host.example/disk.img"},
		{"https://importer:s3cr3t@host.example/disk.img", "https://host.example/disk.img"},
		{"https://AKIAEXAMPLE@host.example/disk.img", "https://host.example/disk.img"},
		{"https://:s3cr3t@host.example:8443/x", "https://host.example:8443/x"},
		{"https://bucket.s3.amazonaws.com/disk.img?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=credvalue&X-Amz-Signature=sigvalue",
			"https://bucket.s3.amazonaws.com/disk.img?X-Amz-Algorithm=REDACTED&X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED"},
		{"https://h.example/x?token=tokvalue#fragtoken", "https://h.example/x?token=REDACTED"},
		{"https://h.example/x?bareval&sig=sigvalue", "https://h.example/x?REDACTED&sig=REDACTED"},
		{"https://h.example/x?a=1;sig=sigvalue", "https://h.example/x?a=REDACTED"},
		{"http://u:s3cr3t@[fe80::1%25eth0]:80/x?sig=sigvalue", "http://[fe80::1%25eth0]:80/x?sig=REDACTED"},
		{"s3://AKIAEXAMPLE:s3cr3t@bucket/key", "s3://bucket/key"},
		{"docker://registry.example/vms/vm1@sha256:abc", "docker://registry.example/vms/vm1@sha256:abc"},
		// Unparseable: an unescaped "/" in the password, a bad port.
		{"https://user:p/ss@host.example/x?sig=sigvalue", "https://host.example/x"},
		{"https://u:s3cr3t@host.example:port/x", "https://host.example:port/x"},
		{"AKIAEXAMPLE:s3cr3t@host.example/x", "host.example/x"},
		// Image references, as validation echoes them, stay as they are.
		{"quay.io/containerdisks/ubuntu:22.04", "quay.io/containerdisks/ubuntu:22.04"},
		{"registry.example.com:5000/vms/vm1:tag", "registry.example.com:5000/vms/vm1:tag"},
		{"", ""},
	} {
		got := RedactURL(tc.in)
		if got != tc.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
		for _, s := range secrets {
			if strings.Contains(got, s) {
				t.Errorf("RedactURL(%q) = %q still holds %q", tc.in, got, s)
			}
		}
	}
}

func TestRedactURLs(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"no URL here", "no URL here"},
		{`Unable to connect to http data source: Get "https://importer:s3cr3t@host.example/disk.img?X-Amz-Signature=sigvalue": EOF`,
			`Unable to connect to http data source: Get "https://host.example/disk.img?X-Amz-Signature=REDACTED": EOF`},
		{"from s3://AKIAEXAMPLE:s3cr3t@b/k and https://h/x?token=tokvalue, then",
			"from s3://b/k and https://h/x?token=REDACTED then"},
		{"http raw https://host.example/upload", "http raw https://host.example/upload"},
		{"registry oci registry.example/vms/vm1:tag", "registry oci registry.example/vms/vm1:tag"},
	} {
		got := RedactURLs(tc.in)
		if got != tc.want {
			t.Errorf("RedactURLs(%q) = %q, want %q", tc.in, got, tc.want)
		}
		for _, s := range secrets {
			if strings.Contains(got, s) {
				t.Errorf("RedactURLs(%q) = %q still holds %q", tc.in, got, s)
			}
		}
	}
}
