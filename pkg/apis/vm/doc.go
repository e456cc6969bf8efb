// +k8s:deepcopy-gen=package
// +groupName=vm.novasphere.dev

// Package vm holds the internal (hub) types of the vm.novasphere.dev API group.
// They mirror v1alpha1 field for field; conversions are generated.
package vm
