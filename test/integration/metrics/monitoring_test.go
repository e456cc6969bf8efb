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

package metrics

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/yaml"

	"github.com/novasphere/wukong/test/integration/framework"
	"github.com/novasphere/wukong/test/integration/standin"
)

// metricName finds the metric names in a PromQL expression: Wukong's own,
// the work queues' and the process's (the only ones the shipped dashboard
// and alerts use; a name of any other prefix fails the test below).
var metricName = regexp.MustCompile(`\b(?:wukong|workqueue|process|go|apiserver)_[a-z0-9_]+\b`)

// exprs returns every PromQL expression of the shipped dashboard and alerts.
func exprs(t *testing.T) map[string][]string {
	t.Helper()
	root, err := framework.RepoRoot()
	require.NoError(t, err)
	out := map[string][]string{}

	raw, err := os.ReadFile(filepath.Join(root, "artifacts/monitoring/dashboard.json"))
	require.NoError(t, err)
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	require.NoError(t, json.Unmarshal(raw, &dash), "dashboard.json is not JSON")
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			out["dashboard panel "+p.Title] = append(out["dashboard panel "+p.Title], tg.Expr)
		}
	}

	raw, err = os.ReadFile(filepath.Join(root, "artifacts/monitoring/prometheusrule.yaml"))
	require.NoError(t, err)
	var rule struct {
		Spec struct {
			Groups []struct {
				Rules []struct {
					Alert string `json:"alert"`
					Expr  string `json:"expr"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"spec"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &rule))
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			out["alert "+r.Alert] = append(out["alert "+r.Alert], r.Expr)
		}
	}
	return out
}

// TestDashboardAndAlertsUseExposedMetrics: every metric the shipped
// dashboard and alerts query is on a server's /metrics: this suite's after
// a transfer, or, for the controllers' work queues, a server running the
// controllers.
func TestDashboardAndAlertsUseExposedMetrics(t *testing.T) {
	all := exprs(t)
	require.GreaterOrEqual(t, len(all), 20, "the dashboard's panels and the alerts")

	// A transfer and a refusal, so that their series exist (series of
	// known label values exist from the start).
	ctx := context.Background()
	scraper := allowMetrics(t, cp, "metrics-dashboard")
	root, err := framework.RepoRoot()
	require.NoError(t, err)
	framework.RunKubectl(t, cp, cp.Admin, "apply", "-f", filepath.Join(root, "artifacts/deploy/30-rbac-roles.yaml"))
	ns := framework.CreateTestNamespace(t, cp, "metrics-dashboard")
	bob := framework.CreateTestUser(t, cp, "metrics-bob")
	framework.RunKubectl(t, cp, cp.Admin, "create", "rolebinding", "bob", "-n", ns, "--clusterrole=vm.novasphere.dev:edit", "--user="+bob.Name)
	g := newGuest(t, ns, "vm1", "127.0.9.3")
	code, _, err := send(bob, http.MethodPut, g.files("/f"), bytes.NewReader([]byte("hello")), 5)
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, code)
	code, _, err = send(bob, http.MethodGet, g.files("/missing"), nil, 0)
	require.NoError(t, err)
	require.Equal(t, http.StatusNotFound, code)

	names := map[string]bool{}
	collect := func(c *framework.ControlPlane, u *framework.User) {
		require.NoError(t, wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
			code, ss := scrape(t, c, u)
			for n := range ss.names() {
				names[n] = true
			}
			return code == http.StatusOK, nil
		}))
	}
	collect(cp, scraper)

	// The controllers run in the Lease holder of a server with --controller.
	ctl := framework.StartForTest(t, framework.Options{BeforeWukongAPIServer: standin.InstallKubeVirtCRDs, Controller: true})
	collect(ctl, allowMetrics(t, ctl, "metrics-controllers"))

	for where, es := range all {
		for _, e := range es {
			found := metricName.FindAllString(e, -1)
			assert.NotEmpty(t, found, "%s: %q names no metric", where, e)
			for _, n := range found {
				assert.True(t, names[n], "%s queries %s, which the server does not expose", where, n)
			}
		}
	}
	// The work queues the dashboard selects by name are the controllers'.
	_, ss := scrape(t, ctl, allowMetrics(t, ctl, "metrics-queues"))
	for _, q := range []string{"wukongs", "wukong-pushes", "wukong-snapshots"} {
		assert.True(t, hasSeries(ss, "workqueue_depth", "name", q), "no work queue %s", q)
	}
}

func hasSeries(ss samples, name string, labels ...string) bool {
	for _, s := range ss {
		if s.name != name {
			continue
		}
		ok := true
		for i := 0; i+1 < len(labels); i += 2 {
			ok = ok && s.labels[labels[i]] == labels[i+1]
		}
		if ok {
			return true
		}
	}
	return false
}

// TestMonitoringComponentBuilds: artifacts/monitoring renders with the
// base as a kustomize Component (what an overlay does), adding the
// ServiceMonitor, the alerts, the metrics RBAC and the dashboard as
// Grafana's sidecar finds it, and labelling the Service the ServiceMonitor
// selects; the base alone needs none of the Prometheus Operator's kinds.
func TestMonitoringComponentBuilds(t *testing.T) {
	ctx := context.Background()
	render := func(o framework.Overlay) map[string]*unstructured.Unstructured {
		t.Helper()
		out, err := cp.Kustomize(ctx, o)
		require.NoError(t, err)
		objs := map[string]*unstructured.Unstructured{}
		for _, d := range strings.Split(string(out), "\n---\n") {
			u := &unstructured.Unstructured{}
			require.NoError(t, yaml.Unmarshal([]byte(d), &u.Object))
			objs[u.GetKind()+"/"+u.GetName()] = u
		}
		return objs
	}
	base := render(framework.Overlay{Base: "artifacts/deploy"})
	for k, u := range base {
		assert.NotContains(t, u.GetAPIVersion(), "monitoring.coreos.com", "the base needs the Prometheus Operator for %s", k)
	}

	objs := render(framework.Overlay{Base: "artifacts/deploy", Components: []string{"artifacts/monitoring"}})
	var kinds []string
	for k := range objs {
		if _, ok := base[k]; !ok {
			kinds = append(kinds, k)
		}
	}
	sort.Strings(kinds)
	assert.Equal(t, []string{
		"ClusterRole/wukong-metrics-reader", "ClusterRoleBinding/wukong-metrics-reader", "ConfigMap/wukong-dashboard",
		"PrometheusRule/wukong-apiserver", "ServiceMonitor/wukong-apiserver",
	}, kinds)

	sm := objs["ServiceMonitor/wukong-apiserver"]
	sel, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
	svc := objs["Service/wukong-apiserver"]
	for k, v := range sel {
		assert.Equal(t, v, svc.GetLabels()[k], "the ServiceMonitor does not select the Service (%s)", k)
	}
	eps, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	require.Len(t, eps, 1)
	ep := eps[0].(map[string]any)
	assert.Equal(t, "https", ep["port"], "the Service's port name")
	assert.Equal(t, "/metrics", ep["path"])
	assert.Equal(t, "wukong-system", sm.GetNamespace())

	cm := objs["ConfigMap/wukong-dashboard"]
	assert.Equal(t, "1", cm.GetLabels()["grafana_dashboard"])
	data, _, _ := unstructured.NestedString(cm.Object, "data", "dashboard.json")
	root, err := framework.RepoRoot()
	require.NoError(t, err)
	file, err := os.ReadFile(filepath.Join(root, "artifacts/monitoring/dashboard.json"))
	require.NoError(t, err)
	assert.Equal(t, string(file), data)

	role := objs["ClusterRole/wukong-metrics-reader"]
	rules, _, _ := unstructured.NestedSlice(role.Object, "rules")
	assert.Equal(t, []any{map[string]any{"nonResourceURLs": []any{"/metrics"}, "verbs": []any{"get"}}}, rules, "only get on /metrics")
}
