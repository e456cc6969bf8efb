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

// Package server holds wukong-apiserver's command: options (the generic
// RecommendedOptions plus Wukong's own) → Complete → Validate → Config → Run.
package server

import (
	"context"
	"fmt"
	"io"
	"net"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apiserver/pkg/endpoints/openapi"
	genericapiserver "k8s.io/apiserver/pkg/server"
	genericoptions "k8s.io/apiserver/pkg/server/options"
	"k8s.io/apiserver/pkg/util/compatibility"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	basecompatibility "k8s.io/component-base/compatibility"
	netutils "k8s.io/utils/net"

	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/apiserver"
	generatedopenapi "github.com/novasphere/wukong/pkg/generated/openapi"
	"github.com/novasphere/wukong/pkg/version"
)

// DefaultEtcdPathPrefix keeps Wukong's objects apart from kube-apiserver's
// when both share one etcd.
const DefaultEtcdPathPrefix = "/registry/vm.novasphere.dev"

// Options are wukong-apiserver's command-line options.
type Options struct {
	RecommendedOptions *genericoptions.RecommendedOptions
	Wukong             *WukongOptions
	// ComponentGlobalsRegistry holds the effective version and feature gates.
	ComponentGlobalsRegistry basecompatibility.ComponentGlobalsRegistry

	StdOut io.Writer
	StdErr io.Writer
}

// NewOptions returns options with Wukong's defaults.
func NewOptions(out, errOut io.Writer) *Options {
	o := &Options{
		RecommendedOptions: genericoptions.NewRecommendedOptions(
			DefaultEtcdPathPrefix,
			apiserver.Codecs.LegacyCodec(v1alpha1.SchemeGroupVersion),
		),
		Wukong:                   NewWukongOptions(),
		ComponentGlobalsRegistry: compatibility.DefaultComponentGlobalsRegistry,
		StdOut:                   out,
		StdErr:                   errOut,
	}
	o.RecommendedOptions.Etcd.StorageConfig.EncodeVersioner = runtime.NewMultiGroupVersioner(
		v1alpha1.SchemeGroupVersion, schema.GroupKind{Group: v1alpha1.GroupName})
	// HTTP/1.1 only, unless --disable-http2-serving=false: the aggregator
	// then proxies each request on its own connection instead of
	// multiplexing file bodies in 16 KiB HTTP/2 frames over one. Measured
	// (make bench, 1 GiB through kube-apiserver): kube-apiserver spent about
	// 35% and wukong-apiserver 15-30% less CPU per byte, and kubectl wukong
	// cp ran 28-45% faster. Clients still speak HTTP/2 to kube-apiserver.
	o.RecommendedOptions.SecureServing.DisableHTTP2Serving = true
	return o
}

// NewCommand returns the wukong-apiserver command.
func NewCommand(ctx context.Context, o *Options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "wukong-apiserver",
		Short: "Serve vm.novasphere.dev: KubeVirt VMs with a data plane in the Kubernetes API",
		// cobra adds --version; it prints before any flag is validated.
		Version: version.Get().String(),
		PersistentPreRunE: func(*cobra.Command, []string) error {
			return o.ComponentGlobalsRegistry.Set()
		},
		RunE: func(c *cobra.Command, args []string) error {
			if err := o.Complete(); err != nil {
				return err
			}
			if err := o.Validate(args); err != nil {
				return err
			}
			return o.Run(c.Context())
		},
	}
	cmd.SetContext(ctx)
	cmd.SetVersionTemplate("{{.Name}} {{.Version}}\n")

	flags := cmd.Flags()
	o.RecommendedOptions.AddFlags(flags)
	o.Wukong.AddFlags(flags)
	_, _ = o.ComponentGlobalsRegistry.ComponentGlobalsOrRegister(basecompatibility.DefaultKubeComponent,
		compatibility.DefaultBuildEffectiveVersion(), utilfeature.DefaultMutableFeatureGate)
	o.ComponentGlobalsRegistry.AddFlags(flags)
	return cmd
}

// Complete fills in what the flags left unset.
func (o *Options) Complete() error { return nil }

// Validate checks the options.
func (o *Options) Validate(args []string) error {
	var errs []error
	if len(args) > 0 {
		errs = append(errs, fmt.Errorf("no arguments are accepted, got %q", args))
	}
	errs = append(errs, o.RecommendedOptions.Validate()...)
	errs = append(errs, o.Wukong.Validate()...)
	errs = append(errs, o.ComponentGlobalsRegistry.Validate()...)
	return utilerrors.NewAggregate(errs)
}

// Config builds the server configuration from the options.
func (o *Options) Config() (*apiserver.Config, error) {
	if err := o.RecommendedOptions.SecureServing.MaybeDefaultWithSelfSignedCerts(
		"localhost", nil, []net.IP{netutils.ParseIPSloppy("127.0.0.1")}); err != nil {
		return nil, fmt.Errorf("creating self-signed certificates: %w", err)
	}

	serverConfig := genericapiserver.NewRecommendedConfig(apiserver.Codecs)
	namer := openapi.NewDefinitionNamer(apiserver.Scheme)
	serverConfig.OpenAPIConfig = genericapiserver.DefaultOpenAPIConfig(generatedopenapi.GetOpenAPIDefinitions, namer)
	serverConfig.OpenAPIConfig.Info.Title = "Wukong"
	serverConfig.OpenAPIConfig.Info.Version = "v1alpha1"
	serverConfig.OpenAPIV3Config = genericapiserver.DefaultOpenAPIV3Config(generatedopenapi.GetOpenAPIDefinitions, namer)
	serverConfig.OpenAPIV3Config.Info.Title = "Wukong"
	serverConfig.OpenAPIV3Config.Info.Version = "v1alpha1"
	serverConfig.FeatureGate = o.ComponentGlobalsRegistry.FeatureGateFor(basecompatibility.DefaultKubeComponent)
	serverConfig.EffectiveVersion = o.ComponentGlobalsRegistry.EffectiveVersionFor(basecompatibility.DefaultKubeComponent)

	if err := o.RecommendedOptions.ApplyTo(serverConfig); err != nil {
		return nil, err
	}
	config := &apiserver.Config{GenericConfig: serverConfig}
	if err := o.Wukong.ApplyTo(&config.ExtraConfig); err != nil {
		return nil, err
	}
	return config, nil
}

// Run starts the server and blocks until ctx is done.
func (o *Options) Run(ctx context.Context) error {
	config, err := o.Config()
	if err != nil {
		return err
	}
	server, err := config.Complete().New()
	if err != nil {
		return err
	}
	server.GenericAPIServer.AddPostStartHookOrDie("start-wukong-informers", func(hookCtx genericapiserver.PostStartHookContext) error {
		config.GenericConfig.SharedInformerFactory.Start(hookCtx.Done())
		return nil
	})
	return server.GenericAPIServer.PrepareRun().RunWithContext(ctx)
}
