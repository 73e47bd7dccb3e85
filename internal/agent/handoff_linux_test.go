package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestResolveInit(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "init")
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(plain, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path    string
		wantErr string
	}{
		{path: exe},
		{path: plain, wantErr: "not an executable file"},
		{path: dir, wantErr: "not an executable file"},
		{path: filepath.Join(dir, "missing"), wantErr: "no such file"},
	}
	for _, tc := range tests {
		got, err := resolveInit(&InitSpec{Path: tc.path})
		if tc.wantErr == "" {
			if err != nil || got != tc.path {
				t.Errorf("resolveInit(%s) = %q, %v; want %q", tc.path, got, err, tc.path)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("resolveInit(%s) = %q, %v; want error containing %q", tc.path, got, err, tc.wantErr)
		}
	}
}
