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
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// ContainerMemoryLimitEnv is how the shipped Deployment gives wukong-apiserver
// its container's memory limit (a resourceFieldRef to limits.memory).
const ContainerMemoryLimitEnv = "WUKONG_CONTAINER_MEMORY_LIMIT"

// ShippedMemoryLimit is the memory limit of the wukong-apiserver container in
// the shipped Deployment (artifacts/deploy/40-apiserver.yaml), in bytes.
func ShippedMemoryLimit() (int64, error) {
	root, err := RepoRoot()
	if err != nil {
		return 0, err
	}
	const manifest = "artifacts/deploy/40-apiserver.yaml"
	raw, err := os.ReadFile(filepath.Join(root, manifest))
	if err != nil {
		return 0, err
	}
	for _, doc := range bytes.Split(raw, []byte("\n---")) {
		var d appsv1.Deployment
		if yaml.Unmarshal(doc, &d) != nil || d.Kind != "Deployment" {
			continue
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			if q, ok := c.Resources.Limits[corev1.ResourceMemory]; ok && c.Name == "wukong-apiserver" {
				return q.Value(), nil
			}
		}
	}
	return 0, fmt.Errorf("no memory limit for wukong-apiserver in %s", manifest)
}

// shippedEnv is env with what the shipped Deployment gives wukong-apiserver
// added where env does not say otherwise, so that every test runs the server
// with the memory setup it ships with (its Go memory limit and GC target,
// docs/deploying.md "Memory").
func shippedEnv(env []string) ([]string, error) {
	for _, kv := range env {
		if strings.HasPrefix(kv, ContainerMemoryLimitEnv+"=") {
			return env, nil
		}
	}
	limit, err := ShippedMemoryLimit()
	if err != nil {
		return nil, err
	}
	return append(append([]string(nil), env...), ContainerMemoryLimitEnv+"="+strconv.FormatInt(limit, 10)), nil
}
