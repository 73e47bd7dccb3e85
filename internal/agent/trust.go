package agent

import (
	"bytes"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Trust store installation (reference §8.2 step 9): the host ships the
// sandbox's TLS interception CA, and host CAs the user chose to trust, in
// the initramfs (guestkernel.WriteTLSCerts). Before the root switch
// stageTLS copies them to /.msb/tls, which survives it; after the mounts and
// the network installTrust puts them into the guest root's trust store and
// returns the variables that point TLS libraries at it.
//
// The guest image is hostile in the sense that it may hold any symlink at any
// of the paths below. agentd is root in its own VM and chrooted into that
// image, so a symlink cannot escape anything; what it could do is make
// agentd write through it into a volume or the host-shared /.msb. So no
// write follows a symlink: every directory on the way must be a real
// directory (Lstat, component by component), and files are replaced by
// rename(2), which replaces a symlink rather than following it. Nothing else
// runs while PID 1 initialises, so the checks are not racing anyone.
//
// Failing to install is not fatal: runInit logs it and boots a guest that
// does not trust the CA (TLS through the interception then fails in the
// guest with a certificate error, which names the cause).
const (
	initramfsTLS   = "/msb/tls"  // guestkernel.TLSPath
	stagedTLS      = "/.msb/tls" // runtimeDir + "/tls"
	caFile         = "ca.pem"
	hostCAsFile    = "host-cas.pem"
	maxCertsBytes  = 1 << 20  // guestkernel.MaxTLSCertsBytes
	maxBundleBytes = 16 << 20 // a distro bundle is ~220 KiB
	bundleBegin    = "# BEGIN msb trusted CAs (written by agentd at every boot; edits are lost)"
	bundleEnd      = "# END msb trusted CAs"
)

// anchorDirs are the distros' directories of local trust anchors, which
// their update tools (update-ca-certificates, update-ca-trust, trust
// extract-compat) fold into the bundle. Only existing ones are written.
var anchorDirs = []string{
	"/usr/local/share/ca-certificates",          // Debian, Ubuntu, Alpine
	"/etc/pki/ca-trust/source/anchors",          // RHEL, Fedora
	"/etc/ca-certificates/trust-source/anchors", // Arch
	"/usr/share/pki/trust/anchors",              // SUSE (vendor)
	"/etc/pki/trust/anchors",                    // SUSE (admin)
}

// anchorNames are the CA's file names in each anchor directory: Debian's
// update-ca-certificates reads only *.crt, the p11-kit based tools read both
// and drop the duplicate, some read *.pem. Writing both covers them all.
var anchorNames = []string{"msb-ca.crt", "msb-ca.pem"}

// bundlePaths are the distros' CA bundles, in the order installTrust picks
// the first existing one; defaultBundle is created when none exists.
var bundlePaths = []string{
	"/etc/ssl/certs/ca-certificates.crt", // Debian, Ubuntu, Alpine, Arch
	"/etc/pki/tls/certs/ca-bundle.crt",   // RHEL, Fedora
	"/etc/ssl/ca-bundle.pem",             // SUSE
	"/etc/ssl/cert.pem",                  // Alpine (older), others
}

const defaultBundle = "/etc/ssl/certs/ca-certificates.crt"

// stageTLS copies ca.pem and host-cas.pem from src (the initramfs) to dst,
// and removes what a previous boot left in dst, so that dst holds exactly
// what this boot's host shipped.
func stageTLS(src, dst string) error {
	var errs []error
	for _, name := range []string{caFile, hostCAsFile} {
		b, err := readRegular(filepath.Join(src, name), false, maxCertsBytes)
		target := filepath.Join(dst, name)
		if errors.Is(err, fs.ErrNotExist) {
			if err := os.Remove(target); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
			continue
		}
		if err == nil {
			err = os.MkdirAll(dst, 0o755)
		}
		if err == nil {
			err = writeReplacing(target, b, 0o644)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("stage %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// installTrust installs the certificates staged in staged into the trust
// store of the guest root mounted at root (/ in the guest; a directory in
// tests), and returns the environment entries every exec should default to.
//
// With the interception CA it writes anchorNames into every existing
// anchorDirs entry; it then replaces the marked block at the end of the
// first existing bundlePaths entry (creating defaultBundle when there is
// none) with one holding the CA and the host CAs, so that a second boot
// neither appends twice nor keeps a CA the host no longer ships. With
// nothing staged it removes what an earlier boot installed. A symlinked
// bundle is read through the link and replaced by a regular file; the link's
// target is left alone.
//
// The environment is SSL_CERT_FILE, REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE
// naming the bundle, and NODE_EXTRA_CA_CERTS naming the staged CA; host CAs
// alone set none (reference §8.2 step 9). Errors are joined; installTrust
// does as much as it can.
func installTrust(root, staged string) (env []string, err error) {
	var errs []error
	ca, err := readCerts(filepath.Join(staged, caFile))
	if err != nil {
		errs = append(errs, err)
	}
	host, err := readCerts(filepath.Join(staged, hostCAsFile))
	if err != nil {
		errs = append(errs, err)
	}

	for _, dir := range anchorDirs {
		if checkDir(root, dir, false) != nil {
			continue
		}
		for _, name := range anchorNames {
			p := filepath.Join(root, dir, name)
			if ca != nil {
				err = writeReplacing(p, ca, 0o644)
			} else if err = os.Remove(p); errors.Is(err, fs.ErrNotExist) {
				err = nil
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("anchor %s: %w", filepath.Join(dir, name), err))
			}
		}
	}

	var block []byte
	if ca != nil || host != nil {
		block = append(append(append([]byte(bundleBegin+"\n"), ca...), host...), bundleEnd+"\n"...)
	}
	bundle, err := updateBundle(root, block)
	if err != nil {
		errs = append(errs, err)
	} else if ca != nil {
		env = append(env, "SSL_CERT_FILE="+bundle, "REQUESTS_CA_BUNDLE="+bundle, "CURL_CA_BUNDLE="+bundle)
	}
	if ca != nil {
		env = append(env, "NODE_EXTRA_CA_CERTS="+filepath.Join(staged, caFile))
	}
	return env, errors.Join(errs...)
}

// updateBundle replaces the marked block of the guest's bundle with block
// and returns the bundle's path in the guest ("" when block is empty and
// there was nothing to clean).
func updateBundle(root string, block []byte) (string, error) {
	for _, b := range bundlePaths {
		if checkDir(root, filepath.Dir(b), false) != nil {
			continue
		}
		p := filepath.Join(root, b)
		fi, err := os.Lstat(p)
		if err != nil || !(fi.Mode().IsRegular() || fi.Mode()&fs.ModeSymlink != 0) {
			continue
		}
		old, err := readRegular(p, true, maxBundleBytes)
		if err != nil {
			// A dangling or odd symlink: try the next bundle.
			continue
		}
		perm := fs.FileMode(0o644)
		if fi.Mode().IsRegular() {
			perm = fi.Mode().Perm()
		}
		updated := withBlock(old, block)
		if bytes.Equal(updated, old) {
			return b, nil
		}
		if err := writeReplacing(p, updated, perm); err != nil {
			return "", fmt.Errorf("bundle %s: %w", b, err)
		}
		return b, nil
	}
	if block == nil {
		return "", nil
	}
	if err := checkDir(root, filepath.Dir(defaultBundle), true); err != nil {
		return "", fmt.Errorf("bundle %s: %w", defaultBundle, err)
	}
	if err := writeReplacing(filepath.Join(root, defaultBundle), block, 0o644); err != nil {
		return "", fmt.Errorf("bundle %s: %w", defaultBundle, err)
	}
	return defaultBundle, nil
}

// withBlock returns bundle without its marked blocks, followed by block. A
// begin marker without an end marker (an edited file) is cut to the end.
func withBlock(bundle, block []byte) []byte {
	var out []byte
	rest := bundle
	for {
		i := markerIndex(rest, bundleBegin)
		if i < 0 {
			out = append(out, rest...)
			break
		}
		out = append(out, rest[:i]...)
		rest = rest[i:]
		j := markerIndex(rest, bundleEnd)
		if j < 0 {
			break
		}
		rest = rest[j+len(bundleEnd):]
		if len(rest) > 0 && rest[0] == '\n' {
			rest = rest[1:]
		}
	}
	if len(block) == 0 {
		return out
	}
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\n')
	}
	return append(out, block...)
}

// markerIndex returns the index of marker at the start of a line of b, or -1.
func markerIndex(b []byte, marker string) int {
	for off := 0; ; {
		i := bytes.Index(b[off:], []byte(marker))
		if i < 0 {
			return -1
		}
		if off+i == 0 || b[off+i-1] == '\n' {
			return off + i
		}
		off += i + 1
	}
}

// readCerts reads a staged PEM file: nil when absent, else its certificates
// re-encoded. Anything but CERTIFICATE blocks is an error, so that nothing
// else lands in a bundle.
func readCerts(name string) ([]byte, error) {
	b, err := readRegular(name, false, maxCertsBytes)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []byte
	for rest := b; ; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%s: %q block; want only certificates", name, blk.Type)
		}
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: blk.Type, Bytes: blk.Bytes})...)
	}
	if out == nil {
		return nil, fmt.Errorf("%s: no PEM certificate", name)
	}
	return out, nil
}

