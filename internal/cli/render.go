package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/msb-go/msb"
	"github.com/msb-go/msb/internal/store"
)

// renderError prints err for a user, with hints where msb knows the likely
// fix, and returns the exit code.
func renderError(w io.Writer, err error) int {
	var be *msb.BootError
	if errors.As(err, &be) {
		fmt.Fprintf(w, "error: failed to start %q\n", be.Name)
		fmt.Fprintf(w, "  → %s: %s\n", be.Stage, be.Message)
		if be.Hint != "" {
			fmt.Fprintf(w, "  → hint: %s\n", be.Hint)
		}
		fmt.Fprintf(w, "  → run `msb logs --source system %s` for full diagnostics\n", be.Name)
		return 1
	}
	var ef *msb.ExecFailed
	if errors.As(err, &ef) {
		fmt.Fprintf(w, "error: failed to exec %q\n", ef.Cmd)
		cause := fmt.Sprintf("%s: %s", execLabel(ef.Kind), ef.Message)
		if ef.ErrnoName != "" {
			cause += " (" + ef.ErrnoName + ")"
		}
		fmt.Fprintf(w, "  → %s\n", cause)
		if h := execHint(ef); h != "" {
			fmt.Fprintf(w, "  → hint: %s\n", h)
		}
		return ef.ExitCode()
	}
	var te *msb.TimeoutError
	if errors.As(err, &te) {
		fmt.Fprintf(w, "error: %v\n", te)
		return te.ExitCode()
	}
	fmt.Fprintf(w, "error: %v\n", err)
	switch {
	case errors.Is(err, msb.ErrNotFound):
		fmt.Fprintln(w, "  → hint: `msb ls` lists the sandboxes that exist")
	case errors.Is(err, msb.ErrNotRunning):
		fmt.Fprintln(w, "  → hint: start it with `msb start <name>`")
	case errors.Is(err, store.ErrBusy):
		fmt.Fprintln(w, "  → hint: another process holds the state store's write lock (a long msb command, or one that is stuck); retry, or find it with `fuser $MSB_HOME/db/msb.db`")
	}
	return 1
}

func execLabel(kind string) string {
	switch kind {
	case "not_found":
		return "command not found"
	case "bad_cwd":
		return "working directory not found"
	case "permission_denied":
		return "permission denied"
	case "not_executable":
		return "not executable"
	case "bad_args":
		return "bad arguments"
	case "resource_limit":
		return "resource limit reached"
	case "out_of_memory":
		return "out of memory"
	}
	return "spawn failed"
}

func execHint(ef *msb.ExecFailed) string {
	switch ef.Kind {
	case "not_found":
		return fmt.Sprintf("check that %q exists in the sandbox and is on PATH (`msb exec <name> -- which %s`)", ef.Cmd, ef.Cmd)
	case "bad_cwd":
		return "create the directory first or pick another with -w"
	case "permission_denied":
		return "make it executable (chmod +x) or run as another user with -u"
	case "not_executable":
		return "the file is not a program for this machine: check its architecture or its #! interpreter"
	case "bad_args":
		return "the argument list is too long, has a symlink loop, or contains NUL bytes"
	case "resource_limit":
		return "raise the limit with --rlimit or close unused processes"
	case "out_of_memory":
		return "give the sandbox more memory with -m"
	}
	return ""
}

// parseMemory parses "512", "512M", "512MiB", "1G", "1GiB" into MiB.
func parseMemory(s string) (int, error) {
	t := strings.TrimSpace(strings.ToUpper(s))
	mult := 1
	switch {
	case strings.HasSuffix(t, "GIB"), strings.HasSuffix(t, "GB"), strings.HasSuffix(t, "G"):
		mult = 1024
		t = strings.TrimRight(t, "GIB")
	case strings.HasSuffix(t, "MIB"), strings.HasSuffix(t, "MB"), strings.HasSuffix(t, "M"):
		t = strings.TrimRight(t, "MIB")
	}
	n, err := strconv.Atoi(t)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("memory %q: want a size like 512M or 1G", s)
	}
	return n * mult, nil
}

// writeJSON prints v as indented JSON, the --format json of every command.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // ports read 127.0.0.1:8080->80/tcp
	return enc.Encode(v)
}

// writeJSONLine writes v as one line of JSON (for streams: --watch, --json).
func writeJSONLine(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// checkFormat validates a --format value against the formats a command
// prints.
func checkFormat(format string, allowed ...string) error {
	for _, a := range allowed {
		if format == a {
			return nil
		}
	}
	return fmt.Errorf("--format %q: want %s", format, strings.Join(allowed, " or "))
}
