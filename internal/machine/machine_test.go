package machine

import (
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	ok := Spec{Kernel: "/k", VCPUs: 1, MemoryMiB: 256}
	tests := []struct {
		name    string
		mut     func(*Spec)
		wantErr string
	}{
		{"valid", func(*Spec) {}, ""},
		{"no kernel", func(s *Spec) { s.Kernel = "" }, "no kernel"},
		{"zero vcpus", func(s *Spec) { s.VCPUs = 0 }, "vcpus 0"},
		{"too many vcpus", func(s *Spec) { s.VCPUs = 9 }, "vcpus 9"},
		{"tiny memory", func(s *Spec) { s.MemoryMiB = 8 }, "memory 8"},
		{"long serial", func(s *Spec) { s.Disks = []Disk{{Path: "/d", Serial: strings.Repeat("x", 21)}} }, "serial"},
		{"comma serial", func(s *Spec) { s.Disks = []Disk{{Path: "/d", Serial: "a,b"}} }, "serial"},
		{"diskless path", func(s *Spec) { s.Disks = []Disk{{}} }, "disk 0: no path"},
		{"space in param", func(s *Spec) { s.Cmdline = []string{"a b"} }, "whitespace"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := ok
			tc.mut(&s)
			err := s.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v; want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate() = %v; want error containing %q", err, tc.wantErr)
			}
		})
	}
}
