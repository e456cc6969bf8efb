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

// Package disk serves disks: one Disk per disk of every Wukong, derived from
// the Wukong (spec.disks and status.volumes) and never stored, in the manner
// of metrics-server's read-only resources. Its watch is the Wukongs' watch,
// turned into Disk events.
package disk

import (
	"context"
	"fmt"
	"sort"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/apiserver/pkg/registry/rest"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/registry/table"
)

// Wukongs is what disks need of the wukongs storage.
type Wukongs interface {
	rest.Getter
	rest.Lister
	rest.Watcher
}

// REST is the read-only, derived storage of disks.
type REST struct {
	wukongs Wukongs
}

var (
	_ rest.Storage              = &REST{}
	_ rest.Getter               = &REST{}
	_ rest.Lister               = &REST{}
	_ rest.Watcher              = &REST{}
	_ rest.Scoper               = &REST{}
	_ rest.SingularNameProvider = &REST{}
)

// NewREST derives disks from wukongs.
func NewREST(wukongs Wukongs) *REST { return &REST{wukongs: wukongs} }

func (*REST) New() runtime.Object     { return &vm.Disk{} }
func (*REST) NewList() runtime.Object { return &vm.DiskList{} }
func (*REST) Destroy()                {}
func (*REST) NamespaceScoped() bool   { return true }
func (*REST) GetSingularName() string { return "disk" }
func (*REST) ShortNames() []string    { return []string{"dk"} }
func (*REST) ConvertToTable(ctx context.Context, obj, opts runtime.Object) (*metav1.Table, error) {
	return tableConvertor.ConvertToTable(ctx, obj, opts)
}

// Get finds the disk a name <wukong>-<disk> stands for.
func (r *REST) Get(ctx context.Context, name string, _ *metav1.GetOptions) (runtime.Object, error) {
	d, _, err := r.Find(ctx, name)
	if err != nil {
		return nil, err
	}
	return d, nil
}

// Find returns the disk a name <wukong>-<disk> stands for and the Wukong it
// was derived from (which the streaming subresources need too). Both parts
// may hold dashes, so every split is tried.
func (r *REST) Find(ctx context.Context, name string) (*vm.Disk, *vm.Wukong, error) {
	for i := strings.IndexByte(name, '-'); i > 0; i = next(name, i) {
		obj, err := r.wukongs.Get(ctx, name[:i], &metav1.GetOptions{})
		if err != nil {
			continue
		}
		w, ok := obj.(*vm.Wukong)
		if !ok {
			return nil, nil, apierrors.NewInternalError(fmt.Errorf("wukongs storage returned %T", obj))
		}
		for _, d := range disksOf(w) {
			if d.Name == name {
				return d, w, nil
			}
		}
	}
	return nil, nil, apierrors.NewNotFound(vm.Resource("disks"), name)
}

func next(s string, i int) int {
	j := strings.IndexByte(s[i+1:], '-')
	if j < 0 {
		return -1
	}
	return i + 1 + j
}

// List lists the disks of the Wukongs in the namespace; the label selector
// applies to the disks' labels (their Wukong's, plus vm.novasphere.dev/wukong).
func (r *REST) List(ctx context.Context, opts *metainternalversion.ListOptions) (runtime.Object, error) {
	sel, err := labelSelector(opts)
	if err != nil {
		return nil, err
	}
	wopts := &metainternalversion.ListOptions{}
	if opts != nil {
		wopts.ResourceVersion, wopts.ResourceVersionMatch = opts.ResourceVersion, opts.ResourceVersionMatch
	}
	obj, err := r.wukongs.List(ctx, wopts)
	if err != nil {
		return nil, err
	}
	wl, ok := obj.(*vm.WukongList)
	if !ok {
		return nil, apierrors.NewInternalError(fmt.Errorf("wukongs storage listed %T", obj))
	}
	out := &vm.DiskList{ListMeta: metav1.ListMeta{ResourceVersion: wl.ResourceVersion}}
	for i := range wl.Items {
		for _, d := range disksOf(&wl.Items[i]) {
			if sel.Matches(labels.Set(d.Labels)) {
				out.Items = append(out.Items, *d)
			}
		}
	}
	return out, nil
}

// labelSelector is the selector of a list or watch of disks; they have no
// fields to select by beyond what labels say.
func labelSelector(opts *metainternalversion.ListOptions) (labels.Selector, error) {
	if opts == nil {
		return labels.Everything(), nil
	}
	if opts.FieldSelector != nil && !opts.FieldSelector.Empty() {
		return nil, apierrors.NewBadRequest("disks take label selectors only (vm.novasphere.dev/wukong=<name> selects one Wukong's)")
	}
	if opts.LabelSelector == nil {
		return labels.Everything(), nil
	}
	return opts.LabelSelector, nil
}

