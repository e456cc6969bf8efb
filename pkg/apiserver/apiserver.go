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

// Package apiserver assembles wukong-apiserver: Config → Complete → New,
// installing the vm.novasphere.dev group with its storage and subresources.
package apiserver

import (
	"net/http"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/sets"
	genericapiserver "k8s.io/apiserver/pkg/server"
	genericfilters "k8s.io/apiserver/pkg/server/filters"
	"k8s.io/client-go/rest"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/apis/vm/install"
	"github.com/novasphere/wukong/pkg/controller"
	"github.com/novasphere/wukong/pkg/egress"
	"github.com/novasphere/wukong/pkg/subresource/stream"
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
	// DeclaredTransferTTL ends Failed (Expired) a declared record nobody ran.
	DeclaredTransferTTL time.Duration
	// SSHDialTimeout bounds reaching a guest's SSH server.
	SSHDialTimeout time.Duration
	// MaxListEntries, MaxArchiveEntries and MaxArchiveHeaderBytes bound
	// what one listing or tar holds in memory; 0: no limit.
	MaxListEntries        int
	MaxArchiveEntries     int64
	MaxArchiveHeaderBytes int64
	// UploadTempMaxAge: older temporary upload files in guests are swept.
	UploadTempMaxAge time.Duration
	// CDIUploadProxyURL and CDIUploadProxyCA override where the CDIConfig
	// says CDI's upload proxy is.
	CDIUploadProxyURL string
	CDIUploadProxyCA  []byte
	// StreamLimits bound the concurrent streams of this server;
	// StreamIdleTimeout cuts a stream in which no byte moved for so long.
	StreamLimits      stream.Limits
	StreamIdleTimeout time.Duration
	// ExportSnapshotTimeout bounds the wait for a snapshot of a running VM
	// that disks/export and pushes read; ExportMaxTTL bounds the ttl a
	// disks/export request may ask for.
	ExportSnapshotTimeout time.Duration
	ExportMaxTTL          time.Duration
	// Controller runs the VM controller in the replica holding
	// ControllerLock (the record collector runs there either way).
	Controller bool
	// AgentDiskImage is the wukong-agent containerDisk (--agent-disk-image).
	AgentDiskImage string
	// TransferRecordsPerUser and TransferRecordsPerNamespace are how many
	// transfers a user and a namespace may start a minute (0: no limit);
	// TransferRecordsKept is the most finished records a namespace keeps.
	TransferRecordsPerUser      int
	TransferRecordsPerNamespace int
	TransferRecordsKept         int
	ControllerLock              controller.LeaderOptions
	// PushEgress says which addresses pushes may connect to, and which
	// literal addresses a Wukong's exportTarget may not name.
	PushEgress *egress.Policy
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

// New returns a WukongServer with the API group installed and, when
// configured, the controllers.
func (c completedConfig) New() (*WukongServer, error) {
	genericServer, err := c.GenericConfig.New("wukong-apiserver", genericapiserver.NewEmptyDelegate())
	if err != nil {
		return nil, err
	}
	s := &WukongServer{GenericAPIServer: genericServer}
	if err := genericServer.AddReadyzChecks(frontProxyCACheck(c.GenericConfig.Authentication.RequestHeaderConfig)); err != nil {
		return nil, err
	}
	cl, err := c.newClients()
	if err != nil {
		return nil, err
	}
	if cl.events, err = c.newEvents(genericServer); err != nil {
		return nil, err
	}
	storage, err := c.newStorage(genericServer, cl)
	if err != nil {
		return nil, err
	}
	apiGroupInfo := genericapiserver.NewDefaultAPIGroupInfo(vm.GroupName, Scheme, ParameterCodec, Codecs)
	apiGroupInfo.VersionedResourcesStorageMap["v1alpha1"] = storage.v1alpha1
	if err := genericServer.InstallAPIGroup(&apiGroupInfo); err != nil {
		return nil, err
	}
	// The Lease is held with or without the controllers: the record
	// collector runs in its holder.
	if err := c.addControllers(genericServer, cl, storage); err != nil {
		return nil, err
	}
	return s, nil
}
