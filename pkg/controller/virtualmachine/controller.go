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

package virtualmachine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	gossh "golang.org/x/crypto/ssh"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	cdiclient "kubevirt.io/client-go/containerizeddataimporter"
	kubevirtclient "kubevirt.io/client-go/kubevirt"
	cdiv1 "kubevirt.io/containerized-data-importer-api/pkg/apis/core/v1beta1"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/controller/internal/workers"
	"github.com/novasphere/wukong/pkg/controller/internal/wukongstatus"
	"github.com/novasphere/wukong/pkg/events"
	"github.com/novasphere/wukong/pkg/generated/clientset/versioned"
	wukonginformers "github.com/novasphere/wukong/pkg/generated/informers/externalversions"
	listers "github.com/novasphere/wukong/pkg/generated/listers/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/transfer/export"
)

// Finalizer holds a Wukong until what it created is gone: the VirtualMachine
// and DataVolumes live in kube-apiserver, whose garbage collector does not
// see owners served by this server.
const Finalizer = "vm.novasphere.dev/cleanup"

// Controller reconciles Wukongs into VirtualMachines.
type Controller struct {
	wukongs  versioned.Interface
	kubevirt kubevirtclient.Interface
	cdi      cdiclient.Interface
	secrets  corev1client.SecretsGetter
	services corev1client.ServicesGetter
	refs     *Resolver
	// exports deletes the snapshots and exports made for the disks.
	exports interface {
		DeleteOwned(ctx context.Context, w metav1.Object) error
	}

	wukongLister listers.WukongLister
	vms, vmis    cache.Indexer
	dvs          cache.Indexer
	synced       []cache.InformerSynced
	run          func(stop <-chan struct{})

	queue workqueue.TypedRateLimitingInterface[string]
	// waiting spaces the looks at Wukongs waiting for a Secret, ConfigMap
	// or PVC, which no informer watches: 1 s, doubling, at most 30 s.
	waiting workqueue.TypedRateLimiter[string]

	// Events gets the disks' import phase changes, on the Wukong.
	Events events.Events
	// AgentDiskImage is the wukong-agent containerDisk method http's VMs
	// boot with (--agent-disk-image).
	AgentDiskImage string
	// clock, when set, is the time for the agent certificate's life.
	clock func() time.Time
}

