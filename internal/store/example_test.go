package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/msb-go/msb/internal/home"
	"github.com/msb-go/msb/internal/store"
)

// Example shows the sequence "msb start NAME" follows: take the sandbox
// lock, reconcile, check the state, record the run; the sandbox process's
// exit observer then records the exit.
func Example() {
	ctx := context.Background()
	root, err := os.MkdirTemp("", "msb-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(root)
	h, err := home.At(filepath.Join(root, ".msb"))
	if err != nil {
		log.Fatal(err)
	}
	s, err := store.Open(ctx, h.DBPath())
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	const name = "web"
	if err := h.EnsureSandboxDirs(name); err != nil {
		log.Fatal(err)
	}
	unlock, err := store.Lock(ctx, h.LockPath(name))
	if err != nil {
		log.Fatal(err)
	}
	defer unlock()

	sb, err := s.CreateSandbox(ctx, name, json.RawMessage(`{"image":{"Oci":"python"}}`), store.StatusStopped)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := s.Reconcile(ctx); err != nil {
		log.Fatal(err)
	}
	if _, err := s.TransitionSandbox(ctx, sb.ID, store.StatusRunning, store.StatusStopped, store.StatusCrashed); err != nil {
		log.Fatal(err)
	}
	run, err := s.InsertRun(ctx, sb.ID, os.Getpid())
	if err != nil {
		log.Fatal(err)
	}
	code := 0
	if err := s.FinishRun(ctx, run.ID, store.ReasonCompleted, &code); err != nil {
		log.Fatal(err)
	}
	sb, err = s.Sandbox(ctx, name)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(sb.Name, sb.Status)

	_, err = s.CreateSandbox(ctx, name, json.RawMessage(`{}`), store.StatusStopped)
	fmt.Println(errors.Is(err, store.ErrExists))
	// Output:
	// web Stopped
	// true
}
