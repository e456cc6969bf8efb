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

package wukong

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/novasphere/wukong/pkg/apis/vm"
)

// TestTableShowsPhaseAndRunStrategy: PHASE by default, RUN STRATEGY with
// -o wide only (priority 1).
func TestTableShowsPhaseAndRunStrategy(t *testing.T) {
	list := &vm.WukongList{Items: []vm.Wukong{
		{ObjectMeta: metav1.ObjectMeta{Name: "a"}, Spec: vm.WukongSpec{CPU: 1, RunStrategy: vm.RunStrategyHalted}, Status: vm.WukongStatus{Phase: vm.WukongPhaseStopped}},
		{ObjectMeta: metav1.ObjectMeta{Name: "b"}, Status: vm.WukongStatus{Phase: vm.WukongPhaseRunning, Address: "10.0.0.5"}},
	}}
	tbl, err := tableConvertor.ConvertToTable(context.Background(), list, nil)
	require.NoError(t, err)
	var names []string
	for _, c := range tbl.ColumnDefinitions {
		if c.Priority == 0 {
			names = append(names, c.Name)
		}
	}
	assert.Equal(t, []string{"Name", "CPU", "Memory", "Phase", "Address", "Age"}, names)
	require.Equal(t, "Run Strategy", tbl.ColumnDefinitions[5].Name)
	assert.Equal(t, int32(1), tbl.ColumnDefinitions[5].Priority)
	require.Len(t, tbl.Rows, 2)
	assert.Equal(t, []any{"a", int64(1), "<none>", "Stopped", "<none>", "Halted"}, tbl.Rows[0].Cells[:6])
	assert.Equal(t, []any{"b", int64(0), "<none>", "Running", "10.0.0.5", "Always"}, tbl.Rows[1].Cells[:6])
}
