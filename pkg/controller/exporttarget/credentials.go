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

package exporttarget

import (
	"context"
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	k8schain "github.com/google/go-containerregistry/pkg/authn/kubernetes"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/transfer/push"
)

// credentials reads what target needs from the Secrets and ConfigMap it
// names in namespace. A missing Secret or key is a failure a retry will not
// cure until someone creates it; the informer does not watch Secrets.
func (c *Controller) credentials(ctx context.Context, namespace string, t *v1alpha1.ExportTargetSpec) (push.Credentials, error) {
	var creds push.Credentials
	secretName := ""
	switch t.Type {
	case v1alpha1.ExportTargetHTTP:
		if t.Credentials != nil {
			secretName = t.Credentials.SecretName
		}
	case v1alpha1.ExportTargetS3:
		if t.S3Config != nil && t.S3Config.Credentials != nil {
			secretName = t.S3Config.Credentials.SecretName
		}
	case v1alpha1.ExportTargetRegistry:
		if rc := t.RegistryConfig; rc != nil {
			secretName = rc.SecretName
			if rc.CertConfigMap != "" {
				ca, err := c.caBundle(ctx, namespace, rc.CertConfigMap)
				if err != nil {
					return creds, err
				}
				creds.CA = ca
			}
		}
	}
	if secretName == "" {
		return creds, nil
	}
	s, err := c.Core.Secrets(namespace).Get(ctx, secretName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return creds, push.Permanent(fmt.Errorf("the credentials Secret %s/%s does not exist", namespace, secretName))
	}
	if err != nil {
		return creds, fmt.Errorf("reading the credentials Secret %s/%s: %w", namespace, secretName, err)
	}
	if s.Type == corev1.SecretTypeDockerConfigJson || s.Type == corev1.SecretTypeDockercfg {
		kc, err := k8schain.NewFromPullSecrets(ctx, []corev1.Secret{*s})
		if err != nil {
			return creds, push.Permanent(fmt.Errorf("the registry Secret %s/%s: %w", namespace, secretName, err))
		}
		creds.Keychain = kc
		return creds, nil
	}
	creds.Username, creds.Password, creds.Token = string(s.Data[vm.SecretKeyAccessKeyID]), string(s.Data[vm.SecretKeySecretKey]), string(s.Data[vm.SecretKeyToken])
	if creds.Token == "" && (creds.Username == "" || creds.Password == "") {
		return creds, push.Permanent(fmt.Errorf("the credentials Secret %s/%s needs %s and %s (or %s for an http target)",
			namespace, secretName, vm.SecretKeyAccessKeyID, vm.SecretKeySecretKey, vm.SecretKeyToken))
	}
	return creds, nil
}

// WaitingError: what a push needs (a Secret or ConfigMap its target
// names) does not exist yet. Nothing is exported or recorded until it does;
// the VM controller's ReferencesResolved condition names it too.
type WaitingError struct{ What string }

func (e *WaitingError) Error() string { return "waiting for " + e.What }

// missing names the first Secret or ConfigMap target names that does not
// exist in namespace, if any; only whether it exists is read here.
func (c *Controller) missing(ctx context.Context, namespace string, disk int, t *v1alpha1.ExportTargetSpec) (string, error) {
	p := fmt.Sprintf("spec.disks[%d].exportTarget", disk)
	type ref struct{ kind, name, field string }
	var refs []ref
	if t.Credentials != nil {
		refs = append(refs, ref{"Secret", t.Credentials.SecretName, p + ".credentials.secretName"})
	}
	if s := t.S3Config; s != nil && s.Credentials != nil {
		refs = append(refs, ref{"Secret", s.Credentials.SecretName, p + ".s3Config.credentials.secretName"})
	}
	if r := t.RegistryConfig; r != nil {
		refs = append(refs, ref{"Secret", r.SecretName, p + ".registryConfig.secretName"}, ref{"ConfigMap", r.CertConfigMap, p + ".registryConfig.certConfigMap"})
	}
	for _, r := range refs {
		if r.name == "" {
			continue
		}
		var err error
		if r.kind == "Secret" {
			_, err = c.Core.Secrets(namespace).Get(ctx, r.name, metav1.GetOptions{})
		} else {
			_, err = c.Core.ConfigMaps(namespace).Get(ctx, r.name, metav1.GetOptions{})
		}
		if apierrors.IsNotFound(err) {
			return fmt.Sprintf("%s %s named by %s", r.kind, r.name, r.field), nil
		}
		if err != nil {
			return "", fmt.Errorf("reading the %s %s/%s: %w", r.kind, namespace, r.name, err)
		}
	}
	return "", nil
}

// caBundle is every value of the ConfigMap name, the way CDI reads its
// certConfigMap: each key a PEM file.
func (c *Controller) caBundle(ctx context.Context, namespace, name string) ([]byte, error) {
	cm, err := c.Core.ConfigMaps(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, push.Permanent(fmt.Errorf("the certConfigMap %s/%s does not exist", namespace, name))
	}
	if err != nil {
		return nil, fmt.Errorf("reading the certConfigMap %s/%s: %w", namespace, name, err)
	}
	keys := make([]string, 0, len(cm.Data))
	for k := range cm.Data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []byte
	for _, k := range keys {
		out = append(out, cm.Data[k]...)
		out = append(out, '\n')
	}
	return out, nil
}
