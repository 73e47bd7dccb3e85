// Package e2e holds msb's end-to-end tests: the real guest kernel and agentd
// booted under QEMU (TCG on machines without hardware virtualization). They
// skip when QEMU or the kernel is missing, and fail instead under
// MSB_REQUIRE_E2E=1, which CI sets. Run them serially (-p 1): TCG guests are
// CPU-bound.
package e2e
