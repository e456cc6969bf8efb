package wukong

import (
	"testing"

	"k8s.io/utils/ptr"

	"github.com/novasphere/wukong/pkg/apis/vm"
)

func TestParseRange(t *testing.T) {
	const size = 100
	tests := []struct {
		hdr           string
		start, length int64
		ok            bool
	}{
		{"bytes=0-9", 0, 10, true},
		{"bytes=90-", 90, 10, true},
		{"bytes=90-500", 90, 10, true},
		{"bytes=-5", 95, 5, true},
		{"bytes=-500", 0, 100, true},
		{"bytes=0-0", 0, 1, true},
		{"bytes=0-1,5-6", 0, -1, true}, // several ranges: the whole file
		{"items=0-1", 0, -1, true},     // another unit: ignored
		{"bytes=100-", 0, 0, false},
		{"bytes=9-1", 0, 0, false},
		{"bytes=-0", 0, 0, false},
		{"bytes=x-1", 0, 0, false},
		{"bytes=5", 0, 0, false},
	}
	for _, tt := range tests {
		start, length, ok := parseRange(tt.hdr, size)
		if ok != tt.ok || (ok && (start != tt.start || length != tt.length)) {
			t.Errorf("parseRange(%q) = %d, %d, %v; want %d, %d, %v", tt.hdr, start, length, ok, tt.start, tt.length, tt.ok)
		}
	}
}

func TestValidateFileOptions(t *testing.T) {
	valid := vm.WukongFileOptions{Path: "/etc/app/config.yaml", Mode: "0600", SHA256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}
	if errs := validateFileOptions(&valid); len(errs) != 0 {
		t.Fatalf("valid options refused: %v", errs)
	}
	for name, o := range map[string]vm.WukongFileOptions{
		"path":    {Path: "relative"},
		"offset":  {Path: "/a", Offset: ptr.To[int64](-1)},
		"length":  {Path: "/a", Length: ptr.To[int64](-1)},
		"archive": {Path: "/a", Archive: "zip"},
		"mode":    {Path: "/a", Mode: "rwx"},
		"sha256":  {Path: "/a", SHA256: "ABC"},
	} {
		errs := validateFileOptions(&o)
		if len(errs) != 1 || errs[0].Field != name {
			t.Errorf("%s: want one error on that field, got %v", name, errs)
		}
	}
}
