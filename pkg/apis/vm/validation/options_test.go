package validation

import (
	"testing"

	"k8s.io/utils/ptr"

	"github.com/novasphere/wukong/pkg/apis/vm"
)

func TestValidateFileOptions(t *testing.T) {
	valid := vm.WukongFileOptions{Path: "/etc/app/config.yaml", Mode: "0600", SHA256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}
	if errs := ValidateWukongFileOptions(&valid); len(errs) != 0 {
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
		errs := ValidateWukongFileOptions(&o)
		if len(errs) != 1 || errs[0].Field != name {
			t.Errorf("%s: want one error on that field, got %v", name, errs)
		}
	}
}
