package shim

import (
	"errors"
	"fmt"
	"testing"

	"github.com/msb-go/msb"
)

func TestExitStatus(t *testing.T) {
	tests := []struct {
		name string
		code int
		err  error
		want uint32
	}{
		{"success", 0, nil, 0},
		{"exit 3", 3, nil, 3},
		{"SIGKILL as the agent reports it", 137, nil, 137},
		{"SIGTERM", 143, nil, 143},
		{"not found", 0, &msb.ExecFailed{Kind: "not_found"}, 127},
		{"wrapped not executable", 0, fmt.Errorf("run x: %w", &msb.ExecFailed{Kind: "not_executable"}), 126},
		{"other exec failure", 0, &msb.ExecFailed{Kind: "bad_cwd"}, 1},
		{"lost sandbox", 0, errors.New("agent connection closed"), 255},
		{"out of range", 300, nil, 255},
		{"negative", -1, nil, 255},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := exitStatus(tc.code, tc.err); got != tc.want {
				t.Errorf("exitStatus(%d, %v) = %d; want %d", tc.code, tc.err, got, tc.want)
			}
		})
	}
}

func TestSignalStatus(t *testing.T) {
	for sig, want := range map[uint32]uint32{9: 137, 15: 143, 2: 130} {
		if got := signalStatus(sig); got != want {
			t.Errorf("signalStatus(%d) = %d; want %d", sig, got, want)
		}
	}
}
