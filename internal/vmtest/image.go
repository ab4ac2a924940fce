package vmtest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/internal/testenv"
	"github.com/hangar-vm/hangar/vmhost/guest"
)

var (
	imageOnce sync.Once
	image     guest.Image
	imageErr  error
)

// Image builds (or takes from the image cache) the default guest image,
// once per test binary: a failed build fails every test that asks.
func Image(t testing.TB) guest.Image {
	t.Helper()
	kernelDir := testenv.KernelDir(t)
	imageOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		image, imageErr = guest.Build(ctx, guest.BuildOptions{KernelDir: kernelDir})
	})
	if imageErr != nil {
		t.Fatalf("build guest image: %v", imageErr)
	}
	return image
}
