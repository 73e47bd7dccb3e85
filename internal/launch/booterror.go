package launch

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Stage names the phase of sandbox start-up that failed (reference §6).
type Stage string

// Stages, as written to boot-error.json.
const (
	StageMount   Stage = "mount"
	StageBuildVM Stage = "build_vm"
	StageConfig  Stage = "config"
	StageNetwork Stage = "network"
	StageImage   Stage = "image"
	StageOther   Stage = "other"
)

// Stable message prefixes for sandbox-process errors. Classify keys on them, so
// every error site that can end start-up should begin its message with one.
const (
	PrefixDatabaseConnect  = "database connect:"
	PrefixDatabasePragmas  = "database pragmas:"
	PrefixInsertRun        = "insert run:"
	PrefixMarkRunFailed    = "mark run failed:"
	PrefixSerializeStartup = "serialize startup:"
	PrefixConfigParse      = "config parse:"
	PrefixInvalidConfig    = "invalid config:"
	PrefixRootfs           = "rootfs:"
	PrefixTrampolineRootfs = "trampoline rootfs:"
	PrefixDiskFormat       = "disk format:"
	PrefixImageNotFound    = "image not found:"
	PrefixRuntimeMount     = "runtime mount:"
	PrefixMount            = "mount " // followed by "<tag>:"
	PrefixBuildVM          = "build VM:"
	PrefixVMEnter          = "VM enter:"
	PrefixNetwork          = "network:"
)

// BootError is the content of logs/boot-error.json: why the sandbox process
// could not start (reference §6).
//
// It is also the error the parent side returns for a sandbox that did not
// start (Name set); the SDK's public BootError is made from it.
type BootError struct {
	Time    time.Time `json:"t"`
	Stage   Stage     `json:"stage"`
	Errno   *int      `json:"errno"`
	Message string    `json:"message"`
	// Name is the sandbox, when the parent reports it; not in the file.
	Name string `json:"-"`
}

func (b *BootError) Error() string {
	if b.Name == "" {
		return fmt.Sprintf("boot failed: %s: %s", b.Stage, b.Message)
	}
	return fmt.Sprintf("failed to start %q: %s: %s", b.Name, b.Stage, b.Message)
}

// rfc3339Milli is RFC 3339 with millisecond precision; with a UTC time it ends
// in "Z" as the reference writes it.
const rfc3339Milli = "2006-01-02T15:04:05.000Z07:00"

type bootErrorJSON struct {
	Time    string `json:"t"`
	Stage   Stage  `json:"stage"`
	Errno   *int   `json:"errno"`
	Message string `json:"message"`
}

// MarshalJSON writes t as UTC RFC 3339 with milliseconds.
func (b BootError) MarshalJSON() ([]byte, error) {
	return json.Marshal(bootErrorJSON{
		Time:    b.Time.UTC().Format(rfc3339Milli),
		Stage:   b.Stage,
		Errno:   b.Errno,
		Message: b.Message,
	})
}

// UnmarshalJSON accepts any RFC 3339 time in t.
func (b *BootError) UnmarshalJSON(data []byte) error {
	var j bootErrorJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	t, err := time.Parse(time.RFC3339Nano, j.Time)
	if err != nil {
		return fmt.Errorf("boot error time: %w", err)
	}
	*b = BootError{Time: t, Stage: j.Stage, Errno: j.Errno, Message: j.Message}
	return nil
}

// Classify maps an error message to its stage with the reference §6 rules: the
// message is lowercased and the first matching stage in the order build_vm,
// mount, image, network, config wins; otherwise other.
func Classify(msg string) Stage {
	m := strings.ToLower(msg)
	has := func(subs ...string) bool {
		for _, s := range subs {
			if strings.Contains(m, s) {
				return true
			}
		}
		return false
	}
	starts := func(prefixes ...string) bool {
		for _, p := range prefixes {
			if strings.HasPrefix(m, p) {
				return true
			}
		}
		return false
	}
	switch {
	case starts("build vm") || has("vm enter", "tokio runtime"):
		return StageBuildVM
	case starts("mount ", "runtime mount") || has("virtiofs"):
		return StageMount
	case starts("rootfs") || has("trampoline rootfs", "disk format", "image not found"):
		return StageImage
	case has("network", "bind ", "address already in use", "smoltcp"):
		return StageNetwork
	case starts("database", "serialize startup", "insert run", "mark run failed") ||
		has("config parse", "invalid config"):
		return StageConfig
	}
	return StageOther
}

// osErrorSuffix matches the Rust-style "(os error N)" at the end of a message.
var osErrorSuffix = regexp.MustCompile(`\(os error (\d{1,9})\)\s*$`)

// ErrnoOf returns the errno behind err: a wrapped syscall.Errno, else a
// trailing "(os error N)" in the message, else nil.
func ErrnoOf(err error) *int {
	if err == nil {
		return nil
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		n := int(errno)
		return &n
	}
	if m := osErrorSuffix.FindStringSubmatch(err.Error()); m != nil {
		n, convErr := strconv.Atoi(m[1])
		if convErr == nil {
			return &n
		}
	}
	return nil
}

// NewBootError describes err as a boot error stamped with the current time.
// The stage comes from the outermost StageError's prefix when there is one,
// else from classifying the message.
func NewBootError(err error) BootError {
	msg := err.Error()
	stage := Classify(msg)
	var se *StageError
	if errors.As(err, &se) {
		stage = Classify(se.Error())
	}
	return BootError{
		Time:    time.Now().UTC(),
		Stage:   stage,
		Errno:   ErrnoOf(err),
		Message: msg,
	}
}

