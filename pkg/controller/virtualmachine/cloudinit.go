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

package virtualmachine

import (
	"context"
	"encoding/base64"
	"fmt"
	"unicode"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
)

// InlineUserDataLimit is the most user data KubeVirt takes inline in a
// cloudInitNoCloud volume (cloudInitUserMaxLen in virt-api's
// vmi-create-admitter.go); more must come from userDataSecretRef.
const InlineUserDataLimit = 2048

// UserDataKey is the key of the user-data Secret KubeVirt reads first
// (pkg/cloud-init/cloud-init.go: "userdata", then "userData").
const UserDataKey = "userdata"

// UserDataSecretName is the Secret that holds w's cloud-init user data when
// it is not inline in the VirtualMachine.
func UserDataSecretName(wukong string) string { return wukong + "-cloudinit" }

// CloudInitData is what a Wukong's cloud-init holds that the controller
// reads from the cluster.
type CloudInitData struct {
	// SSHPublicKey is authorised for the file-transfer user.
	SSHPublicKey string
	// Files are the bytes of spec.cloudInit.files taken from a ConfigMap
	// or Secret, by path. nil: the files were not read, and none is
	// written (Render, which only compares disks).
	Files map[string][]byte
	// Agent, when set, installs and starts wukong-agent (method http).
	Agent *AgentInstall
}

// writeFile is one entry of cloud-init's write_files.
type writeFile struct {
	Path        string `json:"path"`
	Content     string `json:"content"`
	Encoding    string `json:"encoding,omitempty"`
	Permissions string `json:"permissions,omitempty"`
	Owner       string `json:"owner,omitempty"`
	// Defer writes the file in cloud-init's final stage, after the users
	// it may be owned by are created (cloud-init 21.4 and later).
	Defer bool `json:"defer,omitempty"`
}

// cloudInitSource is the cloud-init volume of w's VM, nil for none, and
// the Secret that holds its user data when the volume references one: when
// any file comes from a Secret (whose bytes never go into the VM), or when
// the user data is larger than KubeVirt takes inline.
func cloudInitSource(w *v1alpha1.Wukong, ci CloudInitData) (*kubevirtv1.CloudInitNoCloudSource, *corev1.Secret, error) {
	userData := cloudInit(w, ci.SSHPublicKey)
	// The agent's token and key: never inline.
	fromSecret := ci.Agent != nil
	var files []writeFile
	if c := w.Spec.CloudInit; c != nil && len(c.Files) > 0 && ci.Files != nil {
		for i, f := range c.Files {
			data := []byte(f.Content)
			if src := f.ContentFrom; src != nil {
				var ok bool
				if data, ok = ci.Files[f.Path]; !ok {
					return nil, nil, fmt.Errorf("spec.cloudInit.files[%d] (%s): its content was not read", i, f.Path)
				}
				fromSecret = fromSecret || src.SecretKeyRef != nil
			}
			wf := writeFile{Path: f.Path, Permissions: f.Permissions, Owner: f.Owner, Defer: f.Owner != ""}
			if isText(data) {
				wf.Content = string(data)
			} else {
				wf.Content, wf.Encoding = base64.StdEncoding.EncodeToString(data), "b64"
			}
			files = append(files, wf)
		}
	}
	agentFiles, runcmd, err := agentCloudConfig(w, ci.Agent)
	if err != nil {
		return nil, nil, err
	}
	if files = append(files, agentFiles...); len(files) > 0 {
		b, err := yaml.Marshal(cloudConfig{WriteFiles: files, RunCmd: runcmd})
		if err != nil {
			return nil, nil, err
		}
		if userData == "" {
			userData = "#cloud-config\n"
		}
		userData += string(b)
	}
	if userData == "" {
		return nil, nil, nil
	}
	if !fromSecret && len(userData) <= InlineUserDataLimit {
		return &kubevirtv1.CloudInitNoCloudSource{UserData: userData}, nil, nil
	}
	if len(userData) > corev1.MaxSecretSize {
		return nil, nil, fmt.Errorf("the cloud-init user data is %d bytes, more than a Secret holds (%d); write fewer or smaller spec.cloudInit.files", len(userData), corev1.MaxSecretSize)
	}
	name := UserDataSecretName(w.Name)
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: w.Namespace, Labels: map[string]string{v1alpha1.LabelWukong: w.Name},
			OwnerReferences: []metav1.OwnerReference{OwnerReference(w)}},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{UserDataKey: []byte(userData)},
	}
	return &kubevirtv1.CloudInitNoCloudSource{UserDataSecretRef: &corev1.LocalObjectReference{Name: name}}, secret, nil
}

