package server

import (
	"errors"
	"testing"

	"github.com/hangar-vm/hangar/api"
)

func TestPlace(t *testing.T) {
	res := func(m int64, v int32) api.Resources { return api.Resources{MemoryMib: m, Vcpus: v} }
	big := candidate{ID: "big", Available: true, Free: res(8192, 16)}
	small := candidate{ID: "small", Available: true, Free: res(1024, 2)}
	down := candidate{ID: "down", Available: false, Free: res(65536, 64)}
	local := candidate{ID: "local", Available: true, Free: res(2048, 4), HasLocal: true}
	cached := candidate{ID: "cached", Available: true, Free: res(2048, 4), HasCached: true}
	fullLocal := candidate{ID: "full-local", Available: true, Free: res(128, 1), HasLocal: true}
	downLocal := candidate{ID: "down-local", Available: false, Free: res(8192, 8), HasLocal: true}
	tieA := candidate{ID: "a", Available: true, Free: res(4096, 4)}
	tieB := candidate{ID: "b", Available: true, Free: res(4096, 4)}
	moreCPU := candidate{ID: "c", Available: true, Free: res(4096, 8)}

	for _, tt := range []struct {
		name       string
		cands      []candidate
		d          demand
		want       string
		reason     string
		err        error
		errMessage string
	}{
		{"most free memory", []candidate{small, big, down}, demand{MemoryMiB: 512, VCPUs: 1}, "big", reasonFree, nil, ""},
		{"only one fits", []candidate{small, big}, demand{MemoryMiB: 4096, VCPUs: 1}, "big", reasonFree, nil, ""},
		{"vcpus count too", []candidate{small, big}, demand{MemoryMiB: 512, VCPUs: 8}, "big", reasonFree, nil, ""},
		{"unavailable never chosen", []candidate{down, small}, demand{MemoryMiB: 512, VCPUs: 1}, "small", reasonFree, nil, ""},
		{"local beats free memory", []candidate{big, cached, local}, demand{MemoryMiB: 512, VCPUs: 1}, "local", reasonLocal, nil, ""},
		{"cached beats free memory", []candidate{big, cached}, demand{MemoryMiB: 512, VCPUs: 1}, "cached", reasonCached, nil, ""},
		{"local without room loses", []candidate{fullLocal, big}, demand{MemoryMiB: 512, VCPUs: 1}, "big", reasonFree, nil, ""},
		{"local but unavailable loses", []candidate{downLocal, small}, demand{MemoryMiB: 512, VCPUs: 1}, "small", reasonFree, nil, ""},
		{"ties by vcpus then id", []candidate{tieB, tieA, moreCPU}, demand{MemoryMiB: 1, VCPUs: 1}, "c", reasonFree, nil, ""},
		{"ties by id", []candidate{tieB, tieA}, demand{MemoryMiB: 1, VCPUs: 1}, "a", reasonFree, nil, ""},
		{"exact fit", []candidate{small}, demand{MemoryMiB: 1024, VCPUs: 2}, "small", reasonFree, nil, ""},
		{"explicit honoured over local", []candidate{local, small}, demand{MemoryMiB: 512, VCPUs: 1, Host: "small"}, "small", reasonExplicit, nil, ""},
		{"explicit unknown", []candidate{small}, demand{MemoryMiB: 512, VCPUs: 1, Host: "nope"}, "", "", api.ErrNotFound, "host nope is not registered"},
		{"explicit unavailable", []candidate{down}, demand{MemoryMiB: 512, VCPUs: 1, Host: "down"}, "", "", api.ErrHostUnavailable, "host down is unavailable (missed heartbeats)"},
		{"explicit full", []candidate{small}, demand{MemoryMiB: 2048, VCPUs: 1, Host: "small"}, "", "", api.ErrNoCapacity, "host small has 1024 MiB and 2 vCPUs free; 2048 MiB and 1 vCPUs are needed"},
		{"nobody has room", []candidate{small, down}, demand{MemoryMiB: 4096, VCPUs: 1}, "", "", api.ErrNoCapacity, "no available host has 4096 MiB and 1 vCPUs free (1 available hosts)"},
		{"no hosts", nil, demand{MemoryMiB: 1, VCPUs: 1}, "", "", api.ErrNoCapacity, "no available host (0 registered, none heartbeating)"},
		{"all down", []candidate{down}, demand{MemoryMiB: 1, VCPUs: 1}, "", "", api.ErrNoCapacity, "no available host (1 registered, none heartbeating)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, reason, err := place(tt.cands, tt.d)
			if tt.err != nil {
				if !errors.Is(err, tt.err) || err.Error() != tt.errMessage {
					t.Fatalf("err %v, want %v %q", err, tt.err, tt.errMessage)
				}
				return
			}
			if err != nil || got != tt.want || reason != tt.reason {
				t.Fatalf("got %q %q %v, want %q %q", got, reason, err, tt.want, tt.reason)
			}
		})
	}
}
