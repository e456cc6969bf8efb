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

package framework

import (
	"context"
	"fmt"
	"slices"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
)

// AggregateClusterRoles fills every ClusterRole that has an aggregationRule
// with the rules of the ClusterRoles its selectors match, as
// kube-controller-manager's clusterrole-aggregation controller does. There is
// no controller-manager here, so without this the built-in view, edit and
// admin roles grant nothing. Start runs it once; call it again after
// installing ClusterRoles labelled for aggregation (Wukong ships
// aggregate-to-view/edit/admin roles).
func (cp *ControlPlane) AggregateClusterRoles(ctx context.Context) error {
	kube, err := kubernetes.NewForConfig(cp.Admin.Config)
	if err != nil {
		return err
	}
	clusterRoles := kube.RbacV1().ClusterRoles()
	// Aggregation chains (edit is aggregated into admin), so repeat until
	// nothing changes; the built-in roles settle in two passes.
	const maxPasses = 10
	for range maxPasses {
		list, err := clusterRoles.List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		roles := list.Items
		slices.SortFunc(roles, func(a, b rbacv1.ClusterRole) int { return strings.Compare(a.Name, b.Name) })
		changed := false
		for i := range roles {
			role := &roles[i]
			if role.AggregationRule == nil {
				continue
			}
			rules, err := aggregatedRules(role, roles)
			if err != nil {
				return err
			}
			if equality.Semantic.DeepEqual(rules, role.Rules) {
				continue
			}
			role.Rules = rules
			updated, err := clusterRoles.Update(ctx, role, metav1.UpdateOptions{})
			if err != nil {
				return fmt.Errorf("aggregating ClusterRole %s: %w", role.Name, err)
			}
			*role = *updated
			changed = true
		}
		if !changed {
			return nil
		}
	}
	return fmt.Errorf("ClusterRole aggregation did not settle in %d passes", maxPasses)
}

// aggregatedRules collects, without duplicates and in name order, the rules of
// the roles that role's selectors match (role itself excluded).
func aggregatedRules(role *rbacv1.ClusterRole, roles []rbacv1.ClusterRole) ([]rbacv1.PolicyRule, error) {
	rules := []rbacv1.PolicyRule{}
	for _, s := range role.AggregationRule.ClusterRoleSelectors {
		selector, err := metav1.LabelSelectorAsSelector(&s)
		if err != nil {
			return nil, fmt.Errorf("ClusterRole %s: %w", role.Name, err)
		}
		for _, r := range roles {
			if r.Name == role.Name || !selector.Matches(labels.Set(r.Labels)) {
				continue
			}
			for _, rule := range r.Rules {
				if !slices.ContainsFunc(rules, func(have rbacv1.PolicyRule) bool { return equality.Semantic.DeepEqual(have, rule) }) {
					rules = append(rules, rule)
				}
			}
		}
	}
	return rules, nil
}
