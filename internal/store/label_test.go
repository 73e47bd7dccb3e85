package store

import (
	"context"
	"encoding/json"
	"maps"
	"testing"
)

func TestSandboxLabels(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	a, err := s.CreateSandbox(ctx, "a", json.RawMessage(`{}`), StatusStopped)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.CreateSandbox(ctx, "b", json.RawMessage(`{}`), StatusStopped)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetSandboxLabels(ctx, a.ID, map[string]string{"team": "x", "env": "dev"}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetSandboxLabels(ctx, b.ID, map[string]string{"team": "y"}); err != nil {
		t.Fatal(err)
	}
	// Replacing drops the old set.
	if err := s.SetSandboxLabels(ctx, b.ID, map[string]string{"team": "z"}); err != nil {
		t.Fatal(err)
	}
	got, err := s.SandboxLabels(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int64]map[string]string{a.ID: {"team": "x", "env": "dev"}, b.ID: {"team": "z"}}
	if len(got) != len(want) || !maps.Equal(got[a.ID], want[a.ID]) || !maps.Equal(got[b.ID], want[b.ID]) {
		t.Errorf("SandboxLabels = %v; want %v", got, want)
	}
	if one, err := s.SandboxLabelsOf(ctx, a.ID); err != nil || !maps.Equal(one, want[a.ID]) {
		t.Errorf("SandboxLabelsOf(a) = %v, %v; want %v", one, err, want[a.ID])
	}
	// Deleting the sandbox deletes its labels (ON DELETE CASCADE).
	if err := s.DeleteSandbox(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if one, err := s.SandboxLabelsOf(ctx, a.ID); err != nil || len(one) != 0 {
		t.Errorf("SandboxLabelsOf(deleted) = %v, %v; want empty", one, err)
	}
}
