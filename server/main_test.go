package server_test

import (
	"os"
	"testing"

	"github.com/hangar-vm/hangar/internal/miniotest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	miniotest.CloseShared()
	os.Exit(code)
}
