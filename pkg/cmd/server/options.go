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

package server

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/novasphere/wukong/pkg/apiserver"
	"github.com/novasphere/wukong/pkg/controller"
	"github.com/novasphere/wukong/pkg/controller/virtualmachine"
	"github.com/novasphere/wukong/pkg/egress"
	"github.com/novasphere/wukong/pkg/subresource/stream"
	"github.com/novasphere/wukong/pkg/transfer/export"
)

// WukongOptions are wukong-apiserver's own flags.
type WukongOptions struct {
	MaxFileSize             string
	TransferRecordRetention time.Duration
	TransferStaleAfter      time.Duration
	DeclaredTransferTTL     time.Duration
	SSHDialTimeout          time.Duration
	// Bounds on the records every transfer writes to etcd.
	TransferRecordsPerUser      int
	TransferRecordsPerNamespace int
	TransferRecordsKept         int
	// Caps that keep one request's memory bounded (see docs/deploying.md).
	MaxListEntries        int
	MaxArchiveEntries     int64
	MaxArchiveHeaderBytes string
	// Sweep of temporary upload files left in guests by crashed servers.
	UploadTempMaxAge time.Duration
	// CDI's upload proxy, when its CDIConfig does not say (or says an
	// address for clients outside the cluster).
	CDIUploadProxyURL    string
	CDIUploadProxyCAFile string

	// Where pushes may connect: CIDRs allowed even if denied, and CIDRs
	// denied besides egress.BuiltinDenied.
	PushAllowedCIDRs []string
	PushDeniedCIDRs  []string
	// Bounds on concurrent streams, and the idle cut-off of each.
	MaxStreams          int
	MaxStreamsPerUser   int
	MaxStreamsPerWukong int
	StreamIdleTimeout   time.Duration
	// Exports of disks: the bound on a snapshot of a running VM, and on
	// the ttl a request may ask for.
	ExportSnapshotTimeout time.Duration
	ExportMaxTTL          time.Duration

	// The controller that realises Wukongs as VirtualMachines.
	Controller     bool
	ControllerLock controller.LeaderOptions
	// AgentDiskImage is the wukong-agent containerDisk of method http.
	AgentDiskImage string
}

// NewWukongOptions returns the defaults.
func NewWukongOptions() *WukongOptions {
	return &WukongOptions{
		MaxFileSize:             "0",
		TransferRecordRetention: 24 * time.Hour,
		TransferStaleAfter:      time.Minute,
		DeclaredTransferTTL:     time.Hour,
		SSHDialTimeout:          15 * time.Second,
		// A person or a script copying file by file stays well below
		// these; a loop that floods etcd does not.
		TransferRecordsPerUser:      120,
		TransferRecordsPerNamespace: 300,
		TransferRecordsKept:         1000,
		MaxListEntries:              10000,
		MaxArchiveEntries:           100000,
		MaxArchiveHeaderBytes:       "32Mi",
		UploadTempMaxAge:            time.Hour,
		MaxStreams:                  stream.DefaultMaxStreams,
		MaxStreamsPerUser:           stream.DefaultMaxStreamsPerUser,
		MaxStreamsPerWukong:         stream.DefaultMaxStreamsPerWukong,
		StreamIdleTimeout:           stream.DefaultIdleTimeout,
		ExportSnapshotTimeout:       export.DefaultSnapshotTimeout,
		ExportMaxTTL:                12 * time.Hour,
		Controller:                  true,
		AgentDiskImage:              virtualmachine.DefaultAgentDiskImage(),
		ControllerLock: controller.LeaderOptions{
			Namespace: namespaceOfPod(), Name: "wukong-controller",
			LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second,
		},
	}
}

// namespaceOfPod is the namespace the Deployment runs in (POD_NAMESPACE, from
// the downward API), or wukong-system.
func namespaceOfPod() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	return "wukong-system"
}

