package launch

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var parseHeartbeatTests = []struct {
	name    string
	data    string
	want    Heartbeat
	wantErr bool
}{
	{
		name: "agentd pretty json",
		data: "{\n  \"timestamp\": \"2026-05-03T10:00:05Z\",\n  \"active_sessions\": 2,\n  \"last_activity\": \"2026-05-03T10:00:01.5Z\"\n}",
		want: Heartbeat{
			Timestamp:      time.Date(2026, 5, 3, 10, 0, 5, 0, time.UTC),
			ActiveSessions: 2,
			LastActivity:   time.Date(2026, 5, 3, 10, 0, 1, 500_000_000, time.UTC),
		},
	},
	{
		name: "unknown keys ignored",
		data: `{"timestamp":"2026-05-03T10:00:05Z","active_sessions":0,"last_activity":"2026-05-03T10:00:01Z","x":1}`,
		want: Heartbeat{
			Timestamp:    time.Date(2026, 5, 3, 10, 0, 5, 0, time.UTC),
			LastActivity: time.Date(2026, 5, 3, 10, 0, 1, 0, time.UTC),
		},
	},
	{name: "empty", data: "", wantErr: true},
	{name: "truncated", data: `{"timestamp":"2026-05-03T10:00:05Z","active_se`, wantErr: true},
	{name: "bad time", data: `{"timestamp":"now","active_sessions":0,"last_activity":"then"}`, wantErr: true},
	{name: "missing last_activity", data: `{"timestamp":"2026-05-03T10:00:05Z","active_sessions":0}`, wantErr: true},
	{name: "negative sessions", data: `{"active_sessions":-1,"last_activity":"2026-05-03T10:00:01Z"}`, wantErr: true},
	{name: "sessions overflow", data: `{"active_sessions":1e100,"last_activity":"2026-05-03T10:00:01Z"}`, wantErr: true},
}

func TestParseHeartbeat(t *testing.T) {
	for _, tc := range parseHeartbeatTests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseHeartbeat([]byte(tc.data))
			if (err != nil) != tc.wantErr {
				t.Fatalf("ParseHeartbeat(%q) error = %v; want error %v", tc.data, err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseHeartbeat mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzParseHeartbeat(f *testing.F) {
	for _, tc := range parseHeartbeatTests {
		f.Add([]byte(tc.data))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		hb, err := ParseHeartbeat(data)
		if err != nil {
			return
		}
		if hb.ActiveSessions < 0 || hb.LastActivity.IsZero() {
			t.Errorf("ParseHeartbeat(%q) = %+v; accepted an invalid heartbeat", data, hb)
		}
		_ = Idle(hb.LastActivity.Add(time.Hour), &hb, time.Second)
	})
}

func TestReadHeartbeat(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "heartbeat.json")
	if err := os.WriteFile(good, []byte(parseHeartbeatTests[0].data), 0o644); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.json")
	if err := os.WriteFile(big, []byte(strings.Repeat(" ", maxHeartbeatSize+1)), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		path    string
		want    Heartbeat
		wantErr error
	}{
		{"good", good, parseHeartbeatTests[0].want, nil},
		{"missing", filepath.Join(dir, "nope.json"), Heartbeat{}, os.ErrNotExist},
		{"too large", big, Heartbeat{}, ErrHeartbeatTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReadHeartbeat(tc.path)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("ReadHeartbeat error = %v; want %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ReadHeartbeat mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestIdle(t *testing.T) {
	now := time.Date(2026, 5, 3, 10, 0, 0, 0, time.UTC)
	hb := func(sessions int, ago time.Duration) *Heartbeat {
		return &Heartbeat{Timestamp: now, ActiveSessions: sessions, LastActivity: now.Add(-ago)}
	}
	tests := []struct {
		name    string
		hb      *Heartbeat
		timeout time.Duration
		want    bool
	}{
		{"missing heartbeat", nil, time.Second, false},
		{"recent activity", hb(0, 5*time.Second), 10 * time.Second, false},
		{"exactly timeout", hb(0, 10*time.Second), 10 * time.Second, true},
		{"past timeout", hb(0, time.Minute), 10 * time.Second, true},
		{"active sessions keep it alive", hb(1, time.Hour), 10 * time.Second, false},
		{"timeout disabled", hb(0, time.Hour), 0, false},
		{"zero last activity", &Heartbeat{}, time.Second, false},
		{"activity in the future", hb(0, -time.Hour), time.Second, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Idle(now, tc.hb, tc.timeout); got != tc.want {
				t.Errorf("Idle(%v, %+v, %v) = %v; want %v", now, tc.hb, tc.timeout, got, tc.want)
			}
		})
	}
}
