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

package apiserver

import (
	"context"
	"fmt"
	"os"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	genericapiserver "k8s.io/apiserver/pkg/server"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/subresource/files"
	"github.com/novasphere/wukong/pkg/transfer/helperpod"
	"github.com/novasphere/wukong/pkg/transfer/owner"
)

// withPVC adds to dialers method pvc through helper pods of
// --helper-image, or of the server's own image when it runs in a pod (the
// reaper of idle helper pods then runs from the server's start).
func (c completedConfig) withPVC(s *genericapiserver.GenericAPIServer, cl *clients, dialers files.ByMethod) files.ByMethod {
	m := &helperpod.Manager{
		Image: c.ExtraConfig.HelperImage, IdleTimeout: c.ExtraConfig.HelperIdleTimeout, ReadyTimeout: c.ExtraConfig.HelperReadyTimeout,
		Pods: cl.kube.CoreV1(), Secrets: cl.kube.CoreV1(), Claims: cl.kube.CoreV1(), VMIs: cl.kubevirt.KubevirtV1(),
		Owner: &owner.Checker{VMs: cl.kubevirt.KubevirtV1(), DataVolumes: cl.cdi.CdiV1beta1(), Claims: cl.kube.CoreV1()},
	}
	if m.Image == "" {
		// In a cluster, this server's own image, read from its pod (POD_NAME
		// and POD_NAMESPACE from the downward API): an overlay that changes
		// the image changes the helpers' too.
		name, ns := os.Getenv("POD_NAME"), os.Getenv("POD_NAMESPACE")
		if name == "" || ns == "" {
			return dialers
		}
		m.ResolveImage = func(ctx context.Context) (string, error) {
			p, err := cl.kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return "", err
			}
			for _, c := range p.Spec.Containers {
				if c.Name == "wukong-apiserver" {
					return c.Image, nil
				}
			}
			return "", fmt.Errorf("the pod %s/%s has no container wukong-apiserver", ns, name)
		}
	}
	s.AddPostStartHookOrDie("wukong-helper-pod-reaper", func(hook genericapiserver.PostStartHookContext) error {
		go m.Run(hook)
		return nil
	})
	pvc := &files.PVCDialer{Helpers: m}
	if ssh, ok := dialers[vm.FileTransferMethodSSH].(*files.SSHDialer); ok {
		pvc.Sweeper = ssh.Sweeper // one sweeper, one record of when each Wukong was swept
	}
	dialers[vm.FileTransferMethodPVC] = pvc
	return dialers
}