// WriteBootError writes b as pretty JSON to path through path+".tmp" and a
// rename, so a reader never sees a partial file.
func WriteBootError(path string, b BootError) error {
	data, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return fmt.Errorf("encode boot error: %w", err)
	}
	data = append(data, '\n')
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("write boot error: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write boot error: %w", err)
	}
	return nil
}

// maxBootErrorSize bounds what ReadBootError loads; real files are < 1 KiB.
const maxBootErrorSize = 1 << 20

// ReadBootError reads the boot error at path. It returns nil, nil when the file
// does not exist.
func ReadBootError(path string) (*BootError, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read boot error: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxBootErrorSize+1))
	if err != nil {
		return nil, fmt.Errorf("read boot error: %w", err)
	}
	if len(data) > maxBootErrorSize {
		return nil, fmt.Errorf("read boot error %s: %w", filepath.Base(path), ErrBootErrorTooLarge)
	}
	var b BootError
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("parse boot error: %w", err)
	}
	return &b, nil
}

// DeleteBootError removes the boot error at path; a missing file is not an error.
func DeleteBootError(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete boot error: %w", err)
	}
	return nil
}

// Errno values the hints key on (Linux numbering; 48 is EADDRINUSE on macOS,
// which the reference also recognises).
const (
	errnoENOENT           = 2
	errnoEACCES           = 13
	errnoEPERM            = 1
	errnoEROFS            = 30
	errnoEADDRINUSE       = 98
	errnoEADDRINUSEDarwin = 48
)

// Hints shown under a boot error.
const (
	HintMountNotFound  = "the host path for one of the mounts does not exist"
	HintMountNoAccess  = "the host path is not readable by msb (check permissions)"
	HintImageNotFound  = "rootfs not found — try `msb pull <image>` first"
	HintPortInUse      = "a port is already bound — try a different host port or stop the other process"
	HintQEMU           = "QEMU is missing or too old — install qemu-system-x86 (Debian) or set MSB_QEMU"
	HintKernel         = "the guest kernel was not found — run `make kernel` or set MSB_KERNEL"
	HintKVMAccess      = "/dev/kvm is not accessible — add yourself to the kvm group"
	HintBuildVMMissing = "QEMU or the guest kernel is missing — install qemu-system-x86 (Debian) or set MSB_QEMU; run `make kernel` or set MSB_KERNEL"
	HintDatabase       = "the database is locked or not writable — check the permissions of MSB_HOME and that no other msb holds it"
)

// Hint returns the advice for a boot error of the given stage and errno, or ""
// when there is none. It knows only stage and errno; BootError.Hint also uses
// the message to pick a more precise build_vm or config hint.
func Hint(stage Stage, errno *int) string {
	return hint(stage, errno, "")
}

// Hint returns the advice for b, or "" when there is none.
func (b BootError) Hint() string {
	return hint(b.Stage, b.Errno, strings.ToLower(b.Message))
}

func hint(stage Stage, errno *int, msg string) string {
	e := -1
	if errno != nil {
		e = *errno
	}
	switch stage {
	case StageMount:
		switch e {
		case errnoENOENT:
			return HintMountNotFound
		case errnoEACCES:
			return HintMountNoAccess
		}
	case StageImage:
		if e == errnoENOENT {
			return HintImageNotFound
		}
	case StageNetwork:
		if e == errnoEADDRINUSE || e == errnoEADDRINUSEDarwin {
			return HintPortInUse
		}
	case StageBuildVM:
		return buildVMHint(e, msg)
	case StageConfig:
		if e == errnoEACCES || e == errnoEPERM || e == errnoEROFS ||
			strings.Contains(msg, "database is locked") || strings.Contains(msg, "readonly database") ||
			strings.Contains(msg, "unable to open database") {
			return HintDatabase
		}
	}
	return ""
}

func buildVMHint(errno int, msg string) string {
	switch {
	case strings.Contains(msg, "/dev/kvm") && (errno == errnoEACCES || errno == errnoEPERM ||
		strings.Contains(msg, "permission denied")):
		return HintKVMAccess
	case strings.Contains(msg, "qemu") && (errno == errnoENOENT || strings.Contains(msg, "not found") ||
		strings.Contains(msg, "too old") || strings.Contains(msg, "no such file")):
		return HintQEMU
	case strings.Contains(msg, "kernel") && (errno == errnoENOENT || strings.Contains(msg, "not found") ||
		strings.Contains(msg, "no such file")):
		return HintKernel
	case msg == "" && errno == errnoENOENT:
		return HintBuildVMMissing
	case msg == "" && errno == errnoEACCES:
		return HintKVMAccess
	}
	return ""
}

// StageError is an error of one start-up step, carrying the reference's
// message prefix (one of the Prefix constants) as data: the boot error takes
// its stage from the prefix instead of classifying free text.
type StageError struct {
	Prefix string
	Err    error
}

// Fail wraps err as a failure of the step prefix names.
func Fail(prefix string, err error) error { return &StageError{Prefix: prefix, Err: err} }

func (e *StageError) Error() string {
	if strings.HasSuffix(e.Prefix, " ") {
		return e.Prefix + e.Err.Error()
	}
	return e.Prefix + " " + e.Err.Error()
}

func (e *StageError) Unwrap() error { return e.Err }