// Watch follows the Wukongs and sends an event for each disk that an event
// of its Wukong added, changed or removed.
func (r *REST) Watch(ctx context.Context, opts *metainternalversion.ListOptions) (watch.Interface, error) {
	sel, err := labelSelector(opts)
	if err != nil {
		return nil, err
	}
	wopts := &metainternalversion.ListOptions{Watch: true, AllowWatchBookmarks: opts != nil && opts.AllowWatchBookmarks}
	if opts != nil {
		wopts.ResourceVersion, wopts.ResourceVersionMatch, wopts.SendInitialEvents = opts.ResourceVersion, opts.ResourceVersionMatch, opts.SendInitialEvents
	}
	in, err := r.wukongs.Watch(ctx, wopts)
	if err != nil {
		return nil, err
	}
	out := make(chan watch.Event)
	pw := watch.NewProxyWatcher(out)
	go relay(in, pw, out, &diskEvents{sel: sel, seen: map[string]map[string]bool{}})
	return pw, nil
}

// relay sends out what t makes of each event of in until either side stops.
func relay(in watch.Interface, pw *watch.ProxyWatcher, out chan<- watch.Event, t *diskEvents) {
	defer close(out)
	defer in.Stop()
	for {
		var ev watch.Event
		var ok bool
		select {
		case ev, ok = <-in.ResultChan():
		case <-pw.StopChan():
			return
		}
		if !ok {
			return
		}
		for _, de := range t.translate(ev) {
			select {
			case out <- de:
			case <-pw.StopChan():
				return
			}
		}
	}
}

// diskEvents turns the events of a watch of Wukongs into events of their
// disks: Added the first time a disk is seen, Modified after, Deleted when
// its Wukong goes or no longer has it (or it stops matching sel).
type diskEvents struct {
	sel labels.Selector
	// seen is, by Wukong (namespace/name), the disks sent so far.
	seen map[string]map[string]bool
}

func (t *diskEvents) translate(ev watch.Event) []watch.Event {
	obj := ev.Object
	// The watch cache wraps what it sends, for serialising once.
	if co, ok := obj.(runtime.CacheableObject); ok {
		obj = co.GetObject()
	}
	w, isWukong := obj.(*vm.Wukong)
	switch {
	case ev.Type == watch.Bookmark && isWukong:
		return []watch.Event{{Type: watch.Bookmark, Object: &vm.Disk{ObjectMeta: metav1.ObjectMeta{ResourceVersion: w.ResourceVersion, Annotations: w.Annotations}}}}
	case !isWukong:
		return []watch.Event{ev} // an error Status
	}
	var events []watch.Event
	key := w.Namespace + "/" + w.Name
	now := map[string]bool{}
	if ev.Type != watch.Deleted {
		for _, d := range disksOf(w) {
			if !t.sel.Matches(labels.Set(d.Labels)) {
				continue
			}
			now[d.Name] = true
			typ := watch.Modified
			if !t.seen[key][d.Name] {
				typ = watch.Added
			}
			events = append(events, watch.Event{Type: typ, Object: d})
		}
	}
	gone := make([]string, 0, len(t.seen[key]))
	for name := range t.seen[key] {
		if !now[name] {
			gone = append(gone, name)
		}
	}
	sort.Strings(gone)
	for _, name := range gone {
		events = append(events, watch.Event{Type: watch.Deleted, Object: &vm.Disk{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: w.Namespace, ResourceVersion: w.ResourceVersion}}})
	}
	if len(now) == 0 {
		delete(t.seen, key)
	} else {
		t.seen[key] = now
	}
	return events
}

