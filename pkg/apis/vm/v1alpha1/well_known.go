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
)
