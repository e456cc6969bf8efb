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

// Package stream holds what every streaming subresource (wukongs/files,
// disks/export, disks/upload) shares and nothing else: the WebSocket
// framing, Status errors for the codes metav1 has no constructor for, byte
// ranges, the checks that tie a request to a chunked transfer's record, the
// authorisation of the real verb of an upload over a WebSocket GET, the
// limits on concurrent streams (limits.go) and the idle timeouts (idle.go).
// It neither reaches VMs nor writes records.
package stream
