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

// FuzzPanicWatcher splits guest console output at an arbitrary point: the
// watcher sees the marker exactly when the whole text holds it.
func FuzzPanicWatcher(f *testing.F) {
	f.Add("Kernel panic - not syncing: x", 7)
	f.Add("no panic here", 3)
	f.Fuzz(func(t *testing.T, s string, cut int) {
		if cut < 0 || cut > len(s) {
			cut = len(s) / 2
		}
		var w PanicWatcher
		w.Write([]byte(s[:cut]))
		w.Write([]byte(s[cut:]))
		if got, want := w.Panicked(), strings.Contains(s, string(panicMarker)); got != want {
			t.Fatalf("Panicked() = %v for %q; want %v", got, s, want)
		}
	})
}
