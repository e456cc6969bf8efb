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

package push

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"

	"github.com/novasphere/wukong/pkg/apis/vm"
)

// put sends body to rawURL in one PUT with its Content-Length, so that the
// server can tell a whole body from a cut one.
func put(ctx context.Context, client *http.Client, rawURL string, creds Credentials, body Body) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, rawURL, io.NopCloser(body))
	if err != nil {
		return Permanent(err)
	}
	req.ContentLength = body.Size
	req.Header.Set("Content-Type", "application/octet-stream")
	switch {
	case creds.Token != "":
		req.Header.Set("Authorization", "Bearer "+creds.Token)
	case creds.Username != "" || creds.Password != "":
		req.SetBasicAuth(creds.Username, creds.Password)
	}
	// The URL may carry a pre-signed query or a login: errors name it
	// redacted.
	shown := vm.RedactURL(rawURL)
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			ue.URL = shown
		}
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 == 3 {
		// Not followed (a 307 or 308 of a body that cannot be sent again)
		// and not a success either.
		return Permanent(&RedirectError{Code: resp.StatusCode, Location: vm.RedactURL(resp.Header.Get("Location"))})
	}
	if resp.StatusCode/100 != 2 {
		return &StatusError{Code: resp.StatusCode, Status: resp.Status, URL: shown}
	}
	return nil
}
