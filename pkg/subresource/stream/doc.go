// Package stream holds what every streaming subresource (wukongs/files,
// disks/export, disks/upload) shares and nothing else: the WebSocket
// framing, Status errors for the codes metav1 has no constructor for, byte
// ranges, the checks that tie a request to a chunked transfer's record, and
// the authorisation of the real verb of an upload over a WebSocket GET.
// It neither reaches VMs nor writes records.
package stream
