// Package vmtest is the shared support of tests that run real guests: the
// default guest image (built once per test binary, from the kernel
// internal/testenv finds), a QEMU driver under TCG (software emulation,
// which works on any test machine), short temporary directories for VM
// unix sockets, and the check that a test left no QEMU running.
//
// It is imported by _test.go files only (vmhost/qemu, vmhost/manager,
// vmhost/hostapi, vmhost/daemon). Like testenv, it fails a test loudly when
// a part is missing instead of skipping it.
//
// Files: image.go (Image), qemu.go (Driver, QEMUUnder, CheckNoQEMU),
// temp.go (ShortTemp).
package vmtest
