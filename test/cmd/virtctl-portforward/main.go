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

// Command virtctl-portforward is `virtctl port-forward --stdio vmi/NAME PORT`
// for the benchmarks: the ProxyCommand of `virtctl scp`. It runs what
// virtctl runs (kubevirt/kubevirt pkg/virtctl/portforward/portforward.go
// startStdoutStream, kubecli's vmis.PortForward): kubevirt.io/client-go's
// AsyncSubresourceHelper opens the WebSocket to
// .../virtualmachineinstances/NAME/portforward/PORT through kube-apiserver
// with the kubeconfig's credentials, and its streamer copies stdin and
// stdout, as they are; only the command line is smaller.
package main

import (
	"flag"
	"fmt"
	"net/url"
	"os"
	"strconv"

	"k8s.io/client-go/tools/clientcmd"
	kvcorev1 "kubevirt.io/client-go/kubevirt/typed/core/v1"
)

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the user")
	namespace := flag.String("namespace", "default", "the VMI's namespace")
	flag.Parse()
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: virtctl-portforward --kubeconfig FILE --namespace NS VMI PORT")
		os.Exit(2)
	}
	port, err := strconv.Atoi(flag.Arg(1))
	if err != nil {
		fmt.Fprintln(os.Stderr, "port:", err)
		os.Exit(2)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	stream, err := kvcorev1.AsyncSubresourceHelper(cfg, "virtualmachineinstances", *namespace, flag.Arg(0), "portforward/"+strconv.Itoa(port), url.Values{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := stream.Stream(kvcorev1.StreamOptions{In: os.Stdin, Out: os.Stdout}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
