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
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	apirest "k8s.io/apiserver/pkg/registry/rest"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	cdiclient "kubevirt.io/client-go/containerizeddataimporter"
	kubevirtclient "kubevirt.io/client-go/kubevirt"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/controller/filetransfers"
	"github.com/novasphere/wukong/pkg/events"
	"github.com/novasphere/wukong/pkg/metrics"
	"github.com/novasphere/wukong/pkg/registry/vm/disk"
	"github.com/novasphere/wukong/pkg/registry/vm/wukong"
	"github.com/novasphere/wukong/pkg/registry/vm/wukongfiletransfer"
	"github.com/novasphere/wukong/pkg/subresource/disks"
	"github.com/novasphere/wukong/pkg/subresource/files"
	"github.com/novasphere/wukong/pkg/subresource/stream"
	"github.com/novasphere/wukong/pkg/transfer/cdi"
	"github.com/novasphere/wukong/pkg/transfer/export"
	"github.com/novasphere/wukong/pkg/transfer/guest"
	"github.com/novasphere/wukong/pkg/transfer/owner"
	"github.com/novasphere/wukong/pkg/transfer/ssh"
)

// clients reach kube-apiserver as the server itself: the core API
// (Secrets, the Lease), KubeVirt and CDI.
type clients struct {
	kube     kubernetes.Interface
	kubevirt kubevirtclient.Interface
	cdi      cdiclient.Interface
	// events records events on Wukongs (events.go).
	events events.Events
}

func (c completedConfig) newClients() (*clients, error) {
	if c.ClientConfig == nil {
		return nil, fmt.Errorf("wukong-apiserver needs a kubeconfig for the core API (--kubeconfig, or run in a cluster)")
	}
	cfg := unthrottled(c.ClientConfig)
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	kv, err := kubevirtclient.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	cd, err := cdiclient.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &clients{kube: kube, kubevirt: kv, cdi: cd}, nil
}

// unthrottled is cfg without client-go's client-side rate limit. Every
// files request reads the VMI, its VM and the key Secret; at client-go's
// default of 5 requests a second (burst 10) each small download waited
// 200 ms per two reads once the burst was spent, whatever its size. These
// reads serve requests kube-apiserver already admitted (and wukong-apiserver's
// stream limits count); kube-apiserver's priority and fairness bounds them
// as it bounds every client, which is what client-go's own limit predates.
func unthrottled(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	if cfg.RateLimiter == nil {
		cfg.QPS = -1
	}
	return cfg
}

// storage is the group's storage and the pieces the controllers share.
type storage struct {
	v1alpha1  map[string]apirest.Storage
	recorder  *wukongfiletransfer.Recorder
	exporter  *export.Disks
	collector *wukongfiletransfer.Collector
	owners    *owner.Checker
	// copies are what the declared transfer controller needs.
	copies *filetransfers.Deps
}

