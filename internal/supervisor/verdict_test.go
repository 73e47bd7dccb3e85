package supervisor

import (
	"errors"
	"strings"
	"testing"

	"github.com/msb-go/msb/internal/store"
)

func TestVerdict(t *testing.T) {
	vmmErr := errors.New("qemu: signal: killed")
	tests := []struct {
		name      string
		requested store.TerminationReason
		vmmErr    error
		panicked  bool
		want      store.TerminationReason
		wantCode  int
		wantHint  string // substring; "" means no hint
	}{
		{"requested stop", store.ReasonCompleted, nil, false, store.ReasonCompleted, 0, ""},
		// A guest can print the panic marker itself; during a stop the
		// host asked for, it only adds a hint.
		{"requested stop, panic text on console", store.ReasonCompleted, nil, true, store.ReasonCompleted, 0, "kernel panic"},
		{"idle timeout, panic text", store.TerminationReason("IdleTimeout"), nil, true, store.TerminationReason("IdleTimeout"), 0, "kernel panic"},
		{"unrequested exit", "", nil, false, store.ReasonFailed, 1, "without a stop request"},
		{"unrequested exit after a panic", "", nil, true, store.ReasonFailed, 1, "kernel panic"},
		{"unrequested VMM failure", "", vmmErr, false, store.ReasonFailed, 1, "without a stop request"},
		{"requested, VM killed after the grace", store.ReasonCompleted, vmmErr, false, store.ReasonFailed, 1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, code, hint := verdict(tt.requested, tt.vmmErr, tt.panicked)
			if got != tt.want || code != tt.wantCode {
				t.Errorf("verdict() = %q, %d; want %q, %d", got, code, tt.want, tt.wantCode)
			}
			if (tt.wantHint == "") != (hint == "") || !strings.Contains(hint, tt.wantHint) {
				t.Errorf("verdict() hint = %q; want one containing %q", hint, tt.wantHint)
			}
		})
	}
}
