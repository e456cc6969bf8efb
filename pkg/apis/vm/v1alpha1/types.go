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
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// +genclient
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// Wukong is a virtual machine as declared: its size, its disks and how files
// reach it. The server realises it as a KubeVirt VirtualMachine with CDI
// DataVolumes and mirrors their state into status.
type Wukong struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   WukongSpec   `json:"spec,omitempty"`
	Status WukongStatus `json:"status,omitempty"`
}

// WukongSpec is the desired state of a Wukong.
type WukongSpec struct {
	// CPU is the number of virtual CPU cores.
	// +optional
	CPU int32 `json:"cpu,omitempty"`

	// Memory is the guest memory, as a quantity (e.g. 4Gi).
	// +optional
	Memory *resource.Quantity `json:"memory,omitempty"`

	// RunStrategy says whether the VM runs, with KubeVirt's values and
	// meanings, and is copied to its VirtualMachine's spec.runStrategy:
	// Always (the default: started, and restarted whenever it stops),
	// RerunOnFailure (restarted only after a failure), Manual (started and
	// stopped only through KubeVirt's start and stop subresources, as
	// virtctl does), Halted (stopped) or Once (run once, never restarted).
	// kubectl wukong start and stop set Always and Halted.
	// +optional
	RunStrategy string `json:"runStrategy,omitempty"`

	// Disks are the VM's disks, each backed by a PVC/DataVolume named <wukong>-<disk>.
	// +optional
	// +listType=map
	// +listMapKey=name
	Disks []DiskConfig `json:"disks,omitempty"`

	// FileTransfer configures copying files into and out of the running VM
	// through the wukongs/<name>/files subresource.
	// +optional
	FileTransfer *FileTransferSpec `json:"fileTransfer,omitempty"`

	// CloudInit declares what cloud-init does at the VM's first boot
	// besides authorising the file-transfer key: files to write.
	// +optional
	CloudInit *CloudInitSpec `json:"cloudInit,omitempty"`
}

// CloudInitSpec is what cloud-init does at the VM's first boot.
type CloudInitSpec struct {
	// Files are written through cloud-init's write_files at first boot,
	// in this order. At most 64 files; inline content at most 256 KiB in
	// all. User data over 2048 bytes (KubeVirt's inline limit), or with
	// any file from a Secret, is kept in the Secret <wukong>-cloudinit,
	// which the VirtualMachine references.
	// +optional
	// +listType=map
	// +listMapKey=path
	Files []CloudInitFile `json:"files,omitempty"`
}

// CloudInitFile is one file cloud-init writes. Exactly one of content and
// contentFrom; an empty content makes an empty file.
type CloudInitFile struct {
	// Path is the absolute, clean path of the file in the guest.
	Path string `json:"path"`

	// Content is the file's text.
	// +optional
	Content string `json:"content,omitempty"`

	// ContentFrom takes the file's bytes from a key of a ConfigMap or
	// Secret in the Wukong's namespace, which its author must be allowed
	// to get. Bytes that are not UTF-8 text are written base64-encoded.
	// +optional
	ContentFrom *CloudInitFileSource `json:"contentFrom,omitempty"`

	// Permissions are the file's mode as an octal string, such as 0644
	// (cloud-init's default when unset).
	// +optional
	Permissions string `json:"permissions,omitempty"`

	// Owner is "user" or "user:group" (root:root when unset). With an
	// owner the file is written at the end of first boot (write_files
	// defer), after cloud-init created its users.
	// +optional
	Owner string `json:"owner,omitempty"`
}

// CloudInitFileSource names where a file's bytes are: exactly one of a
// ConfigMap key and a Secret key.
type CloudInitFileSource struct {
	// ConfigMapKeyRef is a key of a ConfigMap (data or binaryData).
	// +optional
	ConfigMapKeyRef *KeyReference `json:"configMapKeyRef,omitempty"`

	// SecretKeyRef is a key of a Secret; its bytes never go into the
	// VirtualMachine, only into the <wukong>-cloudinit Secret.
	// +optional
	SecretKeyRef *KeyReference `json:"secretKeyRef,omitempty"`
}

// KeyReference is a key of an object in the Wukong's namespace.
type KeyReference struct {
	// Name of the object.
	Name string `json:"name"`
	// Key within it.
	Key string `json:"key"`
}

// DiskConfig is one disk of a Wukong.
type DiskConfig struct {
	// Name of the disk, unique within the Wukong; a DNS-1123 label.
	Name string `json:"name"`

	// Size of the disk, as a quantity (e.g. 20Gi).
	// +optional
	Size *resource.Quantity `json:"size,omitempty"`

	// Image is a container disk image to import, with a docker:// or registry:// scheme.
	// Mutually exclusive with importSource and dataSource.
	// +optional
	Image string `json:"image,omitempty"`

	// ImportSource defines where the disk's content is imported from.
	// +optional
	ImportSource *ImportSourceSpec `json:"importSource,omitempty"`

	// DataSource names a CDI DataSource (a golden image) to clone the disk
	// from. Mutually exclusive with image and importSource.
	// +optional
	DataSource *DataSourceReference `json:"dataSource,omitempty"`

	// ExportTarget defines where the disk is exported to.
	// +optional
	ExportTarget *ExportTargetSpec `json:"exportTarget,omitempty"`
}

