package agent

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

func TestSyncClock(t *testing.T) {
	host := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		file    string
		guest   time.Time
		wantSet bool
		wantErr bool
	}{
		{name: "in sync", file: strconv.FormatInt(host.UnixNano(), 10), guest: host.Add(time.Second)},
		{name: "guest behind", file: strconv.FormatInt(host.UnixNano(), 10) + "\n", guest: host.Add(-time.Hour), wantSet: true},
		{name: "guest ahead", file: strconv.FormatInt(host.UnixNano(), 10), guest: host.Add(3 * time.Second), wantSet: true},
		{name: "garbage", file: "soon", guest: host, wantErr: true},
		{name: "implausible", file: "1", guest: host, wantErr: true},
		{name: "oversized", file: "1" + string(make([]byte, 100)), guest: host, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "host-clock")
			if err := os.WriteFile(p, []byte(tc.file), 0o644); err != nil {
				t.Fatal(err)
			}
			var set int64
			_, err := syncClock(p, tc.guest, func(ns int64) error { set = ns; return nil })
			if (err != nil) != tc.wantErr {
				t.Fatalf("syncClock error = %v; want error %v", err, tc.wantErr)
			}
			if (set != 0) != tc.wantSet || tc.wantSet && set != host.UnixNano() {
				t.Errorf("set %d; want set=%v to %d", set, tc.wantSet, host.UnixNano())
			}
		})
	}
	if _, err := syncClock(filepath.Join(t.TempDir(), "none"), host, nil); !os.IsNotExist(err) {
		t.Errorf("missing file: %v; want not-exist", err)
	}
}
