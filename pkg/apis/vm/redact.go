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
	"net/url"
	"regexp"
	"strings"
)

// Redacted replaces each query value RedactURL takes out of a URL.
const Redacted = "REDACTED"

// RedactURL is a URL as it may be shown to users: in a record, a status, a
// table, an event or a log line. It is the one place that decides what of a
// URL is a secret, so every layer uses it (pkg/apis/vm is importable by all):
//
//   - user information (user:password@, or an access key as the user) is
//     dropped;
//   - every query value is replaced by REDACTED, keys kept: a pre-signed
//     URL's X-Amz-Signature, X-Amz-Credential, a token= or sig= are
//     secrets, and no list of harmless keys stays right for long; the keys
//     still show that the URL was pre-signed and how;
//   - a parameter without "=" (?s3cr3t) is a value, and becomes REDACTED;
//   - the fragment is dropped.
//
// A string that does not parse as a URL loses its query, fragment and
// whatever precedes an "@" before them. Secrets in a URL's path (a
// webhook's token as a path segment) cannot be told from a path; those
// belong in a Secret.
func RedactURL(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.Opaque != "" || (u.Host == "" && strings.Contains(rawURL, "@")) {
		return redactUnparsed(rawURL)
	}
	u.User = nil
	u.Fragment, u.RawFragment = "", ""
	if u.RawQuery != "" {
		u.RawQuery = redactQuery(u.RawQuery)
	}
	return u.String()
}

// urlInText finds URLs (scheme://...) in free text, up to a space, a quote
// or an angle bracket: what error messages put around a URL.
var urlInText = regexp.MustCompile("[A-Za-z][A-Za-z0-9+.-]*://[^\\s\"'<>`]+")

// RedactURLs applies RedactURL to every URL in text: a message that may
// quote one (an importer's error, a client library's url.Error).
func RedactURLs(text string) string {
	if !strings.Contains(text, "://") {
		return text
	}
	return urlInText.ReplaceAllStringFunc(text, RedactURL)
}

// redactQuery keeps each parameter's key and replaces its value.
func redactQuery(q string) string {
	parts := strings.Split(q, "&")
	for i, p := range parts {
		if p == "" {
			continue
		}
		k, _, ok := strings.Cut(p, "=")
		if !ok {
			parts[i] = Redacted
			continue
		}
		parts[i] = k + "=" + Redacted
	}
	return strings.Join(parts, "&")
}

// redactUnparsed is RedactURL's fallback for what url.Parse refuses or does
// not see a host in: keep the scheme and what follows the last "@" before a
// query or fragment, drop those.
func redactUnparsed(s string) string {
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		s = s[:i]
	}
	scheme, rest := "", s
	if i := strings.Index(s, "://"); i >= 0 {
		scheme, rest = s[:i+3], s[i+3:]
	}
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		rest = rest[i+1:]
	}
	return scheme + rest
}