// Import source types.
const (
	ImportSourceHTTP     = "http"
	ImportSourceHTTPS    = "https"
	ImportSourceS3       = "s3"
	ImportSourceRegistry = "registry"
	ImportSourcePVC      = "pvc"
	// ImportSourceUpload leaves the disk for an upload through
	// disks/<name>/upload (a CDI upload DataVolume).
	ImportSourceUpload = "upload"
)

// Content types of an upload disk, as CDI names them.
const (
	ContentTypeKubeVirt = "kubevirt"
	ContentTypeArchive  = "archive"
)

// ImportSourceSpec defines where a disk's content is imported from (a CDI DataVolume source).
type ImportSourceSpec struct {
	// Type of the source: http, https, s3, registry, pvc, or upload (the disk
	// waits for an upload through disks/<name>/upload).
	Type string `json:"type"`

	// URL of the source, for http, https (the image URL) and registry
	// (docker://host/repo:tag or oci-archive://).
	// +optional
	URL string `json:"url,omitempty"`

	// Checksum of the image for http/https sources, as "<algorithm>:<hex>"
	// (sha256, sha512, sha1 or md5), verified by the importer.
	// +optional
	Checksum string `json:"checksum,omitempty"`

	// Credentials for http/https basic authentication: a Secret with
	// accessKeyId (user) and secretKey (password).
	// +optional
	Credentials *SecretReference `json:"credentials,omitempty"`

	// CertConfigMap names a ConfigMap holding a CA bundle for https and registry sources.
	// +optional
	CertConfigMap string `json:"certConfigMap,omitempty"`

	// S3Config configures an s3 source.
	// +optional
	S3Config *S3Config `json:"s3Config,omitempty"`

	// RegistryConfig configures a registry source.
	// +optional
	RegistryConfig *RegistryConfig `json:"registryConfig,omitempty"`

	// PVCConfig configures a pvc (clone) source.
	// +optional
	PVCConfig *PVCConfig `json:"pvcConfig,omitempty"`

	// ContentType of an upload disk: kubevirt (a disk image, the default) or
	// archive (a tar of files unpacked into a filesystem volume).
	// +optional
	ContentType string `json:"contentType,omitempty"`
}

// Export target types.
const (
	ExportTargetRegistry = "registry"
	ExportTargetS3       = "s3"
	ExportTargetHTTP     = "http"
)

// Export formats.
const (
	ExportFormatRaw   = "raw"
	ExportFormatQCOW2 = "qcow2"
	ExportFormatOCI   = "oci"
)

// ExportTargetSpec defines where a disk is exported to.
type ExportTargetSpec struct {
	// Type of the target: registry, s3 or http.
	Type string `json:"type"`

	// URL of the target: an image reference for registry (registry.example.com/vms/ubuntu:tag),
	// an http(s) URL the disk is PUT to for http. Not used for s3, which takes s3Config.
	// +optional
	URL string `json:"url,omitempty"`

	// Format of the exported disk: raw, qcow2 or oci (a containerDisk image).
	// Defaults to oci for registry and raw otherwise.
	// +optional
	Format string `json:"format,omitempty"`

	// Credentials for an http target: a Secret with accessKeyId (user) and secretKey (password),
	// or token (a bearer token).
	// +optional
	Credentials *SecretReference `json:"credentials,omitempty"`

	// S3Config configures an s3 target.
	// +optional
	S3Config *S3Config `json:"s3Config,omitempty"`

	// RegistryConfig configures a registry target.
	// +optional
	RegistryConfig *RegistryConfig `json:"registryConfig,omitempty"`
}

// SecretReference names a Secret in the Wukong's namespace.
type SecretReference struct {
	// SecretName is the name of the Secret.
	SecretName string `json:"secretName"`
}

// S3Config locates an object in S3-compatible storage.
type S3Config struct {
	// Endpoint of the S3 service, with scheme (https://s3.example.com).
	Endpoint string `json:"endpoint"`

	// Region of the bucket, if the service needs one.
	// +optional
	Region string `json:"region,omitempty"`

	// Bucket holding the object.
	Bucket string `json:"bucket"`

	// Key of the object.
	Key string `json:"key"`

	// Credentials: a Secret with accessKeyId and secretKey.
	// +optional
	Credentials *SecretReference `json:"credentials,omitempty"`
}

// RegistryConfig configures access to an OCI registry.
type RegistryConfig struct {
	// SecretName names a Secret with the registry credentials
	// (accessKeyId and secretKey, or a kubernetes.io/dockerconfigjson Secret).
	// +optional
	SecretName string `json:"secretName,omitempty"`

	// CertConfigMap names a ConfigMap holding a CA bundle for the registry.
	// +optional
	CertConfigMap string `json:"certConfigMap,omitempty"`
}

