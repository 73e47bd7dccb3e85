package agent

import (
	"os"
	"path/filepath"
	"testing"
)

func TestInstallScripts(t *testing.T) {
	src, dst := t.TempDir(), filepath.Join(t.TempDir(), "scripts")
	if err := installScripts(filepath.Join(src, "absent"), dst); err != nil {
		t.Fatalf("absent source: %v; want nil", err)
	}
	os.WriteFile(filepath.Join(src, "greet"), []byte("#!/bin/sh\necho hi\n"), 0o600)
	os.Mkdir(filepath.Join(src, "subdir"), 0o755)
	if err := installScripts(src, dst); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dst, "greet"))
	if err != nil || st.Mode().Perm() != 0o755 {
		t.Fatalf("installed script: %v, %v; want mode 0755", st, err)
	}
	if _, err := os.Stat(filepath.Join(dst, "subdir")); !os.IsNotExist(err) {
		t.Errorf("subdir copied: %v", err)
	}
}
