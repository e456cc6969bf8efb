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

// Package egress tests, through kube-apiserver, that wukong-apiserver run
// with its default egress policy (as deployed: no --push-allowed-cidrs)
// refuses push targets on loopback, link-local and private addresses:
// literal ones when the Wukong is written (422), names when the push
// dials. Every target here listens on loopback; nothing is sent elsewhere.
package egress

import (
	"context"
	"os"
	"testing"

	"github.com/novasphere/wukong/test/integration/framework"
	"github.com/novasphere/wukong/test/integration/standin"
)

var cp *framework.ControlPlane

func TestMain(m *testing.M) {
	os.Exit(framework.RunTestMain(m, framework.Options{
		Controller:         true,
		PushLoopbackDenied: true,
		BeforeWukongAPIServer: func(ctx context.Context, cp *framework.ControlPlane) error {
			if err := standin.InstallKubeVirtCRDs(ctx, cp); err != nil {
				return err
			}
			// CDI's importer: the disks' imports succeed, so pushes are due.
			_, err := standin.StartControllers(context.Background(), cp.Admin.Config)
			return err
		},
	}, &cp))
}