// PVCConfig names a PersistentVolumeClaim to clone.
type PVCConfig struct {
	// Namespace of the PVC; defaults to the Wukong's namespace.
	// +optional
	Namespace string `json:"namespace,omitempty"`

	// Name of the PVC.
	Name string `json:"name"`
}

// DataSourceReference names a CDI DataSource (cdi.kubevirt.io/v1beta1).
type DataSourceReference struct {
	// Name of the DataSource.
	Name string `json:"name"`

	// Namespace of the DataSource; defaults to the Wukong's namespace.
	// +optional
	Namespace string `json:"namespace,omitempty"`
}

// File transfer methods.
const (
	FileTransferMethodSSH  = "ssh"
	FileTransferMethodHTTP = "http"
	FileTransferMethodPVC  = "pvc"
)

// FileTransferSpec configures how files reach the VM.
type FileTransferSpec struct {
	// Enabled turns the files subresource on for this Wukong.
	Enabled bool `json:"enabled"`

	// Method is how files travel: ssh (SFTP to the guest), http (the in-guest
	// wukong-agent) or pvc (the data volume of pvcConfig, through a helper
	// pod, also while the VM is stopped). Defaults to ssh.
	// +optional
	Method string `json:"method,omitempty"`

	// SSHConfig configures the ssh method.
	// +optional
	SSHConfig *SSHTransferConfig `json:"sshConfig,omitempty"`

	// HTTPConfig configures the http method.
	// +optional
	HTTPConfig *HTTPTransferConfig `json:"httpConfig,omitempty"`

	// PVCConfig declares the data volume of method pvc: a filesystem
	// DataVolume <wukong>-files shared with the guest (virtiofs) and mounted
	// at mountPath by cloud-init, which the files subresource reads and
	// writes through a short-lived helper pod, also while the VM is
	// stopped. Method pvc requires it.
	// +optional
	PVCConfig *FileTransferPVCConfig `json:"pvcConfig,omitempty"`

	// MaxFileSize caps the size of one file transferred to or from this VM;
	// the server's own limit applies when it is lower.
	// +optional
	MaxFileSize *resource.Quantity `json:"maxFileSize,omitempty"`
}

// SSHTransferConfig configures SFTP access to the guest.
type SSHTransferConfig struct {
	// User to log in as.
	User string `json:"user"`

	// KeySecret names a kubernetes.io/ssh-auth Secret with the private key
	// (ssh-privatekey) and, optionally, the guest's host keys (known_hosts).
	KeySecret string `json:"keySecret"`

	// Port of the guest's SSH server. Defaults to 22.
	// +optional
	Port *int32 `json:"port,omitempty"`
}

// HTTPTransferConfig configures the in-guest HTTP file agent.
type HTTPTransferConfig struct {
	// Enabled starts the agent in the guest.
	Enabled bool `json:"enabled"`

	// Port the agent listens on. Defaults to 8080.
	// +optional
	Port *int32 `json:"port,omitempty"`

	// Roots are the guest directories the agent serves: absolute, clean,
	// none inside another, at most 16. Paths outside them are refused
	// (403). Defaults to ["/"], the whole filesystem as the agent's user
	// (root) sees it, as with ssh; data directories confine it.
	// +optional
	// +listType=atomic
	Roots []string `json:"roots,omitempty"`

	// ServiceExposure exposes the agent through a Service.
	// +optional
	ServiceExposure *ServiceExposureSpec `json:"serviceExposure,omitempty"`
}

// FileTransferPVCConfig declares the data volume of method pvc.
type FileTransferPVCConfig struct {
	// Size of the volume, from 1Mi to 64Ti.
	Size resource.Quantity `json:"size"`

	// StorageClassName of the volume's PVC; the cluster's default class
	// when unset.
	// +optional
	StorageClassName *string `json:"storageClassName,omitempty"`

	// AccessModes of the volume: ReadWriteOnce (the default) or
	// ReadWriteMany. With ReadWriteOnce the files subresource refuses (409)
	// while the VM runs, as its virt-launcher pod holds the volume; with
	// ReadWriteMany it serves while the VM runs as well.
	// +optional
	AccessModes []string `json:"accessModes,omitempty"`

	// MountPath is where the guest mounts the volume, and the only path
	// the files subresource serves with method pvc. Defaults to /data.
	// +optional
	MountPath string `json:"mountPath,omitempty"`

	// VolumeMode of the volume: Filesystem, the only mode (a helper pod
	// reads files, not blocks). Defaults to Filesystem.
	// +optional
	VolumeMode string `json:"volumeMode,omitempty"`
}

// ServiceExposureSpec describes the Service that exposes the agent.
type ServiceExposureSpec struct {
	// Enabled creates the Service.
	Enabled bool `json:"enabled"`

	// Type of the Service: ClusterIP, NodePort or LoadBalancer. Defaults to ClusterIP.
	// +optional
	Type string `json:"type,omitempty"`
}

