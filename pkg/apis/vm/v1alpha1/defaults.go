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

// SetDefaults_HTTPTransferConfig defaults the port to 8080.
func SetDefaults_HTTPTransferConfig(obj *HTTPTransferConfig) {
	if obj.Port == nil {
		p := DefaultHTTPPort
		obj.Port = &p
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
