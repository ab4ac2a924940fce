package register

import (
	"math/rand/v2"
	"net/http"
	"time"
)

// backoff is the wait before retry number attempt (0-based): min doubling
// up to max, then a random point in its upper half ("equal jitter"), so
// that hosts that failed together spread out but still back off.
func backoff(minWait, maxWait time.Duration, attempt int) time.Duration {
	d := minWait
	for i := 0; i < attempt && d < maxWait; i++ {
		d *= 2
	}
	d = min(d, maxWait)
	if d <= 0 {
		return 0
	}
	half := d / 2
	return half + rand.N(half+1)
}

// retryBackoff is backoff as a retryablehttp.Backoff. A Retry-After from a
// 429 or 503 is honoured up to max.
func retryBackoff(minWait, maxWait time.Duration, attempt int, resp *http.Response) time.Duration {
	if resp != nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
		if s := resp.Header.Get("Retry-After"); s != "" {
			if secs, err := time.ParseDuration(s + "s"); err == nil && secs > 0 {
				return min(secs, maxWait)
			}
		}
	}
	return backoff(minWait, maxWait, attempt)
}