// Run strategies: KubeVirt's VirtualMachineRunStrategy values a Wukong takes.
const (
	RunStrategyAlways         = "Always"
	RunStrategyRerunOnFailure = "RerunOnFailure"
	RunStrategyManual         = "Manual"
	RunStrategyHalted         = "Halted"
	RunStrategyOnce           = "Once"
)

// Wukong phases.
const (
	WukongPhasePending      = "Pending"
	WukongPhaseProvisioning = "Provisioning"
	WukongPhaseStarting     = "Starting"
	WukongPhaseRunning      = "Running"
	WukongPhaseStopping     = "Stopping"
	WukongPhaseStopped      = "Stopped"
	WukongPhaseFailed       = "Failed"
)

// WukongStatus is the observed state of a Wukong, written by the server.
type WukongStatus struct {
	// Phase summarises the VM's state: Pending, Provisioning (disks being
	// imported), Starting, Running, Stopping, Stopped or Failed.
	// +optional
	Phase string `json:"phase,omitempty"`

	// ObservedGeneration is the generation the status was computed for.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions with reasons.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Address of the running VM (its VirtualMachineInstance's first interface IP).
	// +optional
	Address string `json:"address,omitempty"`

	// Volumes report each disk's import and export.
	// +optional
	// +listType=map
	// +listMapKey=name
	Volumes []VolumeStatus `json:"volumes,omitempty"`

	// FileTransfer reports what the server learnt about reaching the guest.
	// +optional
	FileTransfer *FileTransferStatus `json:"fileTransfer,omitempty"`
}

// FileTransferStatus holds the guest's SSH host key, pinned on first connection
// when the key Secret carries no known_hosts.
type FileTransferStatus struct {
	// HostKey is the pinned host key in authorized_keys format.
	// +optional
	HostKey string `json:"hostKey,omitempty"`

	// HostKeyFingerprint is its SHA256 fingerprint, as ssh-keygen prints it.
	// +optional
	HostKeyFingerprint string `json:"hostKeyFingerprint,omitempty"`
}

// VolumeStatus is the state of one disk.
type VolumeStatus struct {
	// Name of the disk.
	Name string `json:"name"`

	// ClaimName is the PVC/DataVolume backing the disk.
	// +optional
	ClaimName string `json:"claimName,omitempty"`

	// ImportStatus of the disk's content.
	// +optional
	ImportStatus *ImportStatus `json:"importStatus,omitempty"`

	// ExportStatus of the disk's last export.
	// +optional
	ExportStatus *ExportStatus `json:"exportStatus,omitempty"`

	// PushStatus of the disk's last push to its exportTarget.
	// +optional
	PushStatus *PushStatus `json:"pushStatus,omitempty"`
}

// Import and export phases.
const (
	TransferPhasePending   = "Pending"
	ImportPhaseImporting   = "Importing"
	ExportPhaseExporting   = "Exporting"
	TransferPhaseSucceeded = "Succeeded"
	TransferPhaseFailed    = "Failed"
)

// ImportStatus is the progress of a disk import.
type ImportStatus struct {
	// Phase: Pending, Importing, Succeeded or Failed.
	Phase string `json:"phase"`
	// Progress as a percentage, "0%" to "100%".
	// +optional
	Progress string `json:"progress,omitempty"`
	// Message says why, when something went wrong.
	// +optional
	Message string `json:"message,omitempty"`
}

// ExportStatus is the progress of a disk export.
type ExportStatus struct {
	// Phase: Pending, Exporting, Succeeded or Failed.
	Phase string `json:"phase"`
	// Progress as a percentage, "0%" to "100%".
	// +optional
	Progress string `json:"progress,omitempty"`
	// Message says why, when something went wrong.
	// +optional
	Message string `json:"message,omitempty"`
}

