//go:build tools

package registry

import _ "github.com/distribution/distribution/v3/cmd/registry"