// AddFlags registers the flags.
func (o *WukongOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.MaxFileSize, "max-file-size", o.MaxFileSize,
		"Largest file or archive one request may move through wukongs/files, as a quantity (e.g. 50Gi); 0 means no server-wide limit. A Wukong's spec.fileTransfer.maxFileSize can only lower it.")
	fs.DurationVar(&o.TransferRecordRetention, "transfer-record-retention", o.TransferRecordRetention,
		"How long finished WukongFileTransfer records are kept; 0 keeps them forever.")
	fs.DurationVar(&o.TransferStaleAfter, "transfer-stale-after", o.TransferStaleAfter,
		"A Transferring record whose progress nobody wrote for this long (its server stopped) is ended Failed. Running transfers write at least every quarter of it.")
	fs.DurationVar(&o.DeclaredTransferTTL, "declared-transfer-ttl", o.DeclaredTransferTTL,
		"A WukongFileTransfer a user created that no client ran for this long is ended Failed (Expired), then kept and collected as other finished records.")
	fs.IntVar(&o.TransferRecordsPerUser, "transfer-records-per-user", o.TransferRecordsPerUser,
		"Transfers (and WukongFileTransfer records) one user may start a minute, with a minute's worth at once; past it a stream is refused 429 with Retry-After. Counted per replica; 0: no limit.")
	fs.IntVar(&o.TransferRecordsPerNamespace, "transfer-records-per-namespace", o.TransferRecordsPerNamespace,
		"Transfers (and WukongFileTransfer records) all users together may start a minute in one namespace, as --transfer-records-per-user; 0: no limit.")
	fs.IntVar(&o.TransferRecordsKept, "transfer-records-kept", o.TransferRecordsKept,
		"Most finished WukongFileTransfer records one namespace keeps; the collector deletes the oldest beyond it before --transfer-record-retention. 0: no limit.")
	fs.DurationVar(&o.SSHDialTimeout, "ssh-dial-timeout", o.SSHDialTimeout,
		"Time allowed to reach a guest's SSH server and complete the handshake.")
	fs.IntVar(&o.MaxListEntries, "max-list-entries", o.MaxListEntries,
		"Most entries a directory listing of wukongs/files returns; a larger directory is refused with 413. 0 means no limit.")
	fs.Int64Var(&o.MaxArchiveEntries, "max-archive-entries", o.MaxArchiveEntries,
		"Most entries of a tar that wukongs/files extracts (upload) or writes (download); more is refused with 413. 0 means no limit.")
	fs.StringVar(&o.MaxArchiveHeaderBytes, "max-archive-header-bytes", o.MaxArchiveHeaderBytes,
		"Most bytes of entry names, link targets and PAX records in one extracted tar, as a quantity; more is refused with 413. 0 means no limit.")
	fs.DurationVar(&o.UploadTempMaxAge, "upload-temp-max-age", o.UploadTempMaxAge,
		"Age (by modification time) after which a temporary file of a plain or tar upload, left in a guest by a server that crashed, is removed on the next connection to that guest.")
	fs.StringVar(&o.CDIUploadProxyURL, "cdi-upload-proxy-url", o.CDIUploadProxyURL,
		"CDI's upload proxy as this server reaches it (e.g. https://cdi-uploadproxy.cdi.svc). Empty: status.uploadProxyURL of the CDIConfig config, as virtctl finds it.")
	fs.StringVar(&o.CDIUploadProxyCAFile, "cdi-upload-proxy-ca-file", o.CDIUploadProxyCAFile,
		"PEM CA bundle that signs the upload proxy's certificate. Empty: status.uploadProxyCA of the CDIConfig, else the system roots.")
	fs.StringSliceVar(&o.PushAllowedCIDRs, "push-allowed-cidrs", o.PushAllowedCIDRs,
		"CIDRs (or addresses) that pushes to an exportTarget may connect to even if denied, e.g. an in-cluster registry's Service IP. Allowed wins over denied.")
	fs.StringSliceVar(&o.PushDeniedCIDRs, "push-denied-cidrs", o.PushDeniedCIDRs,
		"CIDRs that pushes to an exportTarget may not connect to, besides the built-in ones (loopback, link-local, private, CGNAT, unique-local, multicast, reserved); list the cluster's pod and Service CIDRs here if they are not private addresses.")
	fs.IntVar(&o.MaxStreams, "max-streams", o.MaxStreams,
		"Most streams (requests of wukongs/files, disks/export, disks/upload; a WebSocket while it is open) this server runs at once; more get 429 with Retry-After. 0 means no bound.")
	fs.IntVar(&o.MaxStreamsPerUser, "max-streams-per-user", o.MaxStreamsPerUser,
		"Most streams one user runs at once on this server; 0 means no bound.")
	fs.IntVar(&o.MaxStreamsPerWukong, "max-streams-per-wukong", o.MaxStreamsPerWukong,
		"Most streams to one Wukong (its files and disks) at once on this server; 0 means no bound.")
	fs.DurationVar(&o.StreamIdleTimeout, "stream-idle-timeout", o.StreamIdleTimeout,
		"A stream in which no byte moved for this long (a client that stopped reading or sending, a guest or export server that stopped answering) is cut and its record ends Failed. 0 disables it.")
	fs.DurationVar(&o.ExportSnapshotTimeout, "export-snapshot-timeout", o.ExportSnapshotTimeout,
		"How long an export or push of a running VM's disk waits for its VirtualMachineSnapshot to be ready to use (also the snapshot's failureDeadline); past it the answer is 409 (the storage may not snapshot the disk: stop the VM).")
	fs.DurationVar(&o.ExportMaxTTL, "export-max-ttl", o.ExportMaxTTL,
		"Largest ttl a disks/export request may ask for its VirtualMachineExport and snapshot; more is refused with 422.")
	fs.BoolVar(&o.Controller, "controller", o.Controller,
		"Run the controller that realises Wukongs as KubeVirt VirtualMachines with CDI DataVolumes, in the replica that holds the leader Lease. The Lease is held either way: the transfer record collector runs in its holder.")
	fs.StringVar(&o.AgentDiskImage, "agent-disk-image", o.AgentDiskImage,
		"The wukong-agent containerDisk (make image builds it beside the server's image) that VMs of method http get as a read-only cdrom, to install the agent from without network. Set it when the images come from a mirror.")
	fs.StringVar(&o.ControllerLock.Namespace, "leader-elect-resource-namespace", o.ControllerLock.Namespace, "Namespace of the controller's leader Lease.")
	fs.StringVar(&o.ControllerLock.Name, "leader-elect-resource-name", o.ControllerLock.Name, "Name of the controller's leader Lease.")
	fs.DurationVar(&o.ControllerLock.LeaseDuration, "leader-elect-lease-duration", o.ControllerLock.LeaseDuration, "How long followers wait before taking over a Lease the leader stopped renewing.")
	fs.DurationVar(&o.ControllerLock.RenewDeadline, "leader-elect-renew-deadline", o.ControllerLock.RenewDeadline, "How long the leader retries renewing before it gives up leading.")
	fs.DurationVar(&o.ControllerLock.RetryPeriod, "leader-elect-retry-period", o.ControllerLock.RetryPeriod, "How often candidates try to acquire or renew the Lease.")
}