// PushStatus is the state of a disk's push to its exportTarget. The server
// pushes a disk once its import has succeeded, and again whenever the
// exportTarget changes. exportStatus shows the push's progress, as it does
// for downloads through disks/export.
type PushStatus struct {
	// Target is where the push goes: the target's type, format and URL (for
	// s3, the endpoint, bucket and key). It never holds credentials.
	Target string `json:"target"`
	// Phase: Pending, Exporting, Succeeded or Failed.
	Phase string `json:"phase"`
	// Message says what happened, or why not.
	// +optional
	Message string `json:"message,omitempty"`
	// Transfer names the WukongFileTransfer that records the push.
	// +optional
	Transfer string `json:"transfer,omitempty"`
	// Digest identifies what the target holds after a successful push. For
	// a registry, it is the image's manifest digest. Otherwise it is
	// sha256:<hex> of the disk's bytes.
	// +optional
	Digest string `json:"digest,omitempty"`
	// CompletedAt is when the push ended.
	// +optional
	CompletedAt *metav1.Time `json:"completedAt,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// WukongList is a list of Wukongs.
type WukongList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []Wukong `json:"items"`
}

// +genclient
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// WukongFileTransfer is the record of one transfer to or from a Wukong: created
// by the server for every stream, or by a client that opens a multi-request
// transfer. The bytes themselves are never stored.
type WukongFileTransfer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   WukongFileTransferSpec   `json:"spec,omitempty"`
	Status WukongFileTransferStatus `json:"status,omitempty"`
}

// Transfer operations.
const (
	OperationUpload   = "upload"
	OperationDownload = "download"
	// OperationPush sends a disk to its exportTarget (registry, S3 or HTTP).
	OperationPush = "push"
)

// WukongFileTransferSpec says what is transferred.
type WukongFileTransferSpec struct {
	// WukongName is the Wukong the transfer goes to or comes from.
	WukongName string `json:"wukongName"`

	// Operation: upload (into the VM), download (out of it) or push (a disk
	// to its exportTarget).
	Operation string `json:"operation"`

	// LocalPath is the client-side path, for the record.
	// +optional
	LocalPath string `json:"localPath,omitempty"`

	// RemotePath is the absolute path inside the VM. Not used for disk transfers.
	// +optional
	RemotePath string `json:"remotePath,omitempty"`

	// Method is how the bytes travel: ssh, http or pvc. Defaults to the Wukong's method.
	// +optional
	Method string `json:"method,omitempty"`

	// Disk names the Wukong disk for a disk export (download), upload or push.
	// +optional
	Disk string `json:"disk,omitempty"`

	// Target is where a push sends the disk (see PushStatus.target).
	// +optional
	Target string `json:"target,omitempty"`

	// ExpectedSize in bytes, when known before the transfer.
	// +optional
	ExpectedSize *int64 `json:"expectedSize,omitempty"`

	// ExpectedSHA256 is the hex sha256 the bytes must have; a mismatch fails the transfer.
	// +optional
	ExpectedSHA256 string `json:"expectedSHA256,omitempty"`

	// Format of a disk download's bytes: raw (also when empty), gzip or
	// qcow2. The chunks of a chunked export are of the record's format, and
	// status.sha256 is of the bytes sent in it.
	// +optional
	Format string `json:"format,omitempty"`

	// Source, on a transfer a user declares, is where the server reads the
	// bytes it writes to remotePath (an upload): the server executes it.
	// Without it, a declared upload's bytes are localPath's, sent by
	// `kubectl wukong run`.
	// +optional
	Source *FileTransferSource `json:"source,omitempty"`
}

// FileTransferSource is where a declared transfer's bytes come from:
// exactly one of url, configMapKeyRef, secretKeyRef and wukong. The
// transfer's author must be allowed to get every Secret, ConfigMap and
// Wukong's files it names.
type FileTransferSource struct {
	// URL is an http or https URL the server fetches, under the same
	// address policy as push targets.
	// +optional
	URL *URLSource `json:"url,omitempty"`

	// ConfigMapKeyRef is a key of a ConfigMap (data or binaryData) in the
	// transfer's namespace.
	// +optional
	ConfigMapKeyRef *KeyReference `json:"configMapKeyRef,omitempty"`

	// SecretKeyRef is a key of a Secret in the transfer's namespace.
	// +optional
	SecretKeyRef *KeyReference `json:"secretKeyRef,omitempty"`

	// Wukong is a file of another Wukong of the same namespace (VM to VM).
	// +optional
	Wukong *WukongFileSource `json:"wukong,omitempty"`

	// Mode of the file written, in octal (0644); unset keeps a replaced
	// file's mode, or 0644, and 0600 for a Secret's key.
	// +optional
	Mode string `json:"mode,omitempty"`

	// CreateParents makes missing directories above remotePath.
	// +optional
	CreateParents bool `json:"createParents,omitempty"`
}

// URLSource is a file the server downloads.
type URLSource struct {
	// URL, http or https. Credentials go in credentialsSecretRef, never
	// in the URL.
	URL string `json:"url"`

	// SHA256 the bytes must have, hex; a mismatch fails the transfer and
	// writes nothing. spec.expectedSHA256 does the same.
	// +optional
	SHA256 string `json:"sha256,omitempty"`

	// CASecretRef names a Secret whose key ca.crt holds the PEM
	// certificates to trust for an https URL, instead of the system's.
	// +optional
	CASecretRef *LocalObjectReference `json:"caSecretRef,omitempty"`

	// CredentialsSecretRef names a Secret with username and password (sent
	// as HTTP basic auth) or token (sent as a bearer token).
	// +optional
	CredentialsSecretRef *LocalObjectReference `json:"credentialsSecretRef,omitempty"`
}

// LocalObjectReference names an object in the same namespace.
type LocalObjectReference struct {
	// Name of the object.
	Name string `json:"name"`
}

// WukongFileSource is a file inside another Wukong.
type WukongFileSource struct {
	// Name of the Wukong, in the transfer's namespace.
	Name string `json:"name"`
	// Path of the file in its guest, absolute.
	Path string `json:"path"`
}

// Transfer record phases.
const (
	FileTransferPhasePending      = "Pending"
	FileTransferPhaseTransferring = "Transferring"
	// FileTransferPhaseCommitting: every byte of a chunked upload arrived
	// and the server is checking and renaming it into place; it takes no
	// more chunks, and the server writes updatedAt while it works.
	FileTransferPhaseCommitting = "Committing"
	FileTransferPhaseSucceeded  = "Succeeded"
	FileTransferPhaseFailed     = "Failed"
)

// WukongFileTransferStatus is the progress of a transfer, written by the server.
type WukongFileTransferStatus struct {
	// Phase: Pending, Transferring, Committing (a chunked upload being
	// checked and renamed into place), Succeeded or Failed.
	// +optional
	Phase string `json:"phase,omitempty"`

	// Progress as a percentage, "0%" to "100%", when the total is known.
	// +optional
	Progress string `json:"progress,omitempty"`

	// Message says what happened, in words a person can act on.
	// +optional
	Message string `json:"message,omitempty"`

	// StartedAt is when the first byte moved.
	// +optional
	StartedAt *metav1.Time `json:"startedAt,omitempty"`

	// CompletedAt is when the transfer ended, either way.
	// +optional
	CompletedAt *metav1.Time `json:"completedAt,omitempty"`

	// UpdatedAt is when the server last wrote progress. It does so at least
	// every few seconds while a transfer runs; a Transferring record that stops
	// being updated is ended Failed.
	// +optional
	UpdatedAt *metav1.Time `json:"updatedAt,omitempty"`

	// BytesTransferred so far.
	// +optional
	BytesTransferred int64 `json:"bytesTransferred,omitempty"`

	// TotalBytes of the transfer, when known.
	// +optional
	TotalBytes int64 `json:"totalBytes,omitempty"`

	// BytesPerSecond is the recent transfer rate.
	// +optional
	BytesPerSecond int64 `json:"bytesPerSecond,omitempty"`

	// SHA256 of the bytes that passed, hex, once complete.
	// +optional
	SHA256 string `json:"sha256,omitempty"`

	// RequestedBy is the user who asked for the transfer.
	// +optional
	RequestedBy string `json:"requestedBy,omitempty"`

	// CompletedRanges are the byte ranges of a chunked transfer done so far,
	// merged and sorted; a client resumes by sending or fetching the rest.
	// +optional
	// +listType=atomic
	CompletedRanges []ByteRange `json:"completedRanges,omitempty"`

	// RangeDigests are the sha256 of each range of a chunked download, as
	// the server read it from the VM: a client compares what it received.
	// (Trailers would carry them with the bytes, but kube-apiserver drops
	// trailers of requests it times out.)
	// +optional
	// +listType=atomic
	RangeDigests []RangeDigest `json:"rangeDigests,omitempty"`

	// DiskSource says what a disk export or push read: the disk's PVC, or
	// a VirtualMachineSnapshot of its running VM and when it was taken.
	// Every range of a chunked export reads the same source.
	// +optional
	DiskSource *DiskSource `json:"diskSource,omitempty"`

	// UploadHash is the sha256 of a chunked upload, carried from byte 0 as
	// its chunks arrive, so that the commit knows the whole file's sha256
	// without reading it back. Only chunks sent with sha256From and sha256To
	// add to it.
	// +optional
	UploadHash *UploadHash `json:"uploadHash,omitempty"`
}

// DiskSource types.
const (
	// DiskSourcePVC: the disk's PersistentVolumeClaim, its VM stopped.
	DiskSourcePVC = "pvc"
	// DiskSourceSnapshot: a VirtualMachineSnapshot of the VM.
	DiskSourceSnapshot = "snapshot"
)

// DiskSource is what a disk's bytes were read from.
type DiskSource struct {
	// Type is pvc or snapshot.
	Type string `json:"type"`

	// Name of the PersistentVolumeClaim or VirtualMachineSnapshot.
	Name string `json:"name"`

	// CreationTime of a snapshot: the moment the bytes are of.
	// +optional
	CreationTime *metav1.Time `json:"creationTime,omitempty"`
}

// RangeDigest is the sha256 of length bytes from offset.
type RangeDigest struct {
	Offset int64  `json:"offset"`
	Length int64  `json:"length"`
	SHA256 string `json:"sha256"`
}

// UploadHash is the running sha256 of a chunked upload. Each chunk sent with
// the SHA-256 state before its bytes (sha256From) and after them (sha256To)
// is hashed by the server from the first as it is written, and counts only
// when it arrives at the second; chained from byte 0, the states give the
// sha256 of the file as written.
type UploadHash struct {
	// Through: the bytes [0, through) are hashed.
	Through int64 `json:"through"`

	// State is the SHA-256 state after them, in Go's crypto/sha256 binary
	// form, base64url without padding.
	// +optional
	State string `json:"state,omitempty"`

	// Pending are chunks hashed past through, waiting for those before them.
	// +optional
	// +listType=atomic
	Pending []HashedRange `json:"pending,omitempty"`

	// Broken, when set, says why the states no longer describe the file (a
	// chunk cut while it was written, a range written twice): the commit
	// then reads the file back.
	// +optional
	Broken string `json:"broken,omitempty"`
}

// HashedRange is a chunk hashed from one SHA-256 state to another.
type HashedRange struct {
	Offset int64 `json:"offset"`
	Length int64 `json:"length"`

	// From is the hex sha256 of the state the chunk was hashed from.
	From string `json:"from"`

	// To is the state after the chunk's bytes.
	To string `json:"to"`
}

// ByteRange is length bytes from offset.
type ByteRange struct {
	Offset int64 `json:"offset"`
	Length int64 `json:"length"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// WukongFileTransferList is a list of WukongFileTransfers.
type WukongFileTransferList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []WukongFileTransfer `json:"items"`
}