// readRegular reads a regular file of at most limit bytes. follow says
// whether a symlink as the last component is followed; O_NONBLOCK keeps a
// FIFO planted there from blocking the open.
func readRegular(name string, follow bool, limit int64) ([]byte, error) {
	flags := os.O_RDONLY | syscall.O_NONBLOCK
	if !follow {
		flags |= syscall.O_NOFOLLOW
	}
	f, err := os.OpenFile(name, flags, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file (%v)", name, fi.Mode().Type())
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, limit)
	}
	return b, nil
}

// checkDir checks that every component of dir (absolute, in the guest)
// below root is a directory and not a symlink; create makes missing ones.
func checkDir(root, dir string, create bool) error {
	p := root
	for _, c := range strings.Split(dir, "/") {
		if c == "" {
			continue
		}
		p = filepath.Join(p, c)
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) && create {
			if err = os.Mkdir(p, 0o755); err == nil {
				continue
			}
		}
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s: not a directory (%v)", p, fi.Mode().Type())
		}
	}
	return nil
}

// writeReplacing writes name through a temporary file in its directory
// renamed over it: a symlink at name is replaced, never followed, and a
// crash leaves the old or the new file, never half of one.
func writeReplacing(name string, data []byte, perm fs.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(name), ".msb-*.tmp")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), name)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// addEnvDefaults appends the entries of add whose key env does not set.
func addEnvDefaults(env, add []string) []string {
	set := make(map[string]bool, len(env))
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		set[k] = true
	}
	for _, kv := range add {
		if k, _, _ := strings.Cut(kv, "="); !set[k] {
			env = append(env, kv)
		}
	}
	return env
}