// New builds a controller. wukongConfig reaches this server (the loopback
// config); clusterConfig reaches kube-apiserver (KubeVirt, CDI); core reads
// the Secrets, ConfigMaps and PVCs Wukongs name, by name.
func New(wukongConfig, clusterConfig *rest.Config, core corev1client.CoreV1Interface) (*Controller, error) {
	wc, err := versioned.NewForConfig(wukongConfig)
	if err != nil {
		return nil, err
	}
	kv, err := kubevirtclient.NewForConfig(clusterConfig)
	if err != nil {
		return nil, err
	}
	cdi, err := cdiclient.NewForConfig(clusterConfig)
	if err != nil {
		return nil, err
	}
	c := &Controller{
		wukongs: wc, kubevirt: kv, cdi: cdi, secrets: core, services: core,
		waiting: workqueue.NewTypedItemExponentialFailureRateLimiter[string](time.Second, 30*time.Second),
		exports: &export.Collector{Snapshots: kv.SnapshotV1beta1(), Exports: kv.ExportV1beta1()},
		// Per-item exponential backoff (5 ms to 16 min) and an overall
		// bucket: a Wukong that keeps failing is retried less and less often.
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "wukongs"}),
	}
	factory := wukonginformers.NewSharedInformerFactory(wc, 10*time.Minute)
	wi := factory.Vm().V1alpha1().Wukongs()
	c.wukongLister = wi.Lister()
	handle := func(obj any) { c.enqueue(obj) }
	if _, err := wi.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: handle, UpdateFunc: func(_, n any) { handle(n) }, DeleteFunc: handle,
	}); err != nil {
		return nil, err
	}
	if err := wi.Informer().AddIndexers(cache.Indexers{indexDataSource: dataSourceKeys}); err != nil {
		return nil, err
	}
	owned := func(client rest.Interface, resource string, obj runtime.Object) cache.SharedIndexInformer {
		lw := cache.NewFilteredListWatchFromClient(client, resource, metav1.NamespaceAll, func(o *metav1.ListOptions) {
			o.LabelSelector = v1alpha1.LabelWukong
		})
		inf := cache.NewSharedIndexInformer(lw, obj, 10*time.Minute, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
		owner := func(obj any) {
			if m, err := metaOf(obj); err == nil {
				c.queue.Add(m.GetNamespace() + "/" + m.GetLabels()[v1alpha1.LabelWukong])
			}
		}
		_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: owner, UpdateFunc: func(_, n any) { owner(n) }, DeleteFunc: owner})
		return inf
	}
	vmInf := owned(kv.KubevirtV1().RESTClient(), "virtualmachines", &kubevirtv1.VirtualMachine{})
	vmiInf := owned(kv.KubevirtV1().RESTClient(), "virtualmachineinstances", &kubevirtv1.VirtualMachineInstance{})
	dvInf := owned(cdi.CdiV1beta1().RESTClient(), "datavolumes", &cdiv1.DataVolume{})
	c.vms, c.vmis, c.dvs = vmInf.GetIndexer(), vmiInf.GetIndexer(), dvInf.GetIndexer()
	// DataSources, all of them (golden images live in namespaces of their
	// own): a change brings back the Wukongs that name it.
	dsInf := cache.NewSharedIndexInformer(cache.NewListWatchFromClient(cdi.CdiV1beta1().RESTClient(), "datasources", metav1.NamespaceAll, fields.Everything()),
		&cdiv1.DataSource{}, 10*time.Minute, cache.Indexers{})
	wukongIndex := wi.Informer().GetIndexer()
	dsChanged := func(obj any) {
		if m, err := metaOf(obj); err == nil {
			keys, _ := wukongIndex.IndexKeys(indexDataSource, m.GetNamespace()+"/"+m.GetName())
			for _, k := range keys {
				c.queue.Add(k)
			}
		}
	}
	_, _ = dsInf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: dsChanged, UpdateFunc: func(_, n any) { dsChanged(n) }, DeleteFunc: dsChanged})
	dsIndex := dsInf.GetIndexer()
	c.refs = &Resolver{Secrets: core, ConfigMaps: core, PVCs: core, DataSource: func(ns, name string) (*cdiv1.DataSource, error) {
		o, ok, err := dsIndex.GetByKey(ns + "/" + name)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, apierrors.NewNotFound(cdiv1.SchemeGroupVersion.WithResource("datasources").GroupResource(), name)
		}
		return o.(*cdiv1.DataSource), nil
	}}
	c.synced = []cache.InformerSynced{wi.Informer().HasSynced, vmInf.HasSynced, vmiInf.HasSynced, dvInf.HasSynced, dsInf.HasSynced}
	c.run = func(stop <-chan struct{}) {
		factory.Start(stop)
		go vmInf.Run(stop)
		go vmiInf.Run(stop)
		go dvInf.Run(stop)
		go dsInf.Run(stop)
	}
	return c, nil
}

func metaOf(obj any) (metav1.Object, error) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	m, ok := obj.(metav1.Object)
	if !ok {
		return nil, fmt.Errorf("not an object: %T", obj)
	}
	return m, nil
}

func (c *Controller) enqueue(obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err == nil {
		c.queue.Add(key)
	}
}

// Run reconciles with n workers until ctx ends.
func (c *Controller) Run(ctx context.Context, n int) {
	c.run(ctx.Done())
	workers.Run(ctx, "wukong-vm", "Reconciling Wukongs into VirtualMachines", c.queue, c.synced, n, c.process)
}