// newStorage builds the storage of every resource and subresource: the
// registry's stores, the record writer beside them, and the streaming
// subresources with what reaches guests, KubeVirt and CDI. It adds the SSH
// pool's shutdown to s; the record collector runs in the Lease holder.
func (c completedConfig) newStorage(s *genericapiserver.GenericAPIServer, cl *clients) (*storage, error) {
	authz := c.GenericConfig.Authorization.Authorizer
	wukongs, wukongStatus, err := wukong.NewREST(Scheme, c.GenericConfig.RESTOptionsGetter, &wukong.References{Core: cl.kube.CoreV1(), Authorizer: authz})
	if err != nil {
		return nil, err
	}
	wukong.RefuseDeniedTargets(wukongs, c.ExtraConfig.PushEgress)
	transfers, transferStatus, err := wukongfiletransfer.NewREST(Scheme, c.GenericConfig.RESTOptionsGetter)
	if err != nil {
		return nil, err
	}
	sources := &wukongfiletransfer.SourceCheck{Authorizer: authz, Egress: c.ExtraConfig.PushEgress}
	sources.Install(transfers)
	transfers.Limits = wukongfiletransfer.NewLimiter(c.ExtraConfig.TransferRecordsPerUser, c.ExtraConfig.TransferRecordsPerNamespace)
	// The record rate is the cluster's: each replica counts the records
	// the others create, from a watch of its own storage.
	s.AddPostStartHookOrDie("wukong-record-rate", func(hook genericapiserver.PostStartHookContext) error {
		go transfers.Limits.Observe(hook, wukongfiletransfer.WatchAll(transfers.Store))
		return nil
	})
	recorder := wukongfiletransfer.NewRecorder(transfers, transferStatus)
	recorder.Heartbeat = c.ExtraConfig.TransferStaleAfter / 4
	recorder.CommitHeartbeat = min(5*time.Second, recorder.Heartbeat)
	recorder.Events = cl.events
	statusWriter := wukong.StatusWriter{Status: wukongStatus}

	// One limiter for every streaming subresource: a user's file copies and
	// disk exports count against the same bounds.
	limiter := stream.NewLimiter(c.ExtraConfig.StreamLimits)
	idle := c.ExtraConfig.StreamIdleTimeout
	pool := ssh.NewPool(ssh.PoolOptions{DialTimeout: c.ExtraConfig.SSHDialTimeout})
	s.AddPreShutdownHookOrDie("close-ssh-pool", func() error { return pool.Close() })
	metrics.SetSSHPool(func() metrics.SSHPoolStats {
		st := pool.Stats()
		return metrics.SSHPoolStats{Open: st.Open, InUse: st.InUse, Dials: st.Dials, DialFailures: st.DialFailures}
	})
	locator := &guest.Locator{VMIs: cl.kubevirt.KubevirtV1(), VMs: cl.kubevirt.KubevirtV1(), Secrets: cl.kube.CoreV1(),
		Cache: c.newGuestCache(s, cl)}
	dialer := files.NewSSHDialer(locator, pool, statusWriter)
	dialer.Events = cl.events
	// Method http: the in-guest wukong-agent, one HTTPS client per Wukong.
	agents := files.NewAgentDialer(locator)
	s.AddPreShutdownHookOrDie("close-agent-clients", func() error { agents.Close(); return nil })
	if age := c.ExtraConfig.UploadTempMaxAge; age > 0 {
		sweeper := &files.Sweeper{Records: transfers, MaxAge: age, Every: age / 4, MaxEntries: 10000}
		dialer.Sweeper, agents.Sweeper = sweeper, sweeper
	}
	fileStreams := files.NewREST(files.Deps{
		Wukongs: wukongs,
		// Method pvc: helper pods (pvc.go), when the server has an image
		// for them; otherwise the files subresource answers it 501.
		Dialer: c.withPVC(s, cl, files.ByMethod{
			vm.FileTransferMethodSSH:  dialer,
			vm.FileTransferMethodHTTP: agents,
		}),
		Recorder:    recorder,
		Authorizer:  authz,
		MaxFileSize: c.ExtraConfig.MaxFileSize,

		MaxListEntries:        c.ExtraConfig.MaxListEntries,
		MaxArchiveEntries:     c.ExtraConfig.MaxArchiveEntries,
		MaxArchiveHeaderBytes: c.ExtraConfig.MaxArchiveHeaderBytes,
		Limiter:               limiter,
		IdleTimeout:           idle,
	})

	diskStore := disk.NewREST(wukongs)
	// Disks act only on the DataVolumes and PVCs their Wukong owns.
	owners := &owner.Checker{VMs: cl.kubevirt.KubevirtV1(), DataVolumes: cl.cdi.CdiV1beta1(), Claims: cl.kube.CoreV1()}
	// A running VM's disk is read through a snapshot of the VM.
	exporter := &export.Disks{
		Exporter:  &export.Exporter{Exports: cl.kubevirt.ExportV1beta1(), Secrets: cl.kube.CoreV1(), TTL: export.DefaultTTL},
		Snapshots: cl.kubevirt.SnapshotV1beta1(), VMIs: cl.kubevirt.KubevirtV1(), Owners: owners,
		SnapshotTimeout: c.ExtraConfig.ExportSnapshotTimeout,
	}
	diskExport := disks.NewExportREST(disks.ExportDeps{
		Disks: diskStore, Wukongs: wukongs, Exporter: exporter, Owners: owners, Recorder: recorder, Status: statusWriter,
		Limiter: limiter, IdleTimeout: idle, MaxTTL: c.ExtraConfig.ExportMaxTTL,
	})
	uploader := &cdi.Uploader{
		DataVolumes: cl.cdi.CdiV1beta1(), Configs: cl.cdi.CdiV1beta1(), Tokens: cl.cdi.UploadV1beta1(),
		ProxyURL: c.ExtraConfig.CDIUploadProxyURL, ProxyCA: c.ExtraConfig.CDIUploadProxyCA,
	}
	diskUpload := disks.NewUploadREST(disks.UploadDeps{Disks: diskStore, Uploader: uploader, Owners: owners, Recorder: recorder, Authorizer: authz,
		Limiter: limiter, IdleTimeout: idle})

	// The collector runs in the Lease holder (addControllers).
	collector := wukongfiletransfer.NewCollector(transfers, transferStatus, c.ExtraConfig.TransferRecordRetention, c.ExtraConfig.TransferStaleAfter)
	collector.KeepPerNamespace = c.ExtraConfig.TransferRecordsKept
	collector.DeclaredTTL = c.ExtraConfig.DeclaredTransferTTL
	collector.Events = cl.events
	collector.Abandoned = func(ctx context.Context, rec *vm.WukongFileTransfer) {
		fileStreams.RemoveAbandonedChunks(ctx, rec)
		diskExport.AbandonedExport(ctx, rec)
	}

	return &storage{
		v1alpha1: map[string]apirest.Storage{
			"wukongs":                    wukongs,
			"wukongs/status":             wukongStatus,
			"wukongs/files":              fileStreams,
			"disks":                      diskStore,
			"disks/export":               diskExport,
			"disks/upload":               diskUpload,
			"wukongfiletransfers":        transfers,
			"wukongfiletransfers/status": transferStatus,
		},
		recorder:  recorder,
		exporter:  exporter,
		collector: collector,
		owners:    owners,
		copies: &filetransfers.Deps{
			Wukongs: func(ctx context.Context, namespace, name string) (*vm.Wukong, error) {
				obj, err := wukongs.Get(genericapirequest.WithNamespace(ctx, namespace), name, &metav1.GetOptions{})
				if err != nil {
					return nil, err
				}
				return obj.(*vm.Wukong), nil
			},
			Dialer: guestDialer{dialer}, Records: recorder, Access: sources, Core: cl.kube.CoreV1(),
			Egress: c.ExtraConfig.PushEgress, MaxFileSize: c.ExtraConfig.MaxFileSize, IdleTimeout: idle,
		},
	}, nil
}

// guestDialer gives the declared transfer controller the files
// subresource's dialer, whichever method it serves.
type guestDialer struct{ files.Dialer }

func (d guestDialer) Dial(ctx context.Context, w *vm.Wukong) (filetransfers.Session, error) {
	s, err := d.Dialer.Dial(ctx, w)
	if err != nil {
		return nil, err
	}
	return s, nil
}
