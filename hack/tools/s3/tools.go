//go:build tools

package s3

import _ "github.com/versity/versitygw/cmd/versitygw"
