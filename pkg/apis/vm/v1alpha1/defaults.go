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

package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime"
)

// Default ports of the guest's file endpoints.
const (
	DefaultSSHPort  int32 = 22
	DefaultHTTPPort int32 = 8080
)

func addDefaultingFuncs(scheme *runtime.Scheme) error {
	return RegisterDefaults(scheme)
}

// SetDefaults_FileTransferSpec defaults the method to ssh.
func SetDefaults_FileTransferSpec(obj *FileTransferSpec) {
	if obj.Method == "" {
		obj.Method = FileTransferMethodSSH
	}
}

// SetDefaults_SSHTransferConfig defaults the port to 22.
func SetDefaults_SSHTransferConfig(obj *SSHTransferConfig) {
	if obj.Port == nil {
		p := DefaultSSHPort
		obj.Port = &p
	}
}

// SetDefaults_HTTPTransferConfig defaults the port to 8080 and the roots to
// "/": the seed's example names none, and its transfers write to /etc and
// /data, as they would over ssh.
func SetDefaults_HTTPTransferConfig(obj *HTTPTransferConfig) {
	if obj.Port == nil {
		p := DefaultHTTPPort
		obj.Port = &p
	}
	if len(obj.Roots) == 0 {
		obj.Roots = []string{"/"}
	}
}

// SetDefaults_ServiceExposureSpec defaults the Service type to ClusterIP.
func SetDefaults_ServiceExposureSpec(obj *ServiceExposureSpec) {
	if obj.Type == "" {
		obj.Type = "ClusterIP"
	}
}

// SetDefaults_ExportTargetSpec defaults the format: a containerDisk image for
// registries, raw bytes for everything else.
func SetDefaults_ExportTargetSpec(obj *ExportTargetSpec) {
	if obj.Format != "" {
		return
	}
	if obj.Type == ExportTargetRegistry {
		obj.Format = ExportFormatOCI
	} else {
		obj.Format = ExportFormatRaw
	}
}

// SetDefaults_WukongSpec defaults the run strategy to Always, as every
// Wukong ran before the field existed.
func SetDefaults_WukongSpec(obj *WukongSpec) {
	if obj.RunStrategy == "" {
		obj.RunStrategy = RunStrategyAlways
	}
}
