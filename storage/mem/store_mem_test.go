package mem_test

import (
	"testing"

	"github.com/hangar-vm/hangar/storage"
	"github.com/hangar-vm/hangar/storage/mem"
	"github.com/hangar-vm/hangar/storage/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storage.Store { return mem.New() })
}