// +k8s:conversion-gen:explicit-from=net/url.Values
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// WukongFileOptions are the query parameters of the wukongs/<name>/files
// subresource. GET reads (a file, a byte range, a directory listing or a tar of
// a directory), POST creates, PUT creates or replaces, DELETE removes.
type WukongFileOptions struct {
	metav1.TypeMeta `json:",inline"`

	// Path is the absolute path inside the VM.
	Path string `json:"path"`

	// Offset of the first byte to read (GET), like a Range header.
	// +optional
	Offset *int64 `json:"offset,omitempty"`

	// Length is the number of bytes to read from offset (GET); to the end when unset.
	// +optional
	Length *int64 `json:"length,omitempty"`

	// Archive set to "tar" reads a directory as a tar stream (GET) or extracts
	// a tar body under the directory at path (POST, PUT).
	// +optional
	Archive string `json:"archive,omitempty"`

	// Gzip compresses the tar stream (GET) or says the tar body is gzipped (POST, PUT).
	// +optional
	Gzip bool `json:"gzip,omitempty"`

	// Mode of a created file, in octal (e.g. "0600"). A replaced file keeps its
	// mode unless this is set; a new one gets 0644.
	// +optional
	Mode string `json:"mode,omitempty"`

	// CreateParents creates missing parent directories (POST, PUT).
	// +optional
	CreateParents bool `json:"createParents,omitempty"`

	// SHA256 is the expected hex sha256 of the uploaded body; on a mismatch
	// nothing is written under path.
	// +optional
	SHA256 string `json:"sha256,omitempty"`

	// SHA256From and SHA256To, on a chunk of a chunked upload, are the
	// SHA-256 states before and after the chunk's bytes (Go's crypto/sha256
	// binary form, base64url without padding): the server hashes the chunk
	// from the first, refuses it (422) unless it arrives at the second, and
	// chains the states into status.uploadHash, so that the commit need not
	// read the file back for its sha256.
	// +optional
	SHA256From string `json:"sha256From,omitempty"`
	// +optional
	SHA256To string `json:"sha256To,omitempty"`

	// Recursive removes a directory and everything under it (DELETE).
	// +optional
	Recursive bool `json:"recursive,omitempty"`

	// Transfer names a WukongFileTransfer this request is one chunk of. A
	// chunked upload writes the body at offset into the transfer's temporary
	// file; a chunked download reads offset/length. Progress and the byte
	// ranges done accumulate in the record, so a transfer of any size is many
	// requests that each fit kube-apiserver's request timeout, and it resumes
	// from what the record says is done.
	// +optional
	Transfer string `json:"transfer,omitempty"`

	// Commit ends a chunked transfer (with transfer). An upload (POST or
	// PUT), once every byte of expectedSize arrived: the server checks the
	// size (and reads the file back to check expectedSHA256, when set) and
	// renames the temporary file to path (POST refuses to replace, PUT
	// replaces); it answers 202 at once and the record turns Succeeded or
	// Failed. A download (GET): the client says it has every byte, and the
	// record ends Succeeded.
	// +optional
	Commit bool `json:"commit,omitempty"`

	// Upload, on a WebSocket (a GET upgrade, which kube-apiserver does not
	// time out), turns the stream around: the client sends the file's bytes as
	// binary messages and closes; "create" refuses to replace (authorised as
	// create), "replace" replaces (authorised as update). Without it a
	// WebSocket GET streams the file to the client.
	// +optional
	Upload string `json:"upload,omitempty"`
}

