//go:build linux

package kvmtest

import (
	"errors"
	"fmt"
	"testing"

	"github.com/msb-go/msb/internal/vmm/kvm"
)

// recordTB captures Skipf/Fatalf instead of stopping the goroutine.
type recordTB struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (r *recordTB) Helper() {}
func (r *recordTB) Skipf(format string, args ...any) {
	r.skipped, r.msg = true, fmt.Sprintf(format, args...)
}
func (r *recordTB) Fatalf(format string, args ...any) {
	r.failed, r.msg = true, fmt.Sprintf(format, args...)
}

func TestRequireUnusable(t *testing.T) {
	absent := func() (*kvm.System, error) { return nil, errors.New("open /dev/kvm: no such file or directory") }
	tests := []struct {
		env                  string
		wantSkip, wantFailed bool
	}{
		{"", true, false},
		{"0", true, false},
		{"1", false, true},
	}
	for _, tc := range tests {
		t.Run("MSB_REQUIRE_KVM="+tc.env, func(t *testing.T) {
			t.Setenv(RequireEnv, tc.env)
			r := &recordTB{TB: t}
			if sys := require(r, absent); sys != nil {
				t.Errorf("require() = %v; want nil", sys)
			}
			if r.skipped != tc.wantSkip || r.failed != tc.wantFailed {
				t.Errorf("skipped=%v failed=%v (%q); want skipped=%v failed=%v", r.skipped, r.failed, r.msg, tc.wantSkip, tc.wantFailed)
			}
		})
	}
}

func TestRequireUsable(t *testing.T) {
	// On a host with /dev/kvm this returns an open System; elsewhere it
	// skips, which is exactly the behaviour under test.
	sys := Require(t)
	if v, err := sys.APIVersion(); err != nil || v != kvm.KVM_API_VERSION {
		t.Errorf("APIVersion() = %d, %v; want %d", v, err, kvm.KVM_API_VERSION)
	}
}
