package store

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestTryLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	unlock, err := TryLock(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := TryLock(path); !errors.Is(err, ErrBusy) {
		t.Errorf("TryLock(held) = %v; want ErrBusy", err)
	}
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
	unlock2, err := TryLock(path)
	if err != nil {
		t.Fatalf("TryLock(after unlock) = %v; want success", err)
	}
	unlock2()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("lock file mode = %v; want 0600", got)
	}
	if _, err := TryLock(filepath.Join(t.TempDir(), "missing", "lock")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("TryLock(missing dir) = %v; want fs.ErrNotExist", err)
	}
}

func TestLockWaitsAndHonoursContext(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	unlock, err := Lock(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := Lock(ctx, path); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Lock(held, short ctx) = %v; want DeadlineExceeded", err)
	}

	got := make(chan error, 1)
	go func() {
		u, err := Lock(t.Context(), path)
		if err == nil {
			u()
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("Lock returned %v while the lock was held", err)
	case <-time.After(50 * time.Millisecond):
	}
	unlock()
	select {
	case err := <-got:
		if err != nil {
			t.Errorf("Lock after release = %v; want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Lock did not acquire after release")
	}
}

// A waiter must not end up holding a lock on an unlinked inode when the
// sandbox directory is removed under it (start racing rm).
func TestLockFollowsRemovedFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sandbox")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "lock")
	unlock, err := Lock(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		_, err := Lock(t.Context(), path)
		got <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	unlock()
	select {
	case err := <-got:
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Lock after rm = %v; want fs.ErrNotExist", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Lock did not return after rm")
	}
}

func TestSameFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if same, err := sameFile(f, path); err != nil || !same {
		t.Errorf("sameFile(open file) = %v, %v; want true", same, err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if same, err := sameFile(f, path); err != nil || same {
		t.Errorf("sameFile(removed) = %v, %v; want false", same, err)
	}
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if same, err := sameFile(f, path); err != nil || same {
		t.Errorf("sameFile(replaced) = %v, %v; want false", same, err)
	}
}
