package machine

import (
	"strings"
	"testing"
)

func TestPanicWatcher(t *testing.T) {
	tests := []struct {
		name   string
		chunks []string
		want   bool
	}{
		{"none", []string{"booting\n", "ok\n"}, false},
		{"one write", []string{"[ 1.0] Kernel panic - not syncing: Attempted to kill init!\n"}, true},
		{"split", []string{"Kernel pa", "nic - not sy", "ncing: x"}, true},
		{"byte by byte", strings.Split("xxKernel panic - not syncing", ""), true},
		{"near miss", []string{"Kernel panic - not syncin", "\n"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var w PanicWatcher
			for _, s := range tc.chunks {
				w.Write([]byte(s))
			}
			if got := w.Panicked(); got != tc.want {
				t.Errorf("Panicked = %v; want %v", got, tc.want)
			}
		})
	}
}
