package qemu

import (
	"slices"
	"strings"
	"testing"

	"github.com/hangar-vm/hangar/vmhost"
)

func TestArgsPrivateMemory(t *testing.T) {
	cfg := vmhost.Config{Name: "t", MemoryMiB: 256, VCPUs: 1, Dir: "/run/vm", MemoryPath: "/mnt/lazy/memory", Boot: vmhost.Boot{Kernel: "/k"}}
	for _, private := range []bool{false, true} {
		m := machineArgs{Machine: "pc-q35-7.2", Accel: AccelTCG, CPU: "max", Config: cfg, Incoming: true, PrivateMemory: private}
		a := m.args()
		i := slices.Index(a, "-object")
		if i < 0 || i+1 >= len(a) {
			t.Fatalf("no -object in %q", a)
		}
		want := "share=on"
		if private {
			want = "share=off"
		}
		if !strings.HasSuffix(a[i+1], ",mem-path=/mnt/lazy/memory,"+want) {
			t.Errorf("private %v: memory backend %q, want mem-path on the lazy file and %s", private, a[i+1], want)
		}
	}
}
