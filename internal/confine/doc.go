// Package confine is how msb's host processes give up what they do not need
// before they handle guest-controlled bytes: Landlock rules for the files a
// process may touch (inherited by children, so a QEMU started afterwards is
// held to them too), and a seccomp allow-list with argument filters for the
// syscalls it may make (no_new_privs set with it).
//
// The sandbox process uses both on either backend: Landlock before the VM
// starts, seccomp once every file and socket it needs is open. Both are
// irreversible, so tests apply them in re-executed child processes.
package confine