// Validate checks the flags.
func (o *WukongOptions) Validate() []error {
	var errs []error
	if q, err := resource.ParseQuantity(o.MaxFileSize); err != nil || q.Sign() < 0 {
		errs = append(errs, fmt.Errorf("--max-file-size %q must be a non-negative quantity such as 50Gi", o.MaxFileSize))
	}
	if o.TransferRecordRetention < 0 {
		errs = append(errs, fmt.Errorf("--transfer-record-retention must not be negative"))
	}
	if o.TransferStaleAfter < 4*time.Second {
		errs = append(errs, fmt.Errorf("--transfer-stale-after must be at least 4s"))
	}
	if o.DeclaredTransferTTL < time.Second {
		errs = append(errs, fmt.Errorf("--declared-transfer-ttl must be at least 1s"))
	}
	if o.MaxListEntries < 0 || o.MaxArchiveEntries < 0 {
		errs = append(errs, fmt.Errorf("--max-list-entries and --max-archive-entries must not be negative"))
	}
	if q, err := resource.ParseQuantity(o.MaxArchiveHeaderBytes); err != nil || q.Sign() < 0 {
		errs = append(errs, fmt.Errorf("--max-archive-header-bytes %q must be a non-negative quantity such as 32Mi", o.MaxArchiveHeaderBytes))
	}
	if o.UploadTempMaxAge < 10*time.Minute {
		// Younger temporary files may belong to uploads still running.
		errs = append(errs, fmt.Errorf("--upload-temp-max-age must be at least 10m"))
	}
	if o.SSHDialTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--ssh-dial-timeout must be positive"))
	}
	if o.MaxStreams < 0 || o.MaxStreamsPerUser < 0 || o.MaxStreamsPerWukong < 0 {
		errs = append(errs, fmt.Errorf("--max-streams, --max-streams-per-user and --max-streams-per-wukong must not be negative"))
	}
	if o.ExportSnapshotTimeout <= 0 || o.ExportMaxTTL <= 0 {
		errs = append(errs, fmt.Errorf("--export-snapshot-timeout and --export-max-ttl must be positive"))
	}
	if o.StreamIdleTimeout < 0 {
		errs = append(errs, fmt.Errorf("--stream-idle-timeout must not be negative"))
	}
	if _, err := egress.New(o.PushAllowedCIDRs, o.PushDeniedCIDRs); err != nil {
		errs = append(errs, err)
	}
	if o.TransferRecordsPerUser < 0 || o.TransferRecordsPerNamespace < 0 || o.TransferRecordsKept < 0 {
		errs = append(errs, fmt.Errorf("--transfer-records-per-user, --transfer-records-per-namespace and --transfer-records-kept must not be negative"))
	}
	// The Lease is held with or without --controller: the record collector
	// runs in its holder.
	if l := o.ControllerLock; !(l.LeaseDuration > l.RenewDeadline && l.RenewDeadline > l.RetryPeriod && l.RetryPeriod > 0) {
		errs = append(errs, fmt.Errorf("--leader-elect-lease-duration > --leader-elect-renew-deadline > --leader-elect-retry-period > 0 must hold"))
	}
	return errs
}

