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

package guest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/transfer/agent"
)

var (
	// ErrAgentNotReady means the agent's Secret is not there yet: the
	// controller makes it once method http is enabled.
	ErrAgentNotReady = errors.New("the wukong-agent is not set up yet")
	// ErrAgentSecretNotOwned means a Secret of the agent's name exists that
	// the Wukong does not control: its token and certificate are not used.
	ErrAgentSecretNotOwned = errors.New("the agent's Secret is not the Wukong's own")
)

// AgentTarget is how to reach a Wukong's wukong-agent (method http).
type AgentTarget struct {
	// Address is host:port: the VMI's address and httpConfig.port.
	Address string
	// RunningSince is when the VMI started running; an agent that does not
	// answer soon after may still be on its way up.
	RunningSince time.Time
	// Token and CAPEM come from the Secret; ServerName is what the agent's
	// certificate must carry.
	Token      string
	CAPEM      []byte
	ServerName string
	// Secret names the Secret and SecretVersion its resourceVersion: a
	// rotated Secret is a new target.
	Secret, SecretVersion string
}

// AgentTarget returns how to reach w's agent: the address of the Wukong's
// own VMI and the token and certificate of the Secret agent.SecretName,
// which the Wukong must control (the controller made it).
func (l *Locator) AgentTarget(ctx context.Context, w *vm.Wukong) (AgentTarget, error) {
	ft := w.Spec.FileTransfer
	if ft == nil || ft.HTTPConfig == nil || !ft.HTTPConfig.Enabled {
		return AgentTarget{}, fmt.Errorf("%w: method http needs spec.fileTransfer.httpConfig.enabled", ErrMisconfigured)
	}
	port := agent.DefaultPort
	if ft.HTTPConfig.Port != nil {
		port = int(*ft.HTTPConfig.Port)
	}
	// As for ssh, the Secret is read while the VMI and its VM are.
	type addrRead struct {
		addr  string
		since time.Time
		err   error
	}
	addrc := make(chan addrRead, 1)
	go func() {
		addr, since, err := l.address(ctx, w)
		addrc <- addrRead{addr, since, err}
	}()
	name := agent.SecretName(w.Name)
	sec, err := l.Secrets.Secrets(w.Namespace).Get(ctx, name, metav1.GetOptions{})
	ar := <-addrc
	if ar.err != nil {
		// An instance missing or not running says more than a Secret
		// missing (which the controller may not have made yet).
		return AgentTarget{}, ar.err
	}
	if apierrors.IsNotFound(err) {
		return AgentTarget{}, fmt.Errorf("%w: its Secret %s does not exist yet (the controller makes it)", ErrAgentNotReady, name)
	}
	if err != nil {
		return AgentTarget{}, fmt.Errorf("reading the agent's Secret: %w", err)
	}
	if !metav1.IsControlledBy(sec, w) {
		return AgentTarget{}, fmt.Errorf("%w: the Secret %s is not controlled by the Wukong %s, so its token and certificate are not used; delete it and the controller makes the Wukong's own", ErrAgentSecretNotOwned, name, w.Name)
	}
	// The agent ignores whitespace around its token file; so does its client.
	token, ca := strings.TrimSpace(string(sec.Data[agent.SecretKeyToken])), sec.Data[agent.SecretKeyTLSCert]
	if token == "" || len(ca) == 0 {
		return AgentTarget{}, fmt.Errorf("%w: its Secret %s has no %s or %s yet (the controller fills them)", ErrAgentNotReady, name, agent.SecretKeyToken, agent.SecretKeyTLSCert)
	}
	return AgentTarget{
		Address:       net.JoinHostPort(ar.addr, strconv.Itoa(port)),
		RunningSince:  ar.since,
		Token:         token,
		CAPEM:         ca,
		ServerName:    agent.ServerName(w.Namespace, w.Name),
		Secret:        name,
		SecretVersion: sec.ResourceVersion,
	}, nil
}
