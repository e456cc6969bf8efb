// Package apiserver assembles wukong-apiserver: Config → Complete → New,
// installing the vm.novasphere.dev group with its storage and subresources.
package apiserver

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/sets"
	apirest "k8s.io/apiserver/pkg/registry/rest"
	genericapiserver "k8s.io/apiserver/pkg/server"
	genericfilters "k8s.io/apiserver/pkg/server/filters"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	cdiclient "kubevirt.io/client-go/containerizeddataimporter"
	kubevirtclient "kubevirt.io/client-go/kubevirt"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/apis/vm/install"
	"github.com/novasphere/wukong/pkg/controller"
	"github.com/novasphere/wukong/pkg/controller/exporttarget"
	"github.com/novasphere/wukong/pkg/controller/virtualmachine"
	"github.com/novasphere/wukong/pkg/registry/vm/disk"
	"github.com/novasphere/wukong/pkg/registry/vm/wukong"
	"github.com/novasphere/wukong/pkg/registry/vm/wukongfiletransfer"
	"github.com/novasphere/wukong/pkg/subresource/disks"
	"github.com/novasphere/wukong/pkg/subresource/files"
	cdiupload "github.com/novasphere/wukong/pkg/transfer/cdi"
	"github.com/novasphere/wukong/pkg/transfer/export"
	"github.com/novasphere/wukong/pkg/transfer/guest"
	"github.com/novasphere/wukong/pkg/transfer/ssh"
)

var (
	// Scheme knows the API's internal and versioned types.
	Scheme = runtime.NewScheme()
	// Codecs serialises the API's types.
	Codecs = serializer.NewCodecFactory(Scheme)
	// ParameterCodec decodes query parameters into options kinds, including
	// WukongFileOptions, with the scheme's generated conversions.
	ParameterCodec = runtime.NewParameterCodec(Scheme)
)

// StreamingSubresources carry bytes rather than objects. They are long-running
// for this server's own filters: its request timeout must not cut them and its
// max-in-flight limit must not count them.
var StreamingSubresources = sets.NewString("files", "export", "upload")

func init() {
	install.Install(Scheme)

	// Options types (ListOptions, GetOptions...) live in the unversioned v1 group.
	metav1.AddToGroupVersion(Scheme, schema.GroupVersion{Version: "v1"})
	unversioned := schema.GroupVersion{Group: "", Version: "v1"}
	Scheme.AddUnversionedTypes(unversioned,
		&metav1.Status{},
		&metav1.APIVersions{},
		&metav1.APIGroupList{},
		&metav1.APIGroup{},
		&metav1.APIResourceList{},
	)
}

// LongRunningFunc treats watches and the streaming subresources as long-running.
var LongRunningFunc = genericfilters.BasicLongRunningRequestCheck(sets.NewString("watch"), StreamingSubresources)

// ExtraConfig holds Wukong's own configuration.
type ExtraConfig struct {
	// MaxFileSize caps one file or archive moved through wukongs/files; 0 means no cap.
	MaxFileSize int64
	// TransferRecordRetention is how long finished transfer records are kept.
	TransferRecordRetention time.Duration
	// TransferStaleAfter ends Failed a Transferring record not updated for this long.
	TransferStaleAfter time.Duration
	// SSHDialTimeout bounds reaching a guest's SSH server.
	SSHDialTimeout time.Duration
	// CDIUploadProxyURL and CDIUploadProxyCA override where the CDIConfig
	// says CDI's upload proxy is.
	CDIUploadProxyURL string
	CDIUploadProxyCA  []byte
	// Controller runs the VM controller in the replica holding ControllerLock.
	Controller     bool
	ControllerLock controller.LeaderOptions
}

// Config is the configuration of wukong-apiserver.
type Config struct {
	GenericConfig *genericapiserver.RecommendedConfig
	ExtraConfig   ExtraConfig
}

// WukongServer is a running wukong-apiserver.
type WukongServer struct {
	GenericAPIServer *genericapiserver.GenericAPIServer
}

type completedConfig struct {
	GenericConfig genericapiserver.CompletedConfig
	ExtraConfig   *ExtraConfig
	// ClientConfig reaches kube-apiserver (KubeVirt, CDI, Secrets) as the server itself.
	ClientConfig *rest.Config
}

// CompletedConfig is a Config with every default filled in.
type CompletedConfig struct {
	*completedConfig
}

// Complete fills in the fields not set that are required to have valid data.
func (cfg *Config) Complete() CompletedConfig {
	cfg.GenericConfig.LongRunningFunc = LongRunningFunc
	cfg.GenericConfig.BuildHandlerChainFunc = func(h http.Handler, c *genericapiserver.Config) http.Handler {
		return withFrontProxyCA(genericapiserver.DefaultBuildHandlerChain(h, c), c.Authentication.RequestHeaderConfig)
	}
	return CompletedConfig{&completedConfig{
		GenericConfig: cfg.GenericConfig.Complete(),
		ExtraConfig:   &cfg.ExtraConfig,
		ClientConfig:  cfg.GenericConfig.ClientConfig,
	}}
}

