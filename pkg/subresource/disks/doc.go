// Package disks serves the streaming subresources of disks: export (the
// disk's volume, read through a KubeVirt VirtualMachineExport) and upload
// (an image sent through CDI's upload proxy). It only handles HTTP:
// pkg/transfer/export and pkg/transfer/cdi reach KubeVirt and CDI, and a
// Recorder keeps the WukongFileTransfer records.
package disks
