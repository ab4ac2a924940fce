package hostapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/hangar-vm/hangar/api"
)

// FuzzRequestBody sends arbitrary bytes as the body of every operation
// that takes one: the answer is a success or a {code, message} of the
// documented codes, never a panic, a 500, or an error without a body.
func FuzzRequestBody(f *testing.F) {
	for _, seed := range []string{
		`{"name":"box","image":"default","memory_mib":128,"vcpus":1}`,
		`{"snapshot_id":"s-1","compression":{"algorithm":"zstd","level":1}}`,
		`{"snapshot_id":"s-1","compression":{"algorithm":"lz4","level":99}}`,
		`{"snapshot_id":"s-1","spec":{"name":"box","image":"default","memory_mib":128,"vcpus":1}}`,
		`{"instance_id":"i-2","spec":{"name":"b","image":"default","memory_mib":64,"vcpus":1}}`,
		`{"snapshot_id":"s-2","name":"n","kind":"stopped"}`,
		`{"name":"box","image":"default","memory_mib":128,"vcpus":1,"x":1}`,
		`{"name":"\u0000","image":"default","memory_mib":-1,"vcpus":1e9}`,
		`[]`, `null`, `{"a":`, "\xff\xfe",
	} {
		for op := range 5 {
			f.Add(uint8(op), []byte(seed))
		}
	}
	m := newFake(testDigest)
	s, err := New(m, Options{HostID: "host-a", Token: testToken, ImageDigest: testDigest, Capacity: api.Resources{MemoryMib: 1 << 20, Vcpus: 256}})
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	h := s.Handler()
	routes := []struct{ method, path string }{
		{"PUT", "/host/v1/instances/i-1"},
		{"POST", "/host/v1/instances/i-1/standby"},
		{"POST", "/host/v1/instances/i-1/restore"},
		{"POST", "/host/v1/instances/i-1/snapshots"},
		{"POST", "/host/v1/snapshots/s-1/fork"},
	}
	f.Fuzz(func(t *testing.T, op uint8, body []byte) {
		r := routes[int(op)%len(routes)]
		req := httptest.NewRequest(r.method, r.path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testToken)
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code >= 500 && w.Code != http.StatusServiceUnavailable {
			t.Fatalf("%s %s %q: %d %s", r.method, r.path, body, w.Code, w.Body)
		}
		if w.Code >= 400 {
			var e api.Error
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || !e.Code.Valid() || e.Message == "" || api.StatusFor(e.Code) != w.Code {
				t.Fatalf("%s %s %q: error body %d %s", r.method, r.path, body, w.Code, w.Body)
			}
		}
	})
}
