package migstream_test

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/internal/testenv"
	"github.com/hangar-vm/hangar/vmhost/qemu/migstream"
)

// migrateOut runs a QEMU 7.2 q35 machine, stopped before its firmware
// runs, whose RAM is memPath (share=on or off), and migrates it with
// x-ignore-shared into streamPath, as hangar's standby does.
func migrateOut(t *testing.T, memPath string, memMiB int, share bool, streamPath string) {
	t.Helper()
	shareArg := "off"
	if share {
		shareArg = "on"
	}
	cmd := exec.Command(testenv.QEMUBinary(t), "-nodefaults", "-no-user-config", "-display", "none",
		"-machine", "q35,accel=tcg,memory-backend=ram0", "-m", fmt.Sprintf("%dM", memMiB),
		"-object", fmt.Sprintf("memory-backend-file,id=ram0,size=%dM,mem-path=%s,share=%s", memMiB, memPath, shareArg),
		"-S", "-qmp", "stdio")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	lines := bufio.NewScanner(stdout)
	lines.Buffer(nil, 1<<20)
	call := func(cmd string, args any) map[string]any {
		b, _ := json.Marshal(map[string]any{"execute": cmd, "arguments": args})
		if _, err := stdin.Write(append(b, '\n')); err != nil {
			t.Fatal(err)
		}
		for lines.Scan() {
			var m map[string]any
			if err := json.Unmarshal(lines.Bytes(), &m); err != nil {
				t.Fatalf("qmp: %v: %s", err, lines.Bytes())
			}
			if e, ok := m["error"]; ok {
				t.Fatalf("qmp %s: %v", cmd, e)
			}
			if r, ok := m["return"]; ok {
				r, _ := r.(map[string]any)
				return r
			}
		}
		t.Fatalf("qmp %s: no answer: %v", cmd, lines.Err())
		return nil
	}
	lines.Scan() // greeting
	call("qmp_capabilities", map[string]any{})
	call("migrate-set-capabilities", map[string]any{"capabilities": []map[string]any{{"capability": "x-ignore-shared", "state": true}}})
	call("migrate-set-parameters", map[string]any{"max-bandwidth": int64(1) << 40})
	call("migrate", map[string]any{"uri": "exec:cat > " + streamPath})
	for {
		st := call("query-migrate", map[string]any{})
		if st["status"] == "completed" {
			break
		}
		if st["status"] == "failed" {
			t.Fatalf("migration failed: %v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	call("quit", map[string]any{})
}

// TestRealStreams converts what QEMU writes for a share=off machine and
// compares it with what the same QEMU writes for the same machine over the
// same memory file with share=on: the memory file comes out equal to the
// one the guest ran from, and the stream equal byte for byte up to the
// device sections (whose content, such as the RTC, moves with time).
func TestRealStreams(t *testing.T) {
	dir := t.TempDir()
	const memMiB = 64
	mem := filepath.Join(dir, "mem")
	f, err := os.Create(mem)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(memMiB << 20)
	// Data in scattered places (first 4 MiB, a page at 40 MiB, the last
	// page), holes elsewhere.
	for _, r := range [][2]int64{{0, 4 << 20}, {40 << 20, 4096}, {memMiB<<20 - 4096, 4096}} {
		b := make([]byte, r[1])
		rand.Read(b)
		f.WriteAt(b, r[0])
	}
	f.Close()
	want, _ := os.ReadFile(mem)

	off, on := filepath.Join(dir, "off.stream"), filepath.Join(dir, "on.stream")
	migrateOut(t, mem, memMiB, false, off)
	migrateOut(t, mem, memMiB, true, on)

	in, err := os.Open(off)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	convMem, err := os.Create(filepath.Join(dir, "converted.mem"))
	if err != nil {
		t.Fatal(err)
	}
	defer convMem.Close()
	var out bytes.Buffer
	st, err := migstream.Convert(in, &out, convMem, "ram0")
	if err != nil {
		t.Fatalf("convert: %v", err)
	}
	t.Logf("converted: %+v", st)
	if st.Pages != (4<<20)/4096+2 || st.Pages+st.ZeroPages != memMiB<<20/4096 {
		t.Errorf("pages %d, zero pages %d: want %d and the rest of %d", st.Pages, st.ZeroPages, (4<<20)/4096+2, memMiB<<20/4096)
	}
	got, _ := os.ReadFile(convMem.Name())
	if !bytes.Equal(got, want) {
		t.Error("converted memory file differs from the memory the guest ran from")
	}
	var fst syscall.Stat_t
	syscall.Fstat(int(convMem.Fd()), &fst)
	if alloc := fst.Blocks * 512; alloc > (4<<20)+(1<<20) {
		t.Errorf("converted memory file has %d bytes allocated, want about 4 MiB (zero pages are holes)", alloc)
	}

	shared, err := os.ReadFile(on)
	if err != nil {
		t.Fatal(err)
	}
	onSt, err := migstream.Convert(bytes.NewReader(shared), io.Discard, discardMem{}, "ram0")
	if err != nil || onSt.Pages+onSt.ZeroPages != 0 {
		t.Fatalf("the share=on stream: %+v, %v; want no ram0 page", onSt, err)
	}
	ramPart := st.OutBytes - st.TailBytes
	if onSt.OutBytes-onSt.TailBytes != ramPart || !bytes.Equal(out.Bytes()[:ramPart], shared[:ramPart]) {
		t.Fatalf("converted stream's first %d bytes differ from the share=on stream's %d", ramPart, onSt.OutBytes-onSt.TailBytes)
	}
	if out.Len() != len(shared) {
		t.Errorf("converted stream is %d bytes, the share=on one %d", out.Len(), len(shared))
	}
	if n := strings.Count(out.String(), "ram0"); n != 1 {
		t.Errorf("ram0 named %d times in the converted stream, want once (its block list entry)", n)
	}
}

type discardMem struct{}

func (discardMem) WriteAt(p []byte, off int64) (int, error) { return len(p), nil }
func (discardMem) Truncate(int64) error                     { return nil }
