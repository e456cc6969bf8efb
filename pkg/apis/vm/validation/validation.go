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

// Package validation checks vm.novasphere.dev objects and returns field errors
// whose paths and messages say what to change.
package validation

import (
	"fmt"
	"math"
	"net/url"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/sets"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/apis/vm/hashstate"
	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
)

var (
	importTypes   = sets.New(vm.ImportSourceHTTP, vm.ImportSourceHTTPS, vm.ImportSourceS3, vm.ImportSourceRegistry, vm.ImportSourcePVC, vm.ImportSourceUpload)
	exportTypes   = sets.New(vm.ExportTargetRegistry, vm.ExportTargetS3, vm.ExportTargetHTTP)
	exportFormats = sets.New(vm.ExportFormatRaw, vm.ExportFormatQCOW2, vm.ExportFormatOCI)
	methods       = sets.New(vm.FileTransferMethodSSH, vm.FileTransferMethodHTTP, vm.FileTransferMethodPVC)
	operations    = sets.New(vm.OperationUpload, vm.OperationDownload, vm.OperationPush)
	diskFormats   = sets.New(vm.DiskFormatRaw, vm.DiskFormatGzip, vm.DiskFormatQcow2)
	serviceTypes  = sets.New("ClusterIP", "NodePort", "LoadBalancer")
	// KubeVirt's run strategies, in the order its documentation gives them;
	// WaitAsReceiver is KubeVirt's own, for migration targets.
	runStrategies = []string{vm.RunStrategyAlways, vm.RunStrategyRerunOnFailure, vm.RunStrategyManual, vm.RunStrategyHalted, vm.RunStrategyOnce}
	// <algorithm>:<hex>, the form CDI's http source takes.
	checksumRE = regexp.MustCompile(`^(md5|sha1|sha256|sha512):[0-9a-fA-F]+$`)
	sha256RE   = regexp.MustCompile(`^[0-9a-f]{64}$`)
	// A POSIX user name as useradd takes it by default: lower case, digits,
	// "_" and "-", not starting with a digit or "-", at most 32 characters,
	// optionally ending in "$" (Samba machine accounts). The name goes into
	// cloud-init YAML and an SSH login, so nothing else may pass.
	posixUserRE = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}\$?$`)
)

// ValidateWukong validates a Wukong on create.
func ValidateWukong(w *vm.Wukong) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMeta(&w.ObjectMeta, true, apimachineryvalidation.NameIsDNSSubdomain, field.NewPath("metadata"))
	allErrs = append(allErrs, ValidateWukongSpec(&w.Spec, field.NewPath("spec"))...)
	return allErrs
}

// ValidateWukongUpdate validates a Wukong on update.
func ValidateWukongUpdate(w, old *vm.Wukong) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMetaUpdate(&w.ObjectMeta, &old.ObjectMeta, field.NewPath("metadata"))
	allErrs = append(allErrs, ValidateWukongSpec(&w.Spec, field.NewPath("spec"))...)
	return allErrs
}

// ValidateWukongStatusUpdate validates a write to wukongs/status.
func ValidateWukongStatusUpdate(w, old *vm.Wukong) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMetaUpdate(&w.ObjectMeta, &old.ObjectMeta, field.NewPath("metadata"))
	st := field.NewPath("status")
	allErrs = append(allErrs, metav1validation.ValidateConditions(w.Status.Conditions, st.Child("conditions"))...)
	for i, v := range w.Status.Volumes {
		p := st.Child("volumes").Index(i)
		if v.ImportStatus != nil {
			allErrs = append(allErrs, validateProgress(v.ImportStatus.Progress, p.Child("importStatus", "progress"))...)
		}
		if v.ExportStatus != nil {
			allErrs = append(allErrs, validateProgress(v.ExportStatus.Progress, p.Child("exportStatus", "progress"))...)
		}
	}
	return allErrs
}

// ValidateWukongSpec validates the declared VM.
func ValidateWukongSpec(s *vm.WukongSpec, p *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if s.CPU < 0 {
		allErrs = append(allErrs, field.Invalid(p.Child("cpu"), s.CPU, "must be a positive number of cores"))
	}
	allErrs = append(allErrs, validatePositiveQuantity(s.Memory, p.Child("memory"))...)
	// Empty is Always (the versioned API defaults it).
	if s.RunStrategy != "" && !slices.Contains(runStrategies, s.RunStrategy) {
		allErrs = append(allErrs, field.NotSupported(p.Child("runStrategy"), s.RunStrategy, runStrategies))
	}

	names := sets.New[string]()
	for i := range s.Disks {
		dp := p.Child("disks").Index(i)
		d := &s.Disks[i]
		if names.Has(d.Name) {
			allErrs = append(allErrs, field.Duplicate(dp.Child("name"), d.Name))
		}
		names.Insert(d.Name)
		allErrs = append(allErrs, validateDisk(d, dp)...)
	}
	if s.FileTransfer != nil {
		allErrs = append(allErrs, validateFileTransfer(s.FileTransfer, p.Child("fileTransfer"))...)
		allErrs = append(allErrs, validateFilesDiskName(s, p)...)
	}
	if s.CloudInit != nil {
		allErrs = append(allErrs, validateCloudInit(s.CloudInit, p.Child("cloudInit"))...)
	}
	return allErrs
}

// Limits of spec.cloudInit.files: cloud-init's user data is kept whole in
// one object (the VM or a Secret of at most 1 MiB), so it is bounded here.
const (
	MaxCloudInitFiles         = 64
	MaxCloudInitInlineContent = 256 << 10
)

// cloud-init's write_files takes the mode as an octal string.
var permissionsRE = regexp.MustCompile(`^0?[0-7]{3,4}$`)

func validateCloudInit(c *vm.CloudInitSpec, p *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	fp := p.Child("files")
	if len(c.Files) > MaxCloudInitFiles {
		allErrs = append(allErrs, field.TooMany(fp, len(c.Files), MaxCloudInitFiles))
	}
	paths := sets.New[string]()
	total := 0
	for i := range c.Files {
		f := &c.Files[i]
		ip := fp.Index(i)
		if errs := ValidateRemotePath(f.Path, ip.Child("path")); len(errs) > 0 {
			allErrs = append(allErrs, errs...)
		} else if f.Path == "/" {
			allErrs = append(allErrs, field.Invalid(ip.Child("path"), f.Path, "must name a file, not /"))
		} else if paths.Has(f.Path) {
			allErrs = append(allErrs, field.Duplicate(ip.Child("path"), f.Path))
		}
		paths.Insert(f.Path)
		total += len(f.Content)
		if f.Content != "" && f.ContentFrom != nil {
			allErrs = append(allErrs, field.Invalid(ip, f.Path, "set content or contentFrom, not both"))
		}
		if f.ContentFrom != nil {
			allErrs = append(allErrs, validateFileSource(f.ContentFrom, ip.Child("contentFrom"))...)
		}
		if f.Permissions != "" && !permissionsRE.MatchString(f.Permissions) {
			allErrs = append(allErrs, field.Invalid(ip.Child("permissions"), f.Permissions, "must be octal permissions from 0000 to 7777, such as 0644"))
		}
		if f.Owner != "" {
			user, group, _ := strings.Cut(f.Owner, ":")
			if !posixUserRE.MatchString(user) || (strings.Contains(f.Owner, ":") && !posixUserRE.MatchString(group)) {
				allErrs = append(allErrs, field.Invalid(ip.Child("owner"), f.Owner, "must be user or user:group, POSIX names such as app:app"))
			}
		}
	}
	if total > MaxCloudInitInlineContent {
		allErrs = append(allErrs, field.Invalid(fp, fmt.Sprintf("%d bytes", total), fmt.Sprintf("inline content of all files is %d bytes, at most %d (256 KiB); take larger files from a ConfigMap or Secret (contentFrom)", total, MaxCloudInitInlineContent)))
	}
	return allErrs
}

func validateFileSource(s *vm.CloudInitFileSource, p *field.Path) field.ErrorList {
	refs := 0
	var allErrs field.ErrorList
	for _, r := range []struct {
		ref  *vm.KeyReference
		name string
	}{{s.ConfigMapKeyRef, "configMapKeyRef"}, {s.SecretKeyRef, "secretKeyRef"}} {
		if r.ref == nil {
			continue
		}
		refs++
		rp := p.Child(r.name)
		if r.ref.Name == "" {
			allErrs = append(allErrs, field.Required(rp.Child("name"), "the name of an object in the Wukong's namespace"))
		} else {
			allErrs = append(allErrs, validateDNSSubdomain(r.ref.Name, rp.Child("name"))...)
		}
		if r.ref.Key == "" {
			allErrs = append(allErrs, field.Required(rp.Child("key"), "the key whose bytes the file holds"))
		}
		for _, msg := range utilvalidation.IsConfigMapKey(r.ref.Key) {
			if r.ref.Key != "" {
				allErrs = append(allErrs, field.Invalid(rp.Child("key"), r.ref.Key, msg))
			}
		}
	}
	if refs != 1 {
		allErrs = append(allErrs, field.Invalid(p, "", "set exactly one of configMapKeyRef and secretKeyRef"))
	}
	return allErrs
}

func validateDisk(d *vm.DiskConfig, p *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if d.Name == "" {
		allErrs = append(allErrs, field.Required(p.Child("name"), "every disk needs a name"))
	} else {
		for _, msg := range utilvalidation.IsDNS1123Label(d.Name) {
			allErrs = append(allErrs, field.Invalid(p.Child("name"), d.Name, msg))
		}
	}
	allErrs = append(allErrs, validatePositiveQuantity(d.Size, p.Child("size"))...)
	if d.Image != "" && d.ImportSource != nil {
		allErrs = append(allErrs, field.Forbidden(p.Child("importSource"), "set either image or importSource, not both"))
	}
	if d.DataSource != nil {
		if d.Image != "" || d.ImportSource != nil {
			allErrs = append(allErrs, field.Forbidden(p.Child("dataSource"), "set one of image, importSource and dataSource"))
		}
		allErrs = append(allErrs, validateDataSource(d.DataSource, p.Child("dataSource"))...)
	}
	if d.Image != "" {
		allErrs = append(allErrs, validateRegistryURL(d.Image, p.Child("image"))...)
	}
	if d.ImportSource != nil {
		allErrs = append(allErrs, validateImportSource(d.ImportSource, p.Child("importSource"))...)
	}
	if d.ExportTarget != nil {
		allErrs = append(allErrs, validateExportTarget(d.ExportTarget, p.Child("exportTarget"))...)
	}
	return allErrs
}

// validateDataSource checks a DataSource's name and namespace as CDI's
// DataVolume webhook checks a sourceRef's: a name is required.
func validateDataSource(d *vm.DataSourceReference, p *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if d.Name == "" {
		allErrs = append(allErrs, field.Required(p.Child("name"), "the name of the DataSource to clone"))
	} else {
		allErrs = append(allErrs, validateDNSSubdomain(d.Name, p.Child("name"))...)
	}
	if d.Namespace != "" {
		for _, msg := range utilvalidation.IsDNS1123Label(d.Namespace) {
			allErrs = append(allErrs, field.Invalid(p.Child("namespace"), d.Namespace, msg))
		}
	}
	return allErrs
}

func validateImportSource(s *vm.ImportSourceSpec, p *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if !importTypes.Has(s.Type) {
		return append(allErrs, field.NotSupported(p.Child("type"), s.Type, sets.List(importTypes)))
	}
	switch s.Type {
	case vm.ImportSourceHTTP, vm.ImportSourceHTTPS:
		allErrs = append(allErrs, validateHTTPURL(s.URL, s.Type, p.Child("url"))...)
		if s.Checksum != "" && !checksumRE.MatchString(s.Checksum) {
			allErrs = append(allErrs, field.Invalid(p.Child("checksum"), s.Checksum, "must be <algorithm>:<hex digest> with algorithm md5, sha1, sha256 or sha512"))
		}
	case vm.ImportSourceS3:
		if s.S3Config == nil {
			allErrs = append(allErrs, field.Required(p.Child("s3Config"), "an s3 import needs s3Config with endpoint, bucket and key"))
		} else {
			allErrs = append(allErrs, validateS3(s.S3Config, p.Child("s3Config"))...)
		}
	case vm.ImportSourceRegistry:
		allErrs = append(allErrs, validateRegistryURL(s.URL, p.Child("url"))...)
	case vm.ImportSourcePVC:
		if s.PVCConfig == nil || s.PVCConfig.Name == "" {
			allErrs = append(allErrs, field.Required(p.Child("pvcConfig", "name"), "a pvc import needs the name of the PVC to clone"))
		} else {
			allErrs = append(allErrs, validateDNSSubdomain(s.PVCConfig.Name, p.Child("pvcConfig", "name"))...)
			if s.PVCConfig.Namespace != "" {
				for _, msg := range utilvalidation.IsDNS1123Label(s.PVCConfig.Namespace) {
					allErrs = append(allErrs, field.Invalid(p.Child("pvcConfig", "namespace"), s.PVCConfig.Namespace, msg))
				}
			}
		}
	}
	allErrs = append(allErrs, forbidUnused(s.Type, p, map[string]bool{
		"s3Config":       s.S3Config != nil && s.Type != vm.ImportSourceS3,
		"registryConfig": s.RegistryConfig != nil && s.Type != vm.ImportSourceRegistry,
		"pvcConfig":      s.PVCConfig != nil && s.Type != vm.ImportSourcePVC,
		"checksum":       s.Checksum != "" && s.Type != vm.ImportSourceHTTP && s.Type != vm.ImportSourceHTTPS,
		"url":            s.URL != "" && (s.Type == vm.ImportSourceS3 || s.Type == vm.ImportSourcePVC || s.Type == vm.ImportSourceUpload),
		"contentType":    s.ContentType != "" && s.Type != vm.ImportSourceUpload,
		"credentials":    s.Credentials != nil && s.Type == vm.ImportSourceUpload,
	})...)
	if s.ContentType != "" && s.ContentType != vm.ContentTypeKubeVirt && s.ContentType != vm.ContentTypeArchive {
		allErrs = append(allErrs, field.NotSupported(p.Child("contentType"), s.ContentType, []string{vm.ContentTypeArchive, vm.ContentTypeKubeVirt}))
	}
	allErrs = append(allErrs, validateSecretRef(s.Credentials, p.Child("credentials"))...)
	if s.RegistryConfig != nil && s.RegistryConfig.SecretName != "" {
		allErrs = append(allErrs, validateDNSSubdomain(s.RegistryConfig.SecretName, p.Child("registryConfig", "secretName"))...)
	}
	return allErrs
}

func validateExportTarget(t *vm.ExportTargetSpec, p *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if !exportTypes.Has(t.Type) {
		return append(allErrs, field.NotSupported(p.Child("type"), t.Type, sets.List(exportTypes)))
	}
	if t.Format != "" && !exportFormats.Has(t.Format) {
		allErrs = append(allErrs, field.NotSupported(p.Child("format"), t.Format, sets.List(exportFormats)))
	}
	switch t.Type {
	case vm.ExportTargetRegistry:
		if t.URL == "" {
			allErrs = append(allErrs, field.Required(p.Child("url"), "a registry export needs an image reference such as registry.example.com/vms/ubuntu:tag"))
		} else if strings.Contains(t.URL, "://") {
			allErrs = append(allErrs, field.Invalid(p.Child("url"), vm.RedactURL(t.URL), "must be an image reference without a scheme, such as registry.example.com/vms/ubuntu:tag"))
		}
		if t.Format == vm.ExportFormatRaw || t.Format == vm.ExportFormatQCOW2 {
			allErrs = append(allErrs, field.Invalid(p.Child("format"), t.Format, "a registry export is an OCI containerDisk image: use format oci"))
		}
	case vm.ExportTargetS3:
		if t.S3Config == nil {
			allErrs = append(allErrs, field.Required(p.Child("s3Config"), "an s3 export needs s3Config with endpoint, bucket and key"))
		} else {
			allErrs = append(allErrs, validateS3(t.S3Config, p.Child("s3Config"))...)
		}
	case vm.ExportTargetHTTP:
		allErrs = append(allErrs, validateHTTPURL(t.URL, "", p.Child("url"))...)
	}
	if t.Format == vm.ExportFormatOCI && t.Type != vm.ExportTargetRegistry {
		allErrs = append(allErrs, field.Invalid(p.Child("format"), t.Format, "format oci is only for registry targets"))
	}
	allErrs = append(allErrs, forbidUnused(t.Type, p, map[string]bool{
		"s3Config":       t.S3Config != nil && t.Type != vm.ExportTargetS3,
		"registryConfig": t.RegistryConfig != nil && t.Type != vm.ExportTargetRegistry,
	})...)
	allErrs = append(allErrs, validateSecretRef(t.Credentials, p.Child("credentials"))...)
	return allErrs
}

// forbidUnused reports configuration that the chosen type would silently ignore.
func forbidUnused(typ string, p *field.Path, unused map[string]bool) field.ErrorList {
	var allErrs field.ErrorList
	for _, name := range sets.List(sets.KeySet(unused)) {
		if unused[name] {
			allErrs = append(allErrs, field.Forbidden(p.Child(name), fmt.Sprintf("not used by type %q", typ)))
		}
	}
	return allErrs
}

func validateS3(s *vm.S3Config, p *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	allErrs = append(allErrs, validateHTTPURL(s.Endpoint, "", p.Child("endpoint"))...)
	if s.Bucket == "" {
		allErrs = append(allErrs, field.Required(p.Child("bucket"), "the bucket that holds the object"))
	} else if len(s.Bucket) < 3 || len(s.Bucket) > 63 || strings.ContainsAny(s.Bucket, "/ ") {
		allErrs = append(allErrs, field.Invalid(p.Child("bucket"), s.Bucket, "must be an S3 bucket name: 3-63 characters, no '/' or spaces"))
	}
	if s.Key == "" {
		allErrs = append(allErrs, field.Required(p.Child("key"), "the object key, such as images/ubuntu.qcow2"))
	}
	allErrs = append(allErrs, validateSecretRef(s.Credentials, p.Child("credentials"))...)
	return allErrs
}

// validateHTTPURL requires an absolute http(s) URL; scheme, when set, must match.
func validateHTTPURL(raw, scheme string, p *field.Path) field.ErrorList {
	if raw == "" {
		return field.ErrorList{field.Required(p, "an absolute http:// or https:// URL")}
	}
	// The errors echo the URL, redacted: it may be pre-signed or carry a
	// login, and a refusal's message reaches the audit log.
	shown := vm.RedactURL(raw)
	u, err := url.Parse(raw)
	if err != nil {
		return field.ErrorList{field.Invalid(p, shown, vm.RedactURLs(err.Error()))}
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return field.ErrorList{field.Invalid(p, shown, "must be an absolute http:// or https:// URL with a host")}
	}
	if scheme != "" && u.Scheme != scheme {
		return field.ErrorList{field.Invalid(p, shown, fmt.Sprintf("type is %s but the URL scheme is %s", scheme, u.Scheme))}
	}
	return nil
}

// validateRegistryURL requires a scheme CDI's registry importer understands.
func validateRegistryURL(raw string, p *field.Path) field.ErrorList {
	if raw == "" {
		return field.ErrorList{field.Required(p, "an image URL such as docker://quay.io/containerdisks/ubuntu:22.04")}
	}
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok || rest == "" {
		return field.ErrorList{field.Invalid(p, vm.RedactURL(raw), "must start with a scheme: docker://, registry:// or oci-archive://")}
	}
	switch scheme {
	case "docker", "registry", "oci-archive":
		return nil
	}
	return field.ErrorList{field.Invalid(p, vm.RedactURL(raw), fmt.Sprintf("unsupported scheme %q: use docker://, registry:// or oci-archive://", scheme))}
}

func validateFileTransfer(f *vm.FileTransferSpec, p *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if !methods.Has(f.Method) {
		allErrs = append(allErrs, field.NotSupported(p.Child("method"), f.Method, sets.List(methods)))
	}
	allErrs = append(allErrs, validatePositiveQuantity(f.MaxFileSize, p.Child("maxFileSize"))...)
	if f.SSHConfig != nil {
		sp := p.Child("sshConfig")
		if f.SSHConfig.User == "" {
			allErrs = append(allErrs, field.Required(sp.Child("user"), "the guest user to log in as"))
		} else if !posixUserRE.MatchString(f.SSHConfig.User) {
			allErrs = append(allErrs, field.Invalid(sp.Child("user"), f.SSHConfig.User,
				"must be a POSIX user name: a lower-case letter or \"_\", then up to 31 lower-case letters, digits, \"_\" or \"-\", optionally ending in \"$\" (such as fedora or cloud-user)"))
		}
		if f.SSHConfig.KeySecret == "" {
			allErrs = append(allErrs, field.Required(sp.Child("keySecret"), "a kubernetes.io/ssh-auth Secret with the private key"))
		} else {
			allErrs = append(allErrs, validateDNSSubdomain(f.SSHConfig.KeySecret, sp.Child("keySecret"))...)
		}
		allErrs = append(allErrs, validatePort(f.SSHConfig.Port, sp.Child("port"))...)
	} else if f.Enabled && f.Method == vm.FileTransferMethodSSH {
		allErrs = append(allErrs, field.Required(p.Child("sshConfig"), "method ssh needs sshConfig with user and keySecret"))
	}
	allErrs = append(allErrs, validatePVCConfig(f, p)...)
	if f.HTTPConfig == nil && f.Enabled && f.Method == vm.FileTransferMethodHTTP {
		allErrs = append(allErrs, field.Required(p.Child("httpConfig"), "method http needs httpConfig with enabled: true and the roots the agent serves"))
	}
	if f.HTTPConfig != nil {
		hp := p.Child("httpConfig")
		allErrs = append(allErrs, validatePort(f.HTTPConfig.Port, hp.Child("port"))...)
		allErrs = append(allErrs, validateAgentRoots(f.HTTPConfig.Roots, f.Method == vm.FileTransferMethodHTTP, hp.Child("roots"))...)
		if se := f.HTTPConfig.ServiceExposure; se != nil && se.Type != "" && !serviceTypes.Has(se.Type) {
			allErrs = append(allErrs, field.NotSupported(hp.Child("serviceExposure", "type"), se.Type, sets.List(serviceTypes)))
		}
	}
	return allErrs
}

// ValidateWukongFileTransfer validates a transfer record on create.
func ValidateWukongFileTransfer(t *vm.WukongFileTransfer) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMeta(&t.ObjectMeta, true, apimachineryvalidation.NameIsDNSSubdomain, field.NewPath("metadata"))
	allErrs = append(allErrs, validateFileTransferSpec(&t.Spec, field.NewPath("spec"))...)
	return allErrs
}

// ValidateWukongFileTransferUpdate keeps the spec of a record immutable: it
// describes what was asked for, and progress refers to it.
//
// One exception: a declared upload from localPath that nothing ran yet may
// be given its expectedSize and expectedSHA256 once, by the client that
// runs it (`kubectl wukong run`), when its author left them out.
func ValidateWukongFileTransferUpdate(t, old *vm.WukongFileTransfer) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMetaUpdate(&t.ObjectMeta, &old.ObjectMeta, field.NewPath("metadata"))
	oldSpec := old.Spec
	if fillable(old) && t.Spec.ExpectedSize != nil && t.Spec.ExpectedSHA256 != "" {
		oldSpec.ExpectedSize = t.Spec.ExpectedSize
		if oldSpec.ExpectedSHA256 == "" { // one the author set stays
			oldSpec.ExpectedSHA256 = t.Spec.ExpectedSHA256
		}
		allErrs = append(allErrs, validateFileTransferSpec(&t.Spec, field.NewPath("spec"))...)
	}
	allErrs = append(allErrs, apimachineryvalidation.ValidateImmutableField(t.Spec, oldSpec, field.NewPath("spec"))...)
	return allErrs
}

// fillable says whether a record is a declared upload from localPath,
// without expectedSize, that nothing ran yet.
func fillable(t *vm.WukongFileTransfer) bool {
	return t.Labels[v1alpha1.LabelDeclared] == "true" && t.Spec.Operation == vm.OperationUpload &&
		t.Spec.LocalPath != "" && t.Spec.Source == nil && t.Spec.ExpectedSize == nil &&
		t.Status.Phase == vm.FileTransferPhasePending && len(t.Status.CompletedRanges) == 0
}

// ValidateWukongFileTransferStatusUpdate validates a write to wukongfiletransfers/status.
func ValidateWukongFileTransferStatusUpdate(t, old *vm.WukongFileTransfer) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMetaUpdate(&t.ObjectMeta, &old.ObjectMeta, field.NewPath("metadata"))
	st, p := &t.Status, field.NewPath("status")
	switch st.Phase {
	case "", vm.FileTransferPhasePending, vm.FileTransferPhaseTransferring, vm.FileTransferPhaseCommitting, vm.FileTransferPhaseSucceeded, vm.FileTransferPhaseFailed:
	default:
		allErrs = append(allErrs, field.NotSupported(p.Child("phase"), st.Phase, []string{vm.FileTransferPhasePending, vm.FileTransferPhaseTransferring, vm.FileTransferPhaseCommitting, vm.FileTransferPhaseSucceeded, vm.FileTransferPhaseFailed}))
	}
	allErrs = append(allErrs, validateProgress(st.Progress, p.Child("progress"))...)
	for name, v := range map[string]int64{"bytesTransferred": st.BytesTransferred, "totalBytes": st.TotalBytes, "bytesPerSecond": st.BytesPerSecond} {
		if v < 0 {
			allErrs = append(allErrs, field.Invalid(p.Child(name), v, "must not be negative"))
		}
	}
	allErrs = append(allErrs, ValidateSHA256(st.SHA256, p.Child("sha256"))...)
	// Every range of a chunked export reads the source its first one read.
	if old.Status.DiskSource != nil && !apiequality.Semantic.DeepEqual(st.DiskSource, old.Status.DiskSource) {
		allErrs = append(allErrs, field.Forbidden(p.Child("diskSource"), "is set once, by the transfer's first request"))
	}
	if ds := st.DiskSource; ds != nil && ds.Type != vm.DiskSourcePVC && ds.Type != vm.DiskSourceSnapshot {
		allErrs = append(allErrs, field.NotSupported(p.Child("diskSource", "type"), ds.Type, []string{vm.DiskSourcePVC, vm.DiskSourceSnapshot}))
	}
	return allErrs
}

func validateFileTransferSpec(s *vm.WukongFileTransferSpec, p *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if s.WukongName == "" {
		allErrs = append(allErrs, field.Required(p.Child("wukongName"), "the Wukong the transfer goes to or comes from"))
	} else {
		allErrs = append(allErrs, validateDNSSubdomain(s.WukongName, p.Child("wukongName"))...)
	}
	if !operations.Has(s.Operation) {
		allErrs = append(allErrs, field.NotSupported(p.Child("operation"), s.Operation, sets.List(operations)))
	}
	if s.Method != "" && !methods.Has(s.Method) {
		allErrs = append(allErrs, field.NotSupported(p.Child("method"), s.Method, sets.List(methods)))
	}
	switch {
	case s.Disk != "":
		for _, msg := range utilvalidation.IsDNS1123Label(s.Disk) {
			allErrs = append(allErrs, field.Invalid(p.Child("disk"), s.Disk, msg))
		}
		if s.RemotePath != "" {
			allErrs = append(allErrs, field.Forbidden(p.Child("remotePath"), "a disk transfer has no path inside the VM"))
		}
	case s.RemotePath == "":
		allErrs = append(allErrs, field.Required(p.Child("remotePath"), "the absolute path inside the VM (or disk, for a disk transfer)"))
	default:
		allErrs = append(allErrs, ValidateRemotePath(s.RemotePath, p.Child("remotePath"))...)
	}
	switch {
	case s.Operation == vm.OperationPush && (s.Disk == "" || s.Target == ""):
		allErrs = append(allErrs, field.Required(p.Child("target"), "a push names its disk and its target"))
	case s.Operation != vm.OperationPush && s.Target != "":
		allErrs = append(allErrs, field.Forbidden(p.Child("target"), "only a push has a target"))
	}
	switch {
	case s.Format == "":
	case !diskFormats.Has(s.Format):
		allErrs = append(allErrs, field.NotSupported(p.Child("format"), s.Format, sets.List(diskFormats)))
	case s.Disk == "":
		allErrs = append(allErrs, field.Forbidden(p.Child("format"), "only a disk transfer has a format"))
	}
	if s.ExpectedSize != nil && *s.ExpectedSize < 0 {
		allErrs = append(allErrs, field.Invalid(p.Child("expectedSize"), *s.ExpectedSize, "must not be negative"))
	}
	allErrs = append(allErrs, ValidateSHA256(s.ExpectedSHA256, p.Child("expectedSHA256"))...)
	if s.Source != nil {
		allErrs = append(allErrs, validateTransferSource(s, p.Child("source"))...)
	}
	return allErrs
}

// validateTransferSource checks the source of a declared upload: exactly
// one place the server reads, and nothing the client would have to send.
func validateTransferSource(s *vm.WukongFileTransferSpec, p *field.Path) field.ErrorList {
	src := s.Source
	var allErrs field.ErrorList
	if s.Operation != vm.OperationUpload {
		allErrs = append(allErrs, field.Forbidden(p, "only an upload has a source: the server copies it to remotePath"))
	}
	if s.Disk != "" {
		allErrs = append(allErrs, field.Forbidden(p, "a source is copied to remotePath, not to a disk"))
	}
	if s.LocalPath != "" {
		allErrs = append(allErrs, field.Forbidden(p.Root().Child("spec", "localPath"), "set localPath (a file the client sends) or source (a file the server reads), not both"))
	}
	n := 0
	if src.URL != nil {
		n++
		up := p.Child("url")
		allErrs = append(allErrs, validateHTTPURL(src.URL.URL, "", up.Child("url"))...)
		if u, err := url.Parse(src.URL.URL); err == nil && u.User != nil {
			allErrs = append(allErrs, field.Invalid(up.Child("url"), vm.RedactURL(src.URL.URL), "must not carry credentials: name a Secret in credentialsSecretRef"))
		}
		allErrs = append(allErrs, ValidateSHA256(src.URL.SHA256, up.Child("sha256"))...)
		if src.URL.SHA256 != "" && s.ExpectedSHA256 != "" && src.URL.SHA256 != s.ExpectedSHA256 {
			allErrs = append(allErrs, field.Invalid(up.Child("sha256"), src.URL.SHA256, "differs from spec.expectedSHA256"))
		}
		for _, r := range []struct {
			ref  *vm.LocalObjectReference
			name string
		}{{src.URL.CASecretRef, "caSecretRef"}, {src.URL.CredentialsSecretRef, "credentialsSecretRef"}} {
			if r.ref == nil {
				continue
			}
			if r.ref.Name == "" {
				allErrs = append(allErrs, field.Required(up.Child(r.name, "name"), "the name of a Secret in the transfer's namespace"))
			} else {
				allErrs = append(allErrs, validateDNSSubdomain(r.ref.Name, up.Child(r.name, "name"))...)
			}
		}
	}
	if src.ConfigMapKeyRef != nil || src.SecretKeyRef != nil {
		if src.ConfigMapKeyRef != nil && src.SecretKeyRef != nil {
			n++ // two sources; validateFileSource says so below
		}
		n++
		allErrs = append(allErrs, validateFileSource(&vm.CloudInitFileSource{ConfigMapKeyRef: src.ConfigMapKeyRef, SecretKeyRef: src.SecretKeyRef}, p)...)
	}
	if w := src.Wukong; w != nil {
		n++
		wp := p.Child("wukong")
		if w.Name == "" {
			allErrs = append(allErrs, field.Required(wp.Child("name"), "a Wukong in the transfer's namespace"))
		} else {
			allErrs = append(allErrs, validateDNSSubdomain(w.Name, wp.Child("name"))...)
		}
		allErrs = append(allErrs, ValidateRemotePath(w.Path, wp.Child("path"))...)
		if w.Name == s.WukongName && w.Path == s.RemotePath {
			allErrs = append(allErrs, field.Invalid(wp.Child("path"), w.Path, "is the target itself"))
		}
	}
	if n != 1 {
		allErrs = append(allErrs, field.Invalid(p, "", "set exactly one of url, configMapKeyRef, secretKeyRef and wukong"))
	}
	if src.Mode != "" {
		if _, err := ParseFileMode(src.Mode); err != nil {
			allErrs = append(allErrs, field.Invalid(p.Child("mode"), src.Mode, "must be an octal file mode such as 0644"))
		}
	}
	return allErrs
}

// ValidateSHA256 accepts "" or 64 lower-case hex digits.
func ValidateSHA256(sum string, p *field.Path) field.ErrorList {
	if sum != "" && !sha256RE.MatchString(sum) {
		return field.ErrorList{field.Invalid(p, sum, "must be 64 lower-case hex digits")}
	}
	return nil
}

// ValidateRemotePath accepts only absolute, clean paths without NUL bytes:
// what the guest sees must be exactly what the user wrote.
func ValidateRemotePath(pth string, p *field.Path) field.ErrorList {
	switch {
	case pth == "":
		return field.ErrorList{field.Required(p, "an absolute path inside the VM, such as /etc/app/config.yaml")}
	case strings.ContainsRune(pth, 0):
		return field.ErrorList{field.Invalid(p, pth, "must not contain NUL bytes")}
	case !strings.HasPrefix(pth, "/"):
		return field.ErrorList{field.Invalid(p, pth, "must be an absolute path (start with /)")}
	case path.Clean(pth) != pth:
		return field.ErrorList{field.Invalid(p, pth, fmt.Sprintf("must be a clean path without '.', '..' or repeated or trailing '/': use %q", path.Clean(pth)))}
	}
	return nil
}

func validatePositiveQuantity(q *resource.Quantity, p *field.Path) field.ErrorList {
	if q != nil && q.Sign() <= 0 {
		return field.ErrorList{field.Invalid(p, q.String(), "must be greater than zero")}
	}
	return nil
}

// MaxAgentRoots bounds httpConfig.roots: each is a flag of the agent and
// an os.Root it holds open.
const MaxAgentRoots = 16

// validateAgentRoots: absolute clean paths, none inside another, at least
// one when the method is http.
func validateAgentRoots(roots []string, required bool, p *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if len(roots) == 0 && required {
		return field.ErrorList{field.Required(p, "at least one guest directory the agent serves, such as /data")}
	}
	if len(roots) > MaxAgentRoots {
		return field.ErrorList{field.TooMany(p, len(roots), MaxAgentRoots)}
	}
	for i, r := range roots {
		if errs := ValidateRemotePath(r, p.Index(i)); len(errs) > 0 {
			allErrs = append(allErrs, errs...)
			continue
		}
		if len(r) > 4096 {
			allErrs = append(allErrs, field.TooLong(p.Index(i), "", 4096))
			continue
		}
		for j, o := range roots[:i] {
			switch {
			case o == r:
				allErrs = append(allErrs, field.Duplicate(p.Index(i), r))
			case o == "/" || strings.HasPrefix(r, o+"/"):
				allErrs = append(allErrs, field.Invalid(p.Index(i), r, fmt.Sprintf("lies inside roots[%d] (%s): roots may not nest", j, o)))
			case r == "/" || strings.HasPrefix(o, r+"/"):
				allErrs = append(allErrs, field.Invalid(p.Index(i), r, fmt.Sprintf("holds roots[%d] (%s): roots may not nest", j, o)))
			}
		}
	}
	return allErrs
}

func validatePort(port *int32, p *field.Path) field.ErrorList {
	if port == nil {
		return nil
	}
	var allErrs field.ErrorList
	for _, msg := range utilvalidation.IsValidPortNum(int(*port)) {
		allErrs = append(allErrs, field.Invalid(p, *port, msg))
	}
	return allErrs
}

func validateSecretRef(ref *vm.SecretReference, p *field.Path) field.ErrorList {
	if ref == nil {
		return nil
	}
	if ref.SecretName == "" {
		return field.ErrorList{field.Required(p.Child("secretName"), "the name of a Secret in the Wukong's namespace")}
	}
	return validateDNSSubdomain(ref.SecretName, p.Child("secretName"))
}

func validateDNSSubdomain(name string, p *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	for _, msg := range utilvalidation.IsDNS1123Subdomain(name) {
		allErrs = append(allErrs, field.Invalid(p, name, msg))
	}
	return allErrs
}

// validateProgress accepts "" or "N%" with N in 0..100.
func validateProgress(progress string, p *field.Path) field.ErrorList {
	if progress == "" {
		return nil
	}
	var n int
	if _, err := fmt.Sscanf(progress, "%d%%", &n); err != nil || n < 0 || n > 100 || fmt.Sprintf("%d%%", n) != progress {
		return field.ErrorList{field.Invalid(p, progress, "must be a percentage from 0% to 100%")}
	}
	return nil
}

// ValidateWukongFileOptions checks the query options of wukongs/files.
func ValidateWukongFileOptions(o *vm.WukongFileOptions) field.ErrorList {
	errs := ValidateRemotePath(o.Path, field.NewPath("path"))
	if o.Recursive && path.Clean("/"+o.Path) == "/" {
		// One request must not be able to wipe a VM.
		errs = append(errs, field.Forbidden(field.NewPath("recursive"), "a recursive delete of / is refused: remove the directories under it one by one"))
	}
	errs = append(errs, validateByteRange(o.Offset, o.Length)...)
	if o.Archive != "" && o.Archive != "tar" {
		errs = append(errs, field.NotSupported(field.NewPath("archive"), o.Archive, []string{"tar"}))
	}
	if o.Mode != "" {
		if _, err := ParseFileMode(o.Mode); err != nil {
			errs = append(errs, field.Invalid(field.NewPath("mode"), o.Mode, "must be octal permission bits such as 0644"))
		}
	}
	if o.Upload != "" && o.Upload != "create" && o.Upload != "replace" {
		errs = append(errs, field.NotSupported(field.NewPath("upload"), o.Upload, []string{"create", "replace"}))
	}
	if o.Transfer != "" {
		errs = append(errs, validateDNSSubdomain(o.Transfer, field.NewPath("transfer"))...)
	}
	errs = append(errs, validateHashStates(o)...)
	return append(errs, ValidateSHA256(o.SHA256, field.NewPath("sha256"))...)
}

// offsetOf is where a chunk begins.
func offsetOf(o *vm.WukongFileOptions) int64 {
	if o.Offset == nil {
		return 0
	}
	return *o.Offset
}

// validateHashStates checks the SHA-256 states a chunk of a chunked upload
// carries: both or neither, on a chunk (not the commit), the first holding
// exactly the bytes before the chunk's offset, the second more.
func validateHashStates(o *vm.WukongFileOptions) field.ErrorList {
	if o.SHA256From == "" && o.SHA256To == "" {
		return nil
	}
	from, to := field.NewPath("sha256From"), field.NewPath("sha256To")
	switch {
	case o.SHA256From == "" || o.SHA256To == "":
		return field.ErrorList{field.Required(from, "sha256From and sha256To go together: the states before and after the chunk")}
	case o.Transfer == "" || o.Commit:
		return field.ErrorList{field.Forbidden(from, "the states apply to a chunk of a chunked upload: give them with transfer=<record> and offset, not on the commit")}
	}
	var errs field.ErrorList
	_, before, err := hashstate.Decode(o.SHA256From)
	if err != nil {
		errs = append(errs, field.Invalid(from, o.SHA256From, err.Error()))
	} else if off := offsetOf(o); before != off {
		errs = append(errs, field.Invalid(from, o.SHA256From, fmt.Sprintf("holds the state after %d bytes, but the chunk begins at offset %d", before, off)))
	}
	if _, after, err := hashstate.Decode(o.SHA256To); err != nil {
		errs = append(errs, field.Invalid(to, o.SHA256To, err.Error()))
	} else if len(errs) == 0 && after < before {
		errs = append(errs, field.Invalid(to, o.SHA256To, fmt.Sprintf("holds the state after %d bytes, before sha256From's %d", after, before)))
	}
	return errs
}

// ValidateDiskExportOptions checks the query options of disks/export.
func ValidateDiskExportOptions(o *vm.DiskExportOptions) field.ErrorList {
	errs := validateByteRange(o.Offset, o.Length)
	switch o.Format {
	case "", vm.DiskFormatRaw, vm.DiskFormatQcow2:
	case vm.DiskFormatGzip:
		if o.Offset != nil || o.Length != nil || o.Transfer != "" {
			errs = append(errs, field.Forbidden(field.NewPath("format"), "offset, length and transfer apply to format=raw and qcow2: a gzip stream has no byte ranges"))
		}
	default:
		errs = append(errs, field.NotSupported(field.NewPath("format"), o.Format, sets.List(diskFormats)))
	}
	if o.Length != nil && *o.Length == 0 {
		errs = append(errs, field.Invalid(field.NewPath("length"), 0, "asks for no bytes"))
	}
	if o.Transfer != "" {
		errs = append(errs, validateDNSSubdomain(o.Transfer, field.NewPath("transfer"))...)
	}
	if o.Commit && o.Transfer == "" {
		errs = append(errs, field.Required(field.NewPath("transfer"), "commit ends a chunked export: give it with transfer=<download record>"))
	}
	if o.TTL != "" {
		if d, err := time.ParseDuration(o.TTL); err != nil || d <= 0 {
			errs = append(errs, field.Invalid(field.NewPath("ttl"), o.TTL, "must be a positive duration such as 30m or 4h"))
		}
	}
	return errs
}

// ValidateDiskUploadOptions checks the query options of disks/upload.
func ValidateDiskUploadOptions(o *vm.DiskUploadOptions) field.ErrorList {
	errs := ValidateSHA256(o.SHA256, field.NewPath("sha256"))
	if o.Attempt < 0 || o.Attempt > MaxUploadAttempt {
		errs = append(errs, field.Invalid(field.NewPath("attempt"), o.Attempt, fmt.Sprintf("must be between 1 and %d (0: not given)", MaxUploadAttempt)))
	}
	return errs
}

// MaxUploadAttempt bounds disks/upload's attempt: a number for the record, not a counter to grow.
const MaxUploadAttempt = 100

// validateByteRange refuses negative offsets and lengths, and a range whose
// end does not fit in an int64 (it would wrap into a bogus Range).
func validateByteRange(offset, length *int64) field.ErrorList {
	var errs field.ErrorList
	if offset != nil && *offset < 0 {
		errs = append(errs, field.Invalid(field.NewPath("offset"), *offset, "must not be negative"))
	}
	if length != nil && *length < 0 {
		errs = append(errs, field.Invalid(field.NewPath("length"), *length, "must not be negative"))
	}
	if len(errs) == 0 && offset != nil && length != nil && *offset > math.MaxInt64-*length {
		errs = append(errs, field.Invalid(field.NewPath("length"), *length, "offset+length overflows"))
	}
	return errs
}

// ParseFileMode parses octal permission bits such as 0644.
func ParseFileMode(s string) (os.FileMode, error) {
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil || v > 0o7777 {
		return 0, fmt.Errorf("bad mode %q", s)
	}
	return os.FileMode(v).Perm(), nil
}