// disksOf derives the Disks of a Wukong.
func disksOf(w *vm.Wukong) []*vm.Disk {
	out := make([]*vm.Disk, 0, len(w.Spec.Disks))
	for _, d := range w.Spec.Disks {
		claim := vm.DiskName(w.Name, d.Name)
		l := map[string]string{}
		for k, v := range w.Labels {
			l[k] = v
		}
		l[v1alpha1.LabelWukong] = w.Name
		disk := &vm.Disk{
			ObjectMeta: metav1.ObjectMeta{
				Name: claim, Namespace: w.Namespace, Labels: l,
				ResourceVersion: w.ResourceVersion, CreationTimestamp: w.CreationTimestamp,
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "vm.novasphere.dev/v1alpha1", Kind: "Wukong", Name: w.Name, UID: w.UID}},
			},
			Spec:   vm.DiskSpec{WukongName: w.Name, DiskName: d.Name, Size: d.Size, Source: vm.RedactURLs(source(w, &d))},
			Status: vm.DiskStatus{ClaimName: claim},
		}
		for _, v := range w.Status.Volumes {
			if v.Name == d.Name {
				disk.Status.ImportStatus, disk.Status.ExportStatus, disk.Status.PushStatus = v.ImportStatus, v.ExportStatus, v.PushStatus
				redactStatus(&disk.Status)
				if v.ClaimName != "" {
					disk.Status.ClaimName = v.ClaimName
				}
			}
		}
		out = append(out, disk)
	}
	return out
}

// redactStatus hides credentials in URLs its messages and push target may
// quote. The writers redact already; this covers a status written before
// they did. The statuses are the Wukong's, shared: they are copied first.
func redactStatus(st *vm.DiskStatus) {
	if is := st.ImportStatus; is != nil && is.Message != vm.RedactURLs(is.Message) {
		st.ImportStatus = is.DeepCopy()
		st.ImportStatus.Message = vm.RedactURLs(is.Message)
	}
	if es := st.ExportStatus; es != nil && es.Message != vm.RedactURLs(es.Message) {
		st.ExportStatus = es.DeepCopy()
		st.ExportStatus.Message = vm.RedactURLs(es.Message)
	}
	if ps := st.PushStatus; ps != nil && (ps.Message != vm.RedactURLs(ps.Message) || ps.Target != vm.RedactURLs(ps.Target)) {
		st.PushStatus = ps.DeepCopy()
		st.PushStatus.Message, st.PushStatus.Target = vm.RedactURLs(ps.Message), vm.RedactURLs(ps.Target)
	}
}

// source says in one line where a disk's content comes from; disksOf
// redacts it (an import URL may be pre-signed or carry a login).
func source(w *vm.Wukong, d *vm.DiskConfig) string {
	s := d.ImportSource
	switch {
	case d.Image != "":
		return d.Image
	case s == nil:
		return "blank"
	case s.Type == vm.ImportSourceS3 && s.S3Config != nil:
		return fmt.Sprintf("s3://%s/%s", s.S3Config.Bucket, strings.TrimPrefix(s.S3Config.Key, "/"))
	case s.Type == vm.ImportSourcePVC && s.PVCConfig != nil:
		ns := s.PVCConfig.Namespace
		if ns == "" {
			ns = w.Namespace
		}
		return "pvc " + ns + "/" + s.PVCConfig.Name
	case s.Type == vm.ImportSourceUpload && s.ContentType == vm.ContentTypeArchive:
		return "upload (archive)"
	case s.Type == vm.ImportSourceUpload:
		return "upload"
	}
	return s.URL
}

var tableConvertor = table.Convertor[*vm.Disk]{
	Columns: []metav1.TableColumnDefinition{
		{Name: "Wukong", Type: "string", Description: "The Wukong the disk belongs to."},
		{Name: "Disk", Type: "string", Description: "The disk's name in the Wukong."},
		{Name: "Size", Type: "string", Description: "Declared size."},
		{Name: "Source", Type: "string", Description: "Where the content comes from."},
		{Name: "Import", Type: "string", Description: "Import phase."},
		{Name: "Progress", Type: "string", Description: "Import progress."},
		{Name: "Export", Type: "string", Description: "The last export (a download through disks/<name>/export, or a push): phase and progress."},
		{Name: "Pushed", Type: "string", Description: "The last push to the disk's exportTarget: phase and target.", Priority: 1},
	},
	Cells: func(d *vm.Disk) []any {
		size, phase, progress := "<none>", "<none>", "<none>"
		if d.Spec.Size != nil {
			size = d.Spec.Size.String()
		}
		if is := d.Status.ImportStatus; is != nil {
			phase, progress = is.Phase, table.OrNone(is.Progress)
		}
		export := "<none>"
		if es := d.Status.ExportStatus; es != nil {
			export = strings.TrimSpace(es.Phase + " " + es.Progress)
		}
		pushed := "<none>"
		if ps := d.Status.PushStatus; ps != nil {
			pushed = ps.Phase + " " + ps.Target
		}
		return []any{d.Spec.WukongName, d.Spec.DiskName, size, d.Spec.Source, phase, progress, export, pushed}
	},
}
