// Package supervisor is the sandbox process (the hidden `msb sandbox` entry
// point): it builds the machine for one sandbox from its launch document
// (run row, initramfs, machine spec, devices, hardening), boots it on a VMM
// backend, serves the agent relay, and supervises it until it stops (signals,
// parent death, idle timeout, max duration, VM exit), recording why.
//
// The contract with the parent lives in internal/launch; the relay in
// internal/relay.
package supervisor