// New returns a WukongServer with the API group installed.
func (c completedConfig) New() (*WukongServer, error) {
	genericServer, err := c.GenericConfig.New("wukong-apiserver", genericapiserver.NewEmptyDelegate())
	if err != nil {
		return nil, err
	}
	s := &WukongServer{GenericAPIServer: genericServer}
	if err := genericServer.AddReadyzChecks(frontProxyCACheck(c.GenericConfig.Authentication.RequestHeaderConfig)); err != nil {
		return nil, err
	}

	if c.ClientConfig == nil {
		return nil, fmt.Errorf("wukong-apiserver needs a kubeconfig for the core API (--kubeconfig, or run in a cluster)")
	}
	kube, err := kubernetes.NewForConfig(c.ClientConfig)
	if err != nil {
		return nil, err
	}
	wukongs, wukongStatus, err := wukong.NewREST(Scheme, c.GenericConfig.RESTOptionsGetter, &wukong.References{Core: kube.CoreV1(), Authorizer: c.GenericConfig.Authorization.Authorizer})
	if err != nil {
		return nil, err
	}
	transfers, transferStatus, err := wukongfiletransfer.NewREST(Scheme, c.GenericConfig.RESTOptionsGetter)
	if err != nil {
		return nil, err
	}
	kubevirt, err := kubevirtclient.NewForConfig(c.ClientConfig)
	if err != nil {
		return nil, err
	}
	pool := ssh.NewPool(ssh.PoolOptions{DialTimeout: c.ExtraConfig.SSHDialTimeout})
	s.GenericAPIServer.AddPreShutdownHookOrDie("close-ssh-pool", func() error { return pool.Close() })
	recorder := wukongfiletransfer.NewRecorder(transfers, transferStatus)
	recorder.Heartbeat = c.ExtraConfig.TransferStaleAfter / 4
	statusWriter := wukong.StatusWriter{Status: wukongStatus}
	authz := c.GenericConfig.Authorization.Authorizer
	fileStreams := files.NewREST(files.Deps{
		Wukongs:     wukongs,
		Dialer:      files.NewSSHDialer(&guest.Locator{VMIs: kubevirt.KubevirtV1(), Secrets: kube.CoreV1()}, pool, statusWriter),
		Recorder:    recorder,
		Authorizer:  authz,
		MaxFileSize: c.ExtraConfig.MaxFileSize,
	})
	diskStore := disk.NewREST(wukongs)
	exporter := &export.Exporter{Exports: kubevirt.ExportV1beta1(), Secrets: kube.CoreV1(), TTL: time.Hour}
	diskExport := disks.NewExportREST(disks.ExportDeps{
		Disks: diskStore, Wukongs: wukongs, Exporter: exporter, Recorder: recorder, Status: statusWriter,
	})
	collector := wukongfiletransfer.NewCollector(transfers, transferStatus, c.ExtraConfig.TransferRecordRetention, c.ExtraConfig.TransferStaleAfter)
	collector.Abandoned = func(ctx context.Context, rec *vm.WukongFileTransfer) {
		fileStreams.RemoveAbandonedChunks(ctx, rec)
		diskExport.AbandonedExport(ctx, rec)
	}
	s.GenericAPIServer.AddPostStartHookOrDie("wukong-transfer-record-collector", func(ctx genericapiserver.PostStartHookContext) error {
		go collector.Run(ctx)
		return nil
	})

	if c.ExtraConfig.Controller {
		// After the server is ready: the controller reads Wukongs through
		// this server's own API (the loopback client).
		clusterConfig, lock := c.ClientConfig, c.ExtraConfig.ControllerLock
		// On shutdown, pushes in flight are cut first and record how they
		// ended (Pending, for the next leader) while the server still runs.
		drain, drained := context.WithCancel(context.Background())
		var pushing sync.WaitGroup
		s.GenericAPIServer.AddPreShutdownHookOrDie("wukong-push-drain", func() error {
			drained()
			done := make(chan struct{})
			go func() { pushing.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
			}
			return nil
		})
		s.GenericAPIServer.AddPostStartHookOrDie("wukong-vm-controller", func(hook genericapiserver.PostStartHookContext) error {
			loopback := hook.LoopbackClientConfig
			go controller.RunWhileLeading(hook, kube, lock, func(ctx context.Context) {
				ctrl, err := virtualmachine.New(loopback, clusterConfig, kube.CoreV1())
				if err != nil {
					klog.ErrorS(err, "Starting the VM controller")
					return
				}
				pushes, err := exporttarget.New(loopback, exporttarget.Deps{
					Exporter: exporter, Recorder: recorder, Volumes: wukong.StatusWriter{Status: wukongStatus}, Core: kube.CoreV1(),
				})
				if err != nil {
					klog.ErrorS(err, "Starting the push controller")
					return
				}
				pushCtx, stop := context.WithCancel(ctx)
				defer stop()
				defer context.AfterFunc(drain, stop)()
				pushing.Go(func() { pushes.Run(pushCtx, 2) })
				ctrl.Run(ctx, 2)
			})
			return nil
		})
	}

	cdi, err := cdiclient.NewForConfig(c.ClientConfig)
	if err != nil {
		return nil, err
	}
	uploader := &cdiupload.Uploader{
		DataVolumes: cdi.CdiV1beta1(), Configs: cdi.CdiV1beta1(), Tokens: cdi.UploadV1beta1(),
		ProxyURL: c.ExtraConfig.CDIUploadProxyURL, ProxyCA: c.ExtraConfig.CDIUploadProxyCA,
	}
	apiGroupInfo := genericapiserver.NewDefaultAPIGroupInfo(vm.GroupName, Scheme, ParameterCodec, Codecs)
	apiGroupInfo.VersionedResourcesStorageMap["v1alpha1"] = map[string]apirest.Storage{
		"wukongs":                    wukongs,
		"wukongs/status":             wukongStatus,
		"wukongs/files":              fileStreams,
		"disks":                      diskStore,
		"disks/export":               diskExport,
		"disks/upload":               disks.NewUploadREST(disks.UploadDeps{Disks: diskStore, Uploader: uploader, Recorder: recorder, Authorizer: authz}),
		"wukongfiletransfers":        transfers,
		"wukongfiletransfers/status": transferStatus,
	}
	if err := s.GenericAPIServer.InstallAPIGroup(&apiGroupInfo); err != nil {
		return nil, err
	}
	return s, nil
}
