package msb_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/msb-go/msb"
)

// Saving a sandbox's disk as a snapshot, booting a copy of it, and moving
// it to another machine as one file.
func ExampleSandbox_Snapshot() {
	ctx := context.Background()
	sb, err := msb.Create(ctx, "dev", msb.WithImage("python:3.12"))
	if err != nil {
		log.Fatal(err)
	}
	if _, err := sb.Exec(ctx, "pip", []string{"install", "requests"}); err != nil {
		log.Fatal(err)
	}
	// A snapshot needs a stopped sandbox: a running guest's disk is not
	// consistent.
	if err := sb.Stop(ctx, 10*time.Second); err != nil {
		log.Fatal(err)
	}
	snap, err := sb.Snapshot(ctx, "py-requests", msb.WithSnapshotLabel("team", "ml"))
	if err != nil {
		log.Fatal(err)
	}
	sb.Close()
	fmt.Println(snap.ID, snap.AllocatedBytes, "bytes on disk")

	// A new sandbox on a copy of that disk, on the snapshot's image.
	copy, err := msb.Create(ctx, "", msb.FromSnapshot("py-requests"))
	if err != nil {
		log.Fatal(err)
	}
	defer msb.Remove(ctx, copy.Name(), true)
	defer copy.Close()

	// One file for another machine; there: msb.ImportSnapshot(ctx,
	// "py-requests.tar.zst", "py-requests") after pulling python:3.12.
	f, err := os.Create("py-requests.tar.zst")
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	if err := msb.ExportSnapshot(ctx, "py-requests", f); err != nil {
		log.Fatal(err)
	}
}
