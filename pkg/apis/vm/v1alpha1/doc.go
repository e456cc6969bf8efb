// +k8s:openapi-gen=true
// +k8s:deepcopy-gen=package
// +k8s:conversion-gen=github.com/novasphere/wukong/pkg/apis/vm
// +k8s:defaulter-gen=TypeMeta
// +groupName=vm.novasphere.dev
// +k8s:openapi-model-package=dev.novasphere.vm.v1alpha1

// Package v1alpha1 is the v1alpha1 version of the vm.novasphere.dev API: the
// versioned wire types, their defaults and their registration.
package v1alpha1