// process reconciles one Wukong and tells the queue when to come back.
func (c *Controller) process(ctx context.Context, key string) {
	err := c.sync(ctx, key)
	switch {
	case err == nil:
		c.queue.Forget(key)
	case errors.Is(err, errRetryLater):
		c.queue.AddAfter(key, time.Second)
	case errors.Is(err, errWaiting):
		// Not a failure: what the Wukong names is not there yet.
		c.queue.Forget(key)
		c.queue.AddAfter(key, c.waiting.When(key))
	default:
		// A refused DataVolume's error may quote its import URL.
		klog.ErrorS(errors.New(vm.RedactURLs(err.Error())), "Reconciling a Wukong", "wukong", key)
		c.queue.AddRateLimited(key)
	}
}

var errRetryLater = errors.New("waiting for objects to go")

// errWaiting: the Wukong waits for a Secret, ConfigMap or PVC to appear.
var errWaiting = errors.New("waiting for objects the Wukong names")

// indexDataSource indexes Wukongs by the DataSources they name.
const indexDataSource = "dataSource"

func (c *Controller) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	w, err := c.wukongLister.Wukongs(ns).Get(name)
	if apierrors.IsNotFound(err) {
		c.waiting.Forget(key)
		return nil
	}
	if err != nil {
		return err
	}
	if w.DeletionTimestamp != nil {
		c.waiting.Forget(key)
		return c.finalize(ctx, w)
	}
	if !slices.Contains(w.Finalizers, Finalizer) {
		w = w.DeepCopy()
		w.Finalizers = append(w.Finalizers, Finalizer)
		_, err := c.wukongs.VmV1alpha1().Wukongs(ns).Update(ctx, w, metav1.UpdateOptions{})
		return err // the update comes back as an event
	}

	var obs Observed
	existing, current := (*kubevirtv1.VirtualMachine)(nil), false
	if o, ok, _ := c.vms.GetByKey(key); ok {
		existing = o.(*kubevirtv1.VirtualMachine)
		current = existing.Annotations[AnnotationGeneration] == strconv.FormatInt(w.Generation, 10) &&
			controlledBy(existing, w) && runStrategyOf(existing) == RunStrategy(w)
	}
	agentSecret, agentErr := c.syncAgentSecret(ctx, w, renderedWithAgent(existing))
	serviceErr := c.syncService(ctx, w, renderedWithAgent(existing))
	current = current && agentCurrent(existing, agentSecret)
	// What the spec names is read again until it all resolved for this
	// generation, and before every VM write.
	if !current || !resolved(w) {
		if obs.Problems, err = c.refs.Resolve(ctx, w); err != nil {
			return err
		}
		obs.ReferencesChecked = true
	}
	if current {
		// The VM was written for this generation: report on it without
		// reading the key Secret again (this runs on every import update).
		// One written before VMs named their Wukong as controller is
		// written again, to adopt it; so is one whose run strategy was
		// changed on the VirtualMachine (virtctl stop): the Wukong says
		// whether its VM runs.
		obs.VM = existing
		desired, err := Render(w, "")
		if err != nil {
			obs.Err = err
		} else {
			obs.NotApplied = templateChanges(w.Name, obs.VM.Spec.DataVolumeTemplates, desired.Spec.DataVolumeTemplates)
		}
	} else if holdsVM(obs.Problems) {
		// Nothing that would fail for them: no VirtualMachine (nor its
		// DataVolumes) until they are there; an existing one stays as it is.
		obs.VM, obs.Held = existing, true
	} else if agentErr != nil {
		obs.Err = fmt.Errorf("writing the agent Secret: %w", agentErr)
	} else if files, err := c.readFiles(ctx, w); err != nil {
		obs.Err = err
	} else if desired, userData, err := RenderWithFiles(w, CloudInitData{SSHPublicKey: c.publicKey(ctx, w), Files: files, Agent: c.agentInstall(agentSecret)}); err != nil {
		obs.Err = err
	} else if err := c.applyUserDataSecret(ctx, w, userData); err != nil {
		// Before the VM, whose cloud-init volume references it.
		obs.Err = fmt.Errorf("writing the cloud-init user data Secret: %w", err)
	} else if obs.VM, obs.NotApplied, err = c.applyVM(ctx, desired); err != nil {
		obs.Err = fmt.Errorf("writing the VirtualMachine: %w", err)
	}
	if obs.Err == nil && serviceErr != nil {
		obs.Err = fmt.Errorf("writing the agent's Service: %w", serviceErr)
	}
	if o, ok, _ := c.vmis.GetByKey(key); ok {
		obs.VMI = o.(*kubevirtv1.VirtualMachineInstance)
	}
	obs.DataVolumes = map[string]*cdiv1.DataVolume{}
	for _, d := range w.Spec.Disks {
		claim := vm.DiskName(w.Name, d.Name)
		if o, ok, _ := c.dvs.GetByKey(ns + "/" + claim); ok {
			obs.DataVolumes[claim] = o.(*cdiv1.DataVolume)
		}
	}
	if err := c.writeStatus(ctx, w, obs); err != nil {
		return err
	}
	if polled(obs.Problems) {
		return errWaiting
	}
	c.waiting.Forget(key)
	return nil
}