// isText says whether b can go into the YAML as it is: UTF-8 without
// control characters other than tab, newline and carriage return.
func isText(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, r := range string(b) {
		if unicode.IsControl(r) && r != '\t' && r != '\n' && r != '\r' {
			return false
		}
	}
	return true
}

// readFiles reads the bytes of w's cloud-init files taken from ConfigMaps
// and Secrets, with the server's identity (the author's right to get each
// was checked at admission). Errors name the object and key, never bytes.
func (c *Controller) readFiles(ctx context.Context, w *v1alpha1.Wukong) (map[string][]byte, error) {
	out := map[string][]byte{}
	if w.Spec.CloudInit == nil {
		return out, nil
	}
	for i, f := range w.Spec.CloudInit.Files {
		src := f.ContentFrom
		if src == nil {
			continue
		}
		var (
			data []byte
			ok   bool
			what string
		)
		switch {
		case src.SecretKeyRef != nil:
			r := src.SecretKeyRef
			what = fmt.Sprintf("key %s of the Secret %s", r.Key, r.Name)
			s, err := c.secrets.Secrets(w.Namespace).Get(ctx, r.Name, metav1.GetOptions{})
			if err != nil {
				return nil, fmt.Errorf("spec.cloudInit.files[%d]: reading the Secret %s: %w", i, r.Name, err)
			}
			data, ok = s.Data[r.Key]
		case src.ConfigMapKeyRef != nil:
			r := src.ConfigMapKeyRef
			what = fmt.Sprintf("key %s of the ConfigMap %s", r.Key, r.Name)
			cm, err := c.refs.ConfigMaps.ConfigMaps(w.Namespace).Get(ctx, r.Name, metav1.GetOptions{})
			if err != nil {
				return nil, fmt.Errorf("spec.cloudInit.files[%d]: reading the ConfigMap %s: %w", i, r.Name, err)
			}
			var text string
			if text, ok = cm.Data[r.Key]; ok {
				data = []byte(text)
			} else {
				data, ok = cm.BinaryData[r.Key]
			}
		}
		if !ok {
			return nil, fmt.Errorf("spec.cloudInit.files[%d]: there is no %s", i, what)
		}
		out[f.Path] = data
	}
	return out, nil
}

// applyUserDataSecret creates or updates the Secret that holds w's user
// data, or deletes the one w owns when the VM no longer references one
// (it may hold a Secret's bytes no longer asked for). A Secret of that
// name this Wukong does not control is left alone, and is an error.
func (c *Controller) applyUserDataSecret(ctx context.Context, w *v1alpha1.Wukong, desired *corev1.Secret) error {
	secrets := c.secrets.Secrets(w.Namespace)
	name := UserDataSecretName(w.Name)
	existing, err := secrets.Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		if desired == nil {
			return nil
		}
		_, err = secrets.Create(ctx, desired, metav1.CreateOptions{})
		return err
	case err != nil:
		return err
	}
	if !ownsSecret(w, existing) {
		if desired == nil {
			return nil
		}
		return fmt.Errorf("a Secret %s/%s exists that this Wukong does not control; it would hold the cloud-init user data: rename or delete it", w.Namespace, name)
	}
	if desired == nil {
		err := secrets.Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &existing.UID}})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	}
	if equality.Semantic.DeepEqual(existing.Data, desired.Data) {
		return nil
	}
	updated := existing.DeepCopy()
	updated.Data = desired.Data
	_, err = secrets.Update(ctx, updated, metav1.UpdateOptions{})
	return err
}

// ownsSecret says whether w is s's controller.
func ownsSecret(w *v1alpha1.Wukong, s *corev1.Secret) bool {
	ref := metav1.GetControllerOfNoCopy(s)
	return ref != nil && ref.Kind == "Wukong" && ref.UID == w.UID && s.Labels[v1alpha1.LabelWukong] == w.Name
}