// File types in a listing.
const (
	FileTypeFile      = "file"
	FileTypeDirectory = "directory"
	FileTypeSymlink   = "symlink"
	FileTypeOther     = "other"
)

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// WukongFileList is a directory listing inside a VM, returned by a GET of
// wukongs/<name>/files on a directory.
type WukongFileList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	// Path of the listed directory.
	Path string `json:"path"`

	// Items are the directory's entries, sorted by name.
	Items []FileInfo `json:"items"`
}

// FileInfo describes one directory entry.
type FileInfo struct {
	// Name of the entry within its directory.
	Name string `json:"name"`
	// Type: file, directory, symlink or other.
	Type string `json:"type"`
	// Size in bytes.
	Size int64 `json:"size"`
	// Mode as ls prints it, e.g. -rw-r--r--.
	Mode string `json:"mode"`
	// ModTime is the last modification time.
	ModTime metav1.Time `json:"modTime"`
	// LinkTarget is where a symlink points.
	// +optional
	LinkTarget string `json:"linkTarget,omitempty"`
}

// +genclient
// +genclient:onlyVerbs=get,list,watch
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// Disk is one disk of a Wukong, derived and never stored: its declaration
// (spec.disks) and state (status.volumes) in one object, named like its
// DataVolume and PVC, <wukong>-<disk>. Its export and upload subresources
// move the disk's bytes.
type Disk struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   DiskSpec   `json:"spec,omitempty"`
	Status DiskStatus `json:"status,omitempty"`
}