// resolved says whether w's references all resolved for its generation.
func resolved(w *v1alpha1.Wukong) bool {
	c := meta.FindStatusCondition(w.Status.Conditions, ConditionReferencesResolved)
	return c != nil && c.Status == metav1.ConditionTrue && c.ObservedGeneration == w.Generation
}

// writeStatus writes w's status from what was observed: only through
// /status, and only when something changed. On a conflict the latest Wukong
// is read and its status computed again, keeping what the export-target
// controller and the disk export wrote there meanwhile (volumes[].pushStatus
// and exportStatus, which Status keeps).
func (c *Controller) writeStatus(ctx context.Context, w *v1alpha1.Wukong, obs Observed) error {
	var before, after v1alpha1.WukongStatus
	changed := false
	written, err := wukongstatus.Update(ctx, c.wukongs, w.Namespace, w.Name, w, func(latest *v1alpha1.Wukong) (bool, error) {
		changed = false // of the last attempt, the one written
		if latest.UID != w.UID || latest.Generation != w.Generation {
			// obs is of another spec; the change's event brings it back.
			return false, errRetryLater
		}
		st := Status(latest, obs)
		if equality.Semantic.DeepEqual(st, latest.Status) {
			return false, nil
		}
		before, after, changed = *latest.Status.DeepCopy(), st, true
		latest.Status = st
		return true, nil
	})
	if apierrors.IsConflict(err) {
		return errRetryLater
	}
	if err == nil && changed {
		// Only once written: a status computed and lost to a conflict is
		// computed again, and must not say the same change twice.
		importEvents(c.Events, written, before, after)
	}
	return err
}

// importEvents records, for each disk whose import phase changed from
// before to after, an event on w: Importing, Imported or ImportFailed (with
// CDI's message, redacted). Pending is not an event: every disk starts so.
func importEvents(ev events.Events, w *v1alpha1.Wukong, before, after v1alpha1.WukongStatus) {
	old := map[string]string{}
	for _, v := range before.Volumes {
		if v.ImportStatus != nil {
			old[v.Name] = v.ImportStatus.Phase
		}
	}
	for _, v := range after.Volumes {
		is := v.ImportStatus
		if is == nil || old[v.Name] == is.Phase {
			continue
		}
		switch is.Phase {
		case v1alpha1.ImportPhaseImporting:
			ev.Wukong(w.Namespace, w.Name, w.UID, corev1.EventTypeNormal, events.ReasonImporting, events.ActionImport,
				"disk %s: importing into %s", v.Name, v.ClaimName)
		case v1alpha1.TransferPhaseSucceeded:
			ev.Wukong(w.Namespace, w.Name, w.UID, corev1.EventTypeNormal, events.ReasonImported, events.ActionImport,
				"disk %s: imported into %s", v.Name, v.ClaimName)
		case v1alpha1.TransferPhaseFailed:
			ev.Wukong(w.Namespace, w.Name, w.UID, corev1.EventTypeWarning, events.ReasonImportFailed, events.ActionImport,
				"disk %s: import failed: %s", v.Name, is.Message)
		}
	}
}