// ApplyTo fills Wukong's part of the server configuration.
func (o *WukongOptions) ApplyTo(c *apiserver.ExtraConfig) error {
	q, err := resource.ParseQuantity(o.MaxFileSize)
	if err != nil {
		return err
	}
	c.MaxFileSize = q.Value()
	c.TransferRecordRetention = o.TransferRecordRetention
	c.TransferStaleAfter = o.TransferStaleAfter
	c.DeclaredTransferTTL = o.DeclaredTransferTTL
	c.SSHDialTimeout = o.SSHDialTimeout
	c.TransferRecordsPerUser, c.TransferRecordsPerNamespace, c.TransferRecordsKept = o.TransferRecordsPerUser, o.TransferRecordsPerNamespace, o.TransferRecordsKept
	c.MaxListEntries, c.MaxArchiveEntries = o.MaxListEntries, o.MaxArchiveEntries
	hq, err := resource.ParseQuantity(o.MaxArchiveHeaderBytes)
	if err != nil {
		return err
	}
	c.MaxArchiveHeaderBytes = hq.Value()
	c.UploadTempMaxAge = o.UploadTempMaxAge
	c.CDIUploadProxyURL = o.CDIUploadProxyURL
	if o.CDIUploadProxyCAFile != "" {
		if c.CDIUploadProxyCA, err = os.ReadFile(o.CDIUploadProxyCAFile); err != nil {
			return fmt.Errorf("--cdi-upload-proxy-ca-file: %w", err)
		}
	}
	c.StreamLimits = stream.Limits{Global: o.MaxStreams, PerUser: o.MaxStreamsPerUser, PerWukong: o.MaxStreamsPerWukong}
	c.StreamIdleTimeout = o.StreamIdleTimeout
	c.ExportSnapshotTimeout, c.ExportMaxTTL = o.ExportSnapshotTimeout, o.ExportMaxTTL
	c.Controller, c.ControllerLock = o.Controller, o.ControllerLock
	c.AgentDiskImage = o.AgentDiskImage
	if c.PushEgress, err = egress.New(o.PushAllowedCIDRs, o.PushDeniedCIDRs); err != nil {
		return err
	}
	return nil
}
