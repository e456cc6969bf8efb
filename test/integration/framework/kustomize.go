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

package framework

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Overlay is a kustomization over a repository directory, as a platform
// team writes one: the base, components, and a namespace override.
type Overlay struct {
	// Base is a directory of the repository, e.g. "artifacts/deploy".
	Base string
	// Components are repository directories used as kustomize Components.
	Components []string
	// Namespace, when set, overrides the base's namespace.
	Namespace string
	// Extra is appended to the kustomization as it is (images:, patches:...).
	Extra string
}

// Kustomize renders o with `kubectl kustomize`, the kustomize built into the
// control plane's kubectl (what `kubectl apply -k` uses), and returns the
// multi-document YAML.
func (cp *ControlPlane) Kustomize(ctx context.Context, o Overlay) ([]byte, error) {
	dir, err := os.MkdirTemp("", "wukong-overlay-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	// kustomize takes no absolute path for a base or a component.
	rel := func(p string) (string, error) { return filepath.Rel(dir, filepath.Join(cp.root, p)) }
	var k strings.Builder
	k.WriteString("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n")
	base, err := rel(o.Base)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(&k, "resources:\n- %s\n", base)
	if len(o.Components) > 0 {
		k.WriteString("components:\n")
		for _, c := range o.Components {
			r, err := rel(c)
			if err != nil {
				return nil, err
			}
			fmt.Fprintf(&k, "- %s\n", r)
		}
	}
	if o.Namespace != "" {
		fmt.Fprintf(&k, "namespace: %s\n", o.Namespace)
	}
	k.WriteString(o.Extra)
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k.String()), 0o644); err != nil {
		return nil, err
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, cp.Binaries.Kubectl, "kustomize", dir)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("kubectl kustomize %s: %w: %s", o.Base, err, stderr.String())
	}
	return stdout.Bytes(), nil
}