// applyVM creates the VirtualMachine, or brings the existing one's template
// to the spec. DataVolume templates of an existing VM are left as they are:
// CDI does not re-import a disk in place; such changes are returned.
func (c *Controller) applyVM(ctx context.Context, desired *kubevirtv1.VirtualMachine) (*kubevirtv1.VirtualMachine, []string, error) {
	vms := c.kubevirt.KubevirtV1().VirtualMachines(desired.Namespace)
	o, ok, _ := c.vms.GetByKey(desired.Namespace + "/" + desired.Name)
	if !ok {
		vm, err := vms.Create(ctx, desired, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			vm, err = vms.Get(ctx, desired.Name, metav1.GetOptions{})
		}
		return vm, nil, err
	}
	existing := o.(*kubevirtv1.VirtualMachine)
	if existing.Labels[v1alpha1.LabelWukong] != desired.Name {
		return nil, nil, fmt.Errorf("a VirtualMachine %s/%s exists that this Wukong did not create (no %s label); rename one of them",
			existing.Namespace, existing.Name, v1alpha1.LabelWukong)
	}
	want := desired.OwnerReferences[0]
	ref := metav1.GetControllerOfNoCopy(existing)
	if ref != nil && (ref.Kind != want.Kind || ref.UID != want.UID) {
		// Another Wukong's of this name, or anything else's: not ours to take.
		return nil, nil, fmt.Errorf("a VirtualMachine %s/%s exists that another object controls (%s %s, uid %s); rename one of them",
			existing.Namespace, existing.Name, ref.Kind, ref.Name, ref.UID)
	}
	notApplied := templateChanges(desired.Name, existing.Spec.DataVolumeTemplates, desired.Spec.DataVolumeTemplates)
	gen := desired.Annotations[AnnotationGeneration]
	if equality.Semantic.DeepEqual(existing.Spec.Template, desired.Spec.Template) && existing.Annotations[AnnotationGeneration] == gen && ref != nil &&
		runStrategyOf(existing) == runStrategyOf(desired) && existing.Spec.Running == nil {
		return existing, notApplied, nil
	}
	vm := existing.DeepCopy()
	if ref == nil {
		// Made before VMs had their Wukong as controller: adopt it.
		vm.OwnerReferences = append(vm.OwnerReferences, want)
	}
	vm.Spec.Template = desired.Spec.Template
	// KubeVirt starts and stops the VMI to follow it; running (deprecated)
	// and runStrategy may not both be set.
	vm.Spec.RunStrategy, vm.Spec.Running = desired.Spec.RunStrategy, nil
	if vm.Annotations == nil {
		vm.Annotations = map[string]string{}
	}
	vm.Annotations[AnnotationGeneration] = gen
	// New disks get their templates; changed ones keep the imported data.
	for _, t := range desired.Spec.DataVolumeTemplates {
		if !slices.ContainsFunc(vm.Spec.DataVolumeTemplates, func(e kubevirtv1.DataVolumeTemplateSpec) bool { return e.Name == t.Name }) {
			vm.Spec.DataVolumeTemplates = append(vm.Spec.DataVolumeTemplates, t)
		}
	}
	updated, err := vms.Update(ctx, vm, metav1.UpdateOptions{})
	return updated, notApplied, err
}

// runStrategyOf is m's run strategy; Always when only the deprecated
// running: true says so, Halted for running: false, as KubeVirt reads them.
func runStrategyOf(m *kubevirtv1.VirtualMachine) kubevirtv1.VirtualMachineRunStrategy {
	switch {
	case m.Spec.RunStrategy != nil:
		return *m.Spec.RunStrategy
	case m.Spec.Running != nil && *m.Spec.Running:
		return kubevirtv1.RunStrategyAlways
	case m.Spec.Running != nil:
		return kubevirtv1.RunStrategyHalted
	}
	return kubevirtv1.RunStrategyUnknown
}

