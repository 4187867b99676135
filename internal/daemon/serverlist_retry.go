package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
)

// A node of the fleet (an agent's hello, a balancer node's poll) calls
// the servers of its serverList until one answers; when a whole round
// failed it waits before the next (retryWait). Two failures say that the
// cluster is alive and electing a leader rather than down: a 503 (a
// server that knows no leader yet, or a new leader starting its apps),
// and a failed redirect (a follower answered with a 307 to the leader it
// knew, which is gone: a follower names the dead leader for up to its
// heartbeat timeout). After those the node asks again in short steps
// (electionRetry) instead of backing off as from servers that are all
// down, so it finds the new leader within a step of its election.

// errFollowSoon marks a failure after which the node calls again soon:
// the servers are up and electing a leader (see above).
var errFollowSoon = errors.New("the server asks to call again soon")

// electionRetry is the wait after a round that failed with errFollowSoon.
const electionRetry = 250 * time.Millisecond

// retryWait is the wait after a round of the servers failed with err,
// last being the wait after the round before (0 when the one before
// succeeded): least first, doubling to most, and electionRetry, without
// growing, while err is errFollowSoon.
func retryWait(last, least, most time.Duration, err error) time.Duration {
	switch {
	case errors.Is(err, errFollowSoon):
		return electionRetry
	case last < least:
		return least
	}
	return min(2*last, most)
}

// redirectFailed marks err, the error of a call to server, as
// errFollowSoon when it is a failure of the leader server redirected to,
// not of server itself: server answered (a 307 to the leader it knew).
func redirectFailed(server string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) && !strings.HasPrefix(ue.URL, server+"/") {
		return fmt.Errorf("%w (redirected by %s): %w", err, server, errFollowSoon)
	}
	return err
}

// answerError is the error of a server's answer that is not a success:
// its status and message (the error of an api.ErrorBody, or the start of
// the body), marked errFollowSoon when it is a 503. It reads (part of)
// resp's body; the caller closes it.
func answerError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	msg := strings.TrimSpace(string(b))
	var eb api.ErrorBody
	if json.Unmarshal(b, &eb) == nil && eb.Error != "" {
		msg = eb.Error
	}
	err := fmt.Errorf("%s %s: %s: %s", resp.Request.Method, resp.Request.URL, resp.Status, msg)
	if resp.StatusCode == http.StatusServiceUnavailable {
		return fmt.Errorf("%w: %w", err, errFollowSoon)
	}
	return err
}
