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

package v1alpha1

// Names clients of the files subresource rely on.
const (
	// FilesWebSocketProtocol is the WebSocket subprotocol of wukongs/files:
	// binary messages carry bytes; an uploading client ends with one text
	// message; the server's last message is the record (or a Status) as JSON.
	FilesWebSocketProtocol = "v1.files.vm.novasphere.dev"

	// TransferHeader names the WukongFileTransfer of a streamed response.
	TransferHeader = "X-Wukong-Transfer"

	// AnnotationSourceID, on a record a client opened, identifies the local
	// source of a chunked upload, so that the client finds the record again
	// to resume after it crashed.
	AnnotationSourceID = "vm.novasphere.dev/source-id"

	// LabelWukong names the Wukong a record belongs to.
	LabelWukong = "vm.novasphere.dev/wukong"

	// LabelDeclared is "true" on a record a user created through the API
	// (a declared transfer, or the anchor of a chunked one), as opposed to
	// one the server made for a stream. The server sets it; users cannot.
	LabelDeclared = "vm.novasphere.dev/declared"
)