// controlledBy says whether w is m's controller.
func controlledBy(m *kubevirtv1.VirtualMachine, w *v1alpha1.Wukong) bool {
	ref := metav1.GetControllerOfNoCopy(m)
	return ref != nil && ref.Kind == "Wukong" && ref.UID == w.UID
}

// templateChanges names the disks whose source or size changed.
func templateChanges(wukong string, existing, desired []kubevirtv1.DataVolumeTemplateSpec) []string {
	var out []string
	for _, d := range desired {
		for _, e := range existing {
			if e.Name == d.Name && !equality.Semantic.DeepEqual(e.Spec, d.Spec) {
				out = append(out, fmt.Sprintf("disk %s (DataVolume %s): a new source or size is not imported into an existing disk",
					strings.TrimPrefix(d.Name, wukong+"-"), d.Name))
			}
		}
	}
	return out
}

// publicKey derives the authorised key from the ssh Secret's private key;
// only the public half ever leaves the Secret (into cloud-init).
func (c *Controller) publicKey(ctx context.Context, w *v1alpha1.Wukong) string {
	ft := w.Spec.FileTransfer
	if ft == nil || ft.SSHConfig == nil || ft.SSHConfig.KeySecret == "" {
		return ""
	}
	s, err := c.secrets.Secrets(w.Namespace).Get(ctx, ft.SSHConfig.KeySecret, metav1.GetOptions{})
	if err != nil {
		return ""
	}
	signer, err := gossh.ParsePrivateKey(s.Data[corev1.SSHAuthPrivateKey])
	if err != nil {
		return ""
	}
	return string(gossh.MarshalAuthorizedKey(signer.PublicKey()))
}

// finalize deletes the VirtualMachine, DataVolumes, snapshots and exports
// of a deleted Wukong, then lets it go.
func (c *Controller) finalize(ctx context.Context, w *v1alpha1.Wukong) error {
	if !slices.Contains(w.Finalizers, Finalizer) {
		return nil
	}
	gone := true
	del := func(err error) error {
		if apierrors.IsNotFound(err) {
			return nil
		}
		gone = false
		return err
	}
	vms := c.kubevirt.KubevirtV1().VirtualMachines(w.Namespace)
	if vm, err := vms.Get(ctx, w.Name, metav1.GetOptions{}); err == nil {
		if vm.Labels[v1alpha1.LabelWukong] == w.Name {
			if err := del(vms.Delete(ctx, w.Name, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)})); err != nil {
				return err
			}
			gone = false
		}
	} else if !apierrors.IsNotFound(err) {
		return err
	}
	if err := c.applyUserDataSecret(ctx, w, nil); err != nil {
		return err
	}
	if err := c.deleteAgentSecret(ctx, w); err != nil {
		return err
	}
	if err := c.deleteService(ctx, w, nil); err != nil {
		return err
	}
	dvs := c.cdi.CdiV1beta1().DataVolumes(w.Namespace)
	l, err := dvs.List(ctx, metav1.ListOptions{LabelSelector: labels.Set{v1alpha1.LabelWukong: w.Name}.String()})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	if l != nil {
		for _, dv := range l.Items {
			if err := del(dvs.Delete(ctx, dv.Name, metav1.DeleteOptions{})); err != nil {
				return err
			}
			gone = false
		}
	}
	// The snapshots and exports made to read its disks: garbage collection
	// by owner reference would take them too, where it runs.
	if err := c.exports.DeleteOwned(ctx, w); err != nil {
		return err
	}
	if !gone {
		return errRetryLater
	}
	w = w.DeepCopy()
	w.Finalizers = slices.DeleteFunc(w.Finalizers, func(f string) bool { return f == Finalizer })
	_, err = c.wukongs.VmV1alpha1().Wukongs(w.Namespace).Update(ctx, w, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