// DiskSpec is the disk as its Wukong declares it.
type DiskSpec struct {
	// WukongName is the Wukong the disk belongs to.
	WukongName string `json:"wukongName"`
	// DiskName is the disk's name within the Wukong.
	DiskName string `json:"diskName"`
	// Size of the disk, when declared.
	// +optional
	Size *resource.Quantity `json:"size,omitempty"`
	// Source says where the content comes from: an image reference, an
	// import URL, s3://bucket/key, pvc namespace/name, or blank.
	// +optional
	Source string `json:"source,omitempty"`
}

// DiskStatus is the disk's state, from its Wukong's status.
type DiskStatus struct {
	// ClaimName is the PVC/DataVolume backing the disk.
	// +optional
	ClaimName string `json:"claimName,omitempty"`
	// ImportStatus of the disk's content.
	// +optional
	ImportStatus *ImportStatus `json:"importStatus,omitempty"`
	// ExportStatus of the disk's last export.
	// +optional
	ExportStatus *ExportStatus `json:"exportStatus,omitempty"`

	// PushStatus of the disk's last push to its exportTarget.
	// +optional
	PushStatus *PushStatus `json:"pushStatus,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// DiskList is a list of Disks.
type DiskList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []Disk `json:"items"`
}

// +k8s:conversion-gen:explicit-from=net/url.Values
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// DiskExportOptions are the query parameters of disks/<name>/export: the
// disk's volume, streamed from KubeVirt's export server.
type DiskExportOptions struct {
	metav1.TypeMeta `json:",inline"`

	// Format is raw (the default), gzip, or qcow2: an image written by
	// wukong-apiserver from the raw volume, every cluster allocated in
	// order. Byte ranges apply to raw and qcow2.
	// +optional
	Format string `json:"format,omitempty"`

	// Offset of the first byte to read (raw and qcow2), like a Range header.
	// +optional
	Offset *int64 `json:"offset,omitempty"`

	// Length is the number of bytes to read from offset (raw and qcow2).
	// +optional
	Length *int64 `json:"length,omitempty"`

	// Transfer names the WukongFileTransfer (operation download, spec.disk
	// set) this range belongs to: a chunked export, many ranged requests
	// tied to one record, each well inside kube-apiserver's timeout.
	// +optional
	Transfer string `json:"transfer,omitempty"`

	// Commit, with transfer, ends a chunked export: Succeeded when its
	// ranges cover the disk.
	// +optional
	Commit bool `json:"commit,omitempty"`

	// Snapshot chooses what is read. Unset or true: a
	// VirtualMachineSnapshot while the VM runs (KubeVirt does not export a
	// PVC a running VM uses), the PVC while it is stopped (it does not
	// change). false: the PVC, refused (409) while the VM runs.
	// +optional
	Snapshot *bool `json:"snapshot,omitempty"`

	// TTL of the VirtualMachineExport (and snapshot) this request creates,
	// as a Go duration (e.g. 4h); at most the server's --export-max-ttl.
	// Default: one hour.
	// +optional
	TTL string `json:"ttl,omitempty"`
}

// +k8s:conversion-gen:explicit-from=net/url.Values
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// DiskUploadOptions are the query parameters of disks/<name>/upload: a disk
// image (or, for a disk of contentType archive, a tar) sent to CDI's upload
// proxy. POST or PUT carry the bytes; a GET upgraded to a WebSocket carries
// them past kube-apiserver's request timeout.
type DiskUploadOptions struct {
	metav1.TypeMeta `json:",inline"`

	// SHA256 of the whole upload, hex: checked on the stream, and a mismatch
	// fails the upload before its last bytes reach CDI.
	// +optional
	SHA256 string `json:"sha256,omitempty"`

	// Attempt numbers a client's retry of a cut upload (2 for the first
	// retry), for the record: CDI's upload server takes no offset, so every
	// attempt sends the image again from byte 0.
	// +optional
	Attempt int64 `json:"attempt,omitempty"`
}
